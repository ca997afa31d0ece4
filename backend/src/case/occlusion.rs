//! The occlusion reference map (grounding spec G1): for each cell of a `g x g` grid over the
//! model's input, the change of the yes/no margin when that cell is hidden,
//! `support_c = s (m - m_c)` with `s` the sign of the model's own answer. Positive where hiding
//! the cell weakens the answer: a causal map to hold the other maps against.
//!
//! Cost and reuse. A case needs `g^2` forwards. What is reused:
//! - the occluded images are encoded once per image and shared by every question about it
//!   ([`OccludedImages`]), `batch` of them per vision forward where the model batches its
//!   tower (LLaVA, LLaVA-Rad; Gemma3 encodes one at a time);
//! - the KV cache of the prompt before the first image token is computed once per case and
//!   each occluded forward starts from a copy of it.
//!
//! What is not: the vision encoding of untouched patches. Every tower here (CLIP, SigLIP, the
//! DINOv2 of LLaVA-Rad) attends globally from its first block on, so one hidden patch changes
//! every token's features; only the patch embedding of the others would be reusable, and it is
//! the cheapest part. The language model runs the image and the question once per cell (its KV
//! cache has no batch dimension).

use candle_core::Tensor;

use super::gradcam::MarginTokens;
use super::trust::delete_cells;
use crate::models::VisionLanguageModel;
use crate::models::error::{ModelError, Result};
use crate::models::kv_cache::KvCache;
use crate::models::probe::NoProbe;

/// `--occlusion-grid` and `--occlusion-batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OcclusionSettings {
    /// Cells per side (`g`).
    pub grid: usize,
    /// Occluded images per vision forward.
    pub batch: usize,
}

impl Default for OcclusionSettings {
    fn default() -> Self {
        Self { grid: 16, batch: 16 }
    }
}

/// The `g^2` occluded versions of one image (row-major cells), encoded.
pub struct OccludedImages {
    pub grid: usize,
    /// `features[c]`: what replaces the image tokens with cell `c` hidden.
    pub features: Vec<Tensor>,
}

impl OccludedImages {
    /// Hides each cell of `pixels` `[1, C, S, S]` in turn (its input pixels set to the
    /// per-channel mean of the whole input, as the deletion test does) and encodes the results.
    pub fn encode(model: &dyn VisionLanguageModel, pixels: &Tensor, settings: OcclusionSettings) -> Result<Self> {
        let g = settings.grid;
        // A dynamic-resolution input (Qwen2.5-VL) is H x W: its cells are H/g x W/g pixels.
        let (h, w) = (pixels.dim(2)?, pixels.dim(3)?);
        let side = h.min(w);
        if g == 0 || g > side {
            return Err(ModelError::Invalid(format!(
                "occlusion grid {g} x {g} does not fit the model's {h} x {w} input: choose --occlusion-grid between 1 and {side}"
            )));
        }
        let cells = g * g;
        let mut features = Vec::with_capacity(cells);
        let batch = settings.batch.max(1);
        for start in (0..cells).step_by(batch) {
            let occluded: Vec<Tensor> =
                (start..(start + batch).min(cells)).map(|c| delete_cells(pixels, g, g, &[c])).collect::<Result<_>>()?;
            features.extend(model.encode_images(&Tensor::cat(&occluded, 0)?)?);
        }
        Ok(Self { grid: g, features })
    }
}

/// One case's occlusion map.
#[derive(Debug, Clone, PartialEq)]
pub struct OcclusionMap {
    pub grid: usize,
    /// `m`, the unperturbed margin, and `s`, its sign (+1 when `m >= 0`).
    pub margin: f64,
    pub sign: f64,
    /// `m_c` per cell, row-major.
    pub occluded_margins: Vec<f64>,
    /// `s (m - m_c)` per cell, row-major: the signed map.
    pub support: Vec<f64>,
}

impl OcclusionMap {
    /// The positive part of the support, normalised: where hiding the cell weakens the answer,
    /// as a map that can be overlaid and compared like the others. `None` when no cell has
    /// positive support.
    pub fn positive_map(&self) -> Option<Vec<f64>> {
        let total: f64 = self.support.iter().filter(|v| **v > 0.0).sum();
        (total > 0.0).then(|| self.support.iter().map(|&v| v.max(0.0) / total).collect())
    }
}

