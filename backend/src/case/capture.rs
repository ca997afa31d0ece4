//! From captured attention rows to one map, with the shared crate's aggregation
//! (`radlens_shared::fusion`): per row and layer, restrict to the image and fuse heads; average
//! the layers; average the rows.

use radlens_shared::fusion::{Fused, HeadFusion, layer_map, mean_of};

use crate::models::error::{ModelError, Result};
use crate::models::probe::AttentionRecorder;

/// A fused map and the layers that could not contribute.
#[derive(Debug, Clone)]
pub struct CapturedMap {
    pub fused: Fused,
    /// Layers used (at least one row saw the image there).
    pub layers_used: Vec<usize>,
    /// Layers where no captured row put any mass on the image (sliding windows that end before
    /// the image). They are left out and reported, never replaced by a uniform map.
    pub layers_without_image: Vec<usize>,
}

/// The fused map of `positions` (query rows) over `layers`, restricted to `image_positions`.
pub fn fuse_captured(
    recorder: &AttentionRecorder,
    layers: &[usize],
    positions: &[usize],
    image_positions: &[usize],
    fusion: HeadFusion,
) -> Result<CapturedMap> {
    let mut rows = Vec::with_capacity(positions.len());
    let mut used = std::collections::BTreeSet::new();
    for &pos in positions {
        let mut per_layer = Vec::with_capacity(layers.len());
        for &layer in layers {
            let row = recorder
                .row(layer, pos)
                .ok_or_else(|| ModelError::Invalid(format!("text.blocks.{layer}.attn.pattern: query row {pos} was not captured")))?;
            if let Some(fused) = layer_map(&row.probs, row.heads, image_positions, fusion)? {
                per_layer.push(fused);
                used.insert(layer);
            }
        }
        if !per_layer.is_empty() {
            rows.push(mean_of(&per_layer)?);
        }
    }
    if rows.is_empty() {
        return Err(ModelError::Invalid(format!(
            "no captured attention row over layers {layers:?} puts any mass on the image tokens (a sliding-window layer cannot see an image further back than its window): choose other --layers"
        )));
    }
    let layers_used: Vec<usize> = used.into_iter().collect();
    let layers_without_image = layers.iter().copied().filter(|l| !layers_used.contains(l)).collect();
    Ok(CapturedMap { fused: mean_of(&rows)?, layers_used, layers_without_image })
}
