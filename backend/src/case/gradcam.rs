//! Grad-CAM for the yes/no decision: where in the image the `logit(yes) - logit(no)` margin is
//! sensitive, on the same image-token grid (and with the same geometry) as the attention maps.
//!
//! With `A` the output of the model's Grad-CAM block ([`GradcamSite`]: LLaVA's feature block,
//! Gemma3's last SigLIP block) and `G = d margin / d A`: channel weights `w_c = mean_p G[p, c]`
//! over the patch positions, and `cam_p = ReLU(sum_c w_c A[p, c])` per patch. Patches pool into
//! image tokens by summing (Gemma3's 4 x 4 pool; LLaVA's tokens are its patches).
//!
//! The gradient comes from candle's autograd: `A` is detached and wrapped as a `Var`, and the
//! rest of the forward (projector, splice, the language model's prompt forward) runs tracked.
//! Fused kernels without a backward (softmax, LayerNorm, RoPE) switch to their compositions when
//! their input is tracked, so untracked forwards are unchanged.

use candle_core::{DType, Tensor, Var};

use crate::models::error::{ModelError, Result};
use crate::models::probe::NoProbe;
use crate::models::{GradcamSite, VisionLanguageModel};

/// The token ids whose logits the margin compares: the best-scoring single-token spelling of
/// "yes" and of "no" at the unperturbed input, kept fixed for every later evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarginTokens {
    pub yes: u32,
    pub no: u32,
}

impl MarginTokens {
    /// The highest logit among each word's spellings (as `yes_no_margin` picks them).
    pub fn pick(logits: &[f32], yes_ids: &[u32], no_ids: &[u32]) -> Option<Self> {
        let best = |ids: &[u32]| {
            ids.iter()
                .copied()
                .filter(|&id| logits.get(id as usize).is_some_and(|v| v.is_finite()))
                .max_by(|&a, &b| logits[a as usize].total_cmp(&logits[b as usize]))
        };
        Some(Self { yes: best(yes_ids)?, no: best(no_ids)? })
    }

    /// `logit[yes] - logit[no]` of `[V]` logits, as a scalar tensor (differentiable).
    pub fn margin(&self, logits: &Tensor) -> candle_core::Result<Tensor> {
        logits.narrow(0, self.yes as usize, 1)?.sub(&logits.narrow(0, self.no as usize, 1)?)?.squeeze(0)
    }
}

/// The margin of the whole prompt, computed from the Grad-CAM block's output.
pub fn margin_from_activations(
    model: &dyn VisionLanguageModel,
    input_ids: &[u32],
    activations: &Tensor,
    site: &GradcamSite,
    tokens: MarginTokens,
) -> Result<Tensor> {
    let features = model.features_from_gradcam_block(activations, site)?;
    let mut cache = model.new_cache();
    let logits = model.prefill_from(input_ids, 0, &features, &mut cache, &mut NoProbe)?;
    Ok(tokens.margin(&logits)?)
}

/// The margin for a pixel tensor (the faithfulness checks' forward: encode + prompt forward).
pub fn margin_of_pixels(model: &dyn VisionLanguageModel, input_ids: &[u32], pixel_values: &Tensor, tokens: MarginTokens) -> Result<f64> {
    let features = model.encode_image(pixel_values, &mut NoProbe)?;
    let mut cache = model.new_cache();
    let logits = model.prefill_from(input_ids, 0, &features, &mut cache, &mut NoProbe)?;
    Ok(f64::from(tokens.margin(&logits)?.to_scalar::<f32>()?))
}

/// The margin and its gradient with respect to the Grad-CAM block's output.
#[derive(Debug, Clone)]
pub struct MarginGradient {
    pub margin: f64,
    /// `[positions, channels]` f32.
    pub activations: Tensor,
    /// `[positions, channels]` f32, `d margin / d activations`.
    pub gradient: Tensor,
}

