//! From captured attention rows to one map, with the shared crate's aggregation
//! (`radlens_shared::fusion`): per row and layer, restrict to the image and fuse heads; average
//! the layers; average the rows.

use radlens_shared::fusion::{FusedRows, HeadFusion, HeadRows, fuse_rows};

use crate::models::error::{ModelError, Result};
use crate::models::probe::AttentionRecorder;

/// A fused map and the layers that could not contribute (`radlens_shared::fusion::FusedRows`:
/// `layers_used`, and `layers_without_image` left out and reported, never replaced by a uniform
/// map).
pub type CapturedMap = FusedRows;

/// The fused map of `positions` (query rows) over `layers`, restricted to `image_positions`:
/// [`fuse_rows`] over the recorder's captured rows.
pub fn fuse_captured(
    recorder: &AttentionRecorder,
    layers: &[usize],
    positions: &[usize],
    image_positions: &[usize],
    fusion: HeadFusion,
) -> Result<CapturedMap> {
    let fused = fuse_rows::<ModelError>(positions.len(), layers, image_positions, fusion, |r, layer| {
        let pos = positions[r];
        let row = recorder
            .row(layer, pos)
            .ok_or_else(|| ModelError::Invalid(format!("text.blocks.{layer}.attn.pattern: query row {pos} was not captured")))?;
        Ok(HeadRows { probs: &row.probs, heads: row.heads })
    })?;
    fused.ok_or_else(|| {
        ModelError::Invalid(format!(
            "no captured attention row over layers {layers:?} puts any mass on the image tokens (a sliding-window layer cannot see an image further back than its window): choose other --layers"
        ))
    })
}