/// The yes/no margin of one prompt for any replacement of its image features: the text before
/// the first image token is prefilled once, and the spellings of "yes" and "no" are the
/// best-scoring ones at the unperturbed features, kept fixed for every later evaluation.
pub struct MarginProbe<'a> {
    model: &'a dyn VisionLanguageModel,
    input_ids: &'a [u32],
    first_image: usize,
    before: KvCache,
    pub tokens: MarginTokens,
    /// `m`, the margin at the unperturbed features.
    pub margin: f64,
}

impl<'a> MarginProbe<'a> {
    pub fn new(
        model: &'a dyn VisionLanguageModel,
        input_ids: &'a [u32],
        image_token_id: u32,
        features: &Tensor,
        yes_ids: &[u32],
        no_ids: &[u32],
    ) -> Result<Self> {
        let first_image = input_ids
            .iter()
            .position(|&t| t == image_token_id)
            .ok_or_else(|| ModelError::Invalid("occlusion needs a prompt with image tokens".into()))?;
        // The text before the image is the same for every cell.
        let mut before = model.new_cache();
        if first_image > 0 {
            model.prefill_from(&input_ids[..first_image], 0, features, &mut before, &mut NoProbe)?;
        }
        let mut probe = Self { model, input_ids, first_image, before, tokens: MarginTokens { yes: 0, no: 0 }, margin: 0.0 };
        let logits = probe.logits_of(features)?;
        probe.tokens = MarginTokens::pick(&logits, yes_ids, no_ids)
            .ok_or_else(|| ModelError::Invalid("occlusion needs single-token spellings of \"yes\" and \"no\" in the vocabulary".into()))?;
        probe.margin = probe.margin_in(&logits);
        Ok(probe)
    }

    fn logits_of(&self, features: &Tensor) -> Result<Vec<f32>> {
        let mut cache = self.before.clone();
        Ok(self.model.prefill_from(self.input_ids, self.first_image, features, &mut cache, &mut NoProbe)?.to_vec1::<f32>()?)
    }

    fn margin_in(&self, logits: &[f32]) -> f64 {
        f64::from(logits[self.tokens.yes as usize] - logits[self.tokens.no as usize])
    }

    /// The margin with `features` in place of the prompt's image features.
    pub fn margin_of(&self, features: &Tensor) -> Result<f64> {
        Ok(self.margin_in(&self.logits_of(features)?))
    }
}

/// The occlusion map of `input_ids` against the unperturbed `features` and `occluded`. The
/// margin compares the best-scoring single-token spellings of "yes" and "no" at the
/// unperturbed input, kept fixed for every occluded forward.
pub fn occlusion_map(
    model: &dyn VisionLanguageModel,
    input_ids: &[u32],
    image_token_id: u32,
    features: &Tensor,
    occluded: &OccludedImages,
    yes_ids: &[u32],
    no_ids: &[u32],
) -> Result<OcclusionMap> {
    let probe = MarginProbe::new(model, input_ids, image_token_id, features, yes_ids, no_ids)?;
    let occluded_margins = occluded.features.iter().map(|f| probe.margin_of(f)).collect::<Result<Vec<f64>>>()?;
    Ok(OcclusionMap::of(occluded.grid, probe.margin, occluded_margins))
}

impl OcclusionMap {
    /// The map of the margins `m_c` against the unperturbed `m`.
    pub fn of(grid: usize, margin: f64, occluded_margins: Vec<f64>) -> Self {
        let sign = if margin >= 0.0 { 1.0 } else { -1.0 };
        let support = occluded_margins.iter().map(|&mc| sign * (margin - mc)).collect();
        Self { grid, margin, sign, occluded_margins, support }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_positive_part_is_normalised_and_absent_without_support() {
        let m = OcclusionMap { grid: 2, margin: 1.0, sign: 1.0, occluded_margins: vec![0.0; 4], support: vec![1.0, -2.0, 3.0, 0.0] };
        assert_eq!(m.positive_map().unwrap(), vec![0.25, 0.0, 0.75, 0.0]);
        let none = OcclusionMap { support: vec![-1.0, 0.0, -0.5, 0.0], ..m };
        assert!(none.positive_map().is_none());
    }
}
