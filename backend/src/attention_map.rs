//! From captured attention rows to one map, with the shared crate's aggregation
//! (`radlens_shared::fusion`): per row and layer, restrict to the image and fuse heads; average
//! the layers; average the rows.

use radlens_shared::fusion::{layer_map, mean_of, Fused, HeadFusion};

use crate::models::error::{ModelError, Result};
use crate::models::probe::AttentionRecorder;

/// The fused map of `positions` (query rows) over `layers`, restricted to `image_positions`.
pub fn fuse_captured(
    recorder: &AttentionRecorder,
    layers: &[usize],
    positions: &[usize],
    image_positions: &[usize],
    fusion: HeadFusion,
) -> Result<Fused> {
    let mut rows = Vec::with_capacity(positions.len());
    for &pos in positions {
        let mut per_layer = Vec::with_capacity(layers.len());
        for &layer in layers {
            let row = recorder.row(layer, pos).ok_or_else(|| {
                ModelError::Invalid(format!("text.blocks.{layer}.attn.pattern: query row {pos} was not captured"))
            })?;
            per_layer.push(layer_map(&row.probs, row.heads, image_positions, fusion)?);
        }
        rows.push(mean_of(&per_layer)?);
    }
    Ok(mean_of(&rows)?)
}