/// One tracked prompt forward and its backward. The activations are held in f32 (a `Var`) and
/// cast to the model's dtype on entry, so half-precision models still get an f32 gradient.
pub fn margin_gradient(
    model: &dyn VisionLanguageModel,
    input_ids: &[u32],
    activations: &Tensor,
    site: &GradcamSite,
    tokens: MarginTokens,
) -> Result<MarginGradient> {
    let dtype = activations.dtype();
    let var = Var::from_tensor(&activations.detach().to_dtype(DType::F32)?)?;
    let margin = margin_from_activations(model, input_ids, &var.as_tensor().to_dtype(dtype)?, site, tokens)?;
    let grads = margin.backward()?;
    let site = &site.name;
    let gradient = grads
        .get(var.as_tensor())
        .ok_or_else(|| ModelError::Invalid(format!("{site}: the yes/no margin does not depend on this block's output")))?;
    Ok(MarginGradient {
        margin: f64::from(margin.to_dtype(DType::F32)?.to_scalar::<f32>()?),
        activations: var.as_tensor().squeeze(0)?,
        gradient: gradient.squeeze(0)?,
    })
}

/// A Grad-CAM map on the image-token grid (unnormalised, non-negative) and what made it.
#[derive(Debug, Clone)]
pub struct Gradcam {
    /// `h * w` cells, row-major; all zero when no patch pushes the margin up (see [`cam`]).
    pub cells: Vec<f64>,
    pub h: usize,
    pub w: usize,
    pub site: GradcamSite,
    pub margin: f64,
}

/// Grad-CAM of the yes-minus-no margin for `input_ids` (the whole prompt) and `pixel_values`.
pub fn gradcam(
    model: &dyn VisionLanguageModel,
    input_ids: &[u32],
    pixel_values: &Tensor,
    yes_ids: &[u32],
    no_ids: &[u32],
) -> Result<Gradcam> {
    let site = model.gradcam_site(pixel_values)?;
    let activations = model.gradcam_activations(pixel_values)?;
    // The untracked forward picks the spellings; the tracked one differentiates their margin.
    let logits = margin_logits(model, input_ids, &activations, &site)?;
    let tokens = MarginTokens::pick(&logits, yes_ids, no_ids)
        .ok_or_else(|| ModelError::Invalid("Grad-CAM needs single-token spellings of \"yes\" and \"no\" in the vocabulary".into()))?;
    let mg = margin_gradient(model, input_ids, &activations, &site, tokens)?;
    let (positions, channels) = mg.activations.dims2()?;
    let (rows, cols) = site.patch_grid;
    let patches = rows * cols;
    if positions != site.skip + patches {
        return Err(ModelError::Shape {
            site: site.name.to_string(),
            expected: format!("{} positions", site.skip + patches),
            got: format!("{positions}"),
        });
    }
    let a = mg.activations.narrow(0, site.skip, patches)?.flatten_all()?.to_vec1::<f32>()?;
    let g = mg.gradient.narrow(0, site.skip, patches)?.flatten_all()?.to_vec1::<f32>()?;
    let per_patch = cam(&a, &g, patches, channels);
    let cells = pool_sum(&per_patch, site.patch_grid, site.pool);
    Ok(Gradcam { cells, h: rows / site.pool, w: cols / site.pool, site, margin: mg.margin })
}

fn margin_logits(model: &dyn VisionLanguageModel, input_ids: &[u32], activations: &Tensor, site: &GradcamSite) -> Result<Vec<f32>> {
    let features = model.features_from_gradcam_block(activations, site)?;
    let mut cache = model.new_cache();
    Ok(model.prefill_from(input_ids, 0, &features, &mut cache, &mut NoProbe)?.to_vec1::<f32>()?)
}

/// Grad-CAM proper: `w_c = mean_p g[p, c]`, `cam_p = max(0, sum_c w_c a[p, c])`; `a` and `g`
/// are `[positions, channels]` row-major.
pub fn cam(a: &[f32], g: &[f32], positions: usize, channels: usize) -> Vec<f64> {
    weighted_cam(a, &channel_weights(&[g], channels), positions, channels)
}

/// `w_c = mean_p g[p, c]` over the positions of every part of `grads` together (each
/// `[positions, channels]` row-major): a multi-image prompt's Grad-CAM weighs its channels over
/// all its images' patches at once, so one weight vector scores every image (issue 21).
pub fn channel_weights(grads: &[&[f32]], channels: usize) -> Vec<f64> {
    let mut w = vec![0f64; channels];
    let mut positions = 0usize;
    for g in grads {
        for row in g.chunks_exact(channels) {
            row.iter().zip(w.iter_mut()).for_each(|(&v, acc)| *acc += f64::from(v));
            positions += 1;
        }
    }
    w.iter_mut().for_each(|v| *v /= positions.max(1) as f64);
    w
}

/// `cam_p = max(0, sum_c w_c a[p, c])` per position of `a` `[positions, channels]`.
pub fn weighted_cam(a: &[f32], w: &[f64], positions: usize, channels: usize) -> Vec<f64> {
    (0..positions)
        .map(|p| {
            let s: f64 = (0..channels).map(|c| w[c] * f64::from(a[p * channels + c])).sum();
            s.max(0.0)
        })
        .collect()
}

/// Sums `k x k` blocks of a `rows x cols` grid into a `(rows/k) x (cols/k)` grid (mass is kept).
pub fn pool_sum(cells: &[f64], (rows, cols): (usize, usize), k: usize) -> Vec<f64> {
    let (tr, tc) = (rows / k, cols / k);
    let mut out = vec![0f64; tr * tc];
    for r in 0..rows {
        for c in 0..cols {
            out[(r / k) * tc + c / k] += cells[r * cols + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two positions, two channels: weights are the gradient's column means, and a negative
    /// weighted sum is cut to zero.
    #[test]
    fn cam_weighs_channels_by_mean_gradient_and_rectifies() {
        let a = [1.0, 2.0, 1.0, -4.0];
        let g = [1.0, 0.0, 3.0, 2.0]; // w = (2, 1)
        // Position 0: 2*1 + 1*2 = 4; position 1: 2*1 + 1*(-4) = -2, rectified to 0.
        assert_eq!(cam(&a, &g, 2, 2), vec![4.0, 0.0]);
    }

    /// Several images' gradients: one weight per channel, the mean over all their positions.
    #[test]
    fn channel_weights_over_several_images_are_the_mean_over_all_their_patches() {
        let (g1, g2) = ([1.0, 0.0], [3.0, 2.0, 5.0, 4.0]);
        assert_eq!(channel_weights(&[&g1, &g2], 2), vec![3.0, 2.0]);
        assert_eq!(weighted_cam(&[1.0, -1.0, -1.0, 0.0], &[3.0, 2.0], 2, 2), vec![1.0, 0.0]);
    }

    #[test]
    fn pooling_sums_blocks() {
        let cells: Vec<f64> = (0..16).map(f64::from).collect();
        assert_eq!(pool_sum(&cells, (4, 4), 2), vec![0. + 1. + 4. + 5., 2. + 3. + 6. + 7., 8. + 9. + 12. + 13., 10. + 11. + 14. + 15.]);
        assert_eq!(pool_sum(&cells, (4, 4), 1), cells);
        // A 2 x 8 grid pools to 1 x 4.
        assert_eq!(pool_sum(&cells, (2, 8), 2), vec![0. + 1. + 8. + 9., 2. + 3. + 10. + 11., 4. + 5. + 12. + 13., 6. + 7. + 14. + 15.]);
    }

    #[test]
    fn margin_tokens_pick_the_best_spelling() {
        let logits = [0.0, 3.0, 1.0, -1.0, 2.0];
        let t = MarginTokens::pick(&logits, &[2, 1], &[3, 4, 99]).unwrap();
        assert_eq!(t, MarginTokens { yes: 1, no: 4 });
        assert!(MarginTokens::pick(&logits, &[], &[3]).is_none());
        let m = t.margin(&Tensor::new(&logits, &candle_core::Device::Cpu).unwrap()).unwrap();
        assert_eq!(m.to_scalar::<f32>().unwrap(), 1.0);
    }
}
