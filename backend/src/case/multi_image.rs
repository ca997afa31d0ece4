//! The other methods' maps of a prompt with several images (issue 21): Grad-CAM over every
//! image's tokens at once, the generic prompt's attention over the same images, occlusion one
//! image at a time with the others intact; and the split of a map over all the prompt's image
//! tokens into one map per image, each with its share of the mass.
//!
//! Every function here takes the images in prompt order (the order their features are
//! concatenated in, [`concat_features`]).

use candle_core::{DType, Tensor, Var};
use radlens_shared::map::normalize_vec;
use radlens_shared::record::Faithfulness;
use radlens_shared::trust::GENERIC_PROMPT;

use super::capture::fuse_captured;
use super::gradcam::{MarginTokens, channel_weights, pool_sum, weighted_cam};
use super::occlusion::{MarginProbe, OccludedImages, OcclusionMap};
use super::plan::{CasePlan, last_prompt_row};
use super::trust::{MethodValues, TrustSettings, delete_cells, deletion_tests};
use crate::models::error::{ModelError, Result};
use crate::models::loader::Engine;
use crate::models::probe::{AttentionRecorder, NoProbe};
use crate::models::processor::{MultiImagePrompt, PromptImage};
use crate::models::{GradcamSite, VisionLanguageModel, concat_features};

/// One image's part of a map over a multi-image prompt: its share of the whole map's mass, and
/// its values renormalised on its own grid (`None` for a part without mass).
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePart {
    pub share: f64,
    pub values: Option<Vec<f64>>,
}

/// Splits `values` (non-negative, over every image token in prompt order) into consecutive
/// parts of `lens` tokens: each part's share of the total mass, and the part renormalised to
/// sum to 1.
pub fn split_by_image(values: &[f64], lens: &[usize]) -> std::result::Result<Vec<ImagePart>, String> {
    if lens.iter().sum::<usize>() != values.len() {
        return Err(format!("{} image tokens in the map, the images' spans hold {}", values.len(), lens.iter().sum::<usize>()));
    }
    let total: f64 = values.iter().sum();
    if total.is_nan() || total <= 0.0 {
        return Err("no mass on the image tokens".into());
    }
    let mut out = Vec::with_capacity(lens.len());
    let mut offset = 0;
    for &n in lens {
        let part = &values[offset..offset + n];
        offset += n;
        let mass: f64 = part.iter().sum();
        let values = (mass > 0.0).then(|| part.iter().map(|v| v / mass).collect());
        out.push(ImagePart { share: mass / total, values });
    }
    Ok(out)
}

/// Each image's occlusion map split as the others are: an image's share is its positive
/// support (the answer drops its hidden cells cause) over all images' positive support; its map
/// is its positive support renormalised (`None` where none of its cells weakens the answer).
pub fn split_occlusion(maps: &[OcclusionMap]) -> std::result::Result<Vec<ImagePart>, String> {
    let positive: Vec<f64> = maps.iter().flat_map(|m| m.support.iter().map(|v| v.max(0.0))).collect();
    let lens: Vec<usize> = maps.iter().map(|m| m.support.len()).collect();
    split_by_image(&positive, &lens).map_err(|_| "no cell of any image weakens the answer when hidden (no positive support)".into())
}

/// Grad-CAM of a multi-image prompt: per image (prompt order) its cells on its own grid,
/// unnormalised and non-negative.
#[derive(Debug, Clone)]
pub struct MultiGradcam {
    pub cells: Vec<Vec<f64>>,
    /// `(h, w)` per image.
    pub grids: Vec<(usize, usize)>,
    /// The block differentiated at (the same block of every image's tower pass).
    pub site: GradcamSite,
    pub margin: f64,
    /// Per image (prompt order), the margin's gradient at the block summed over the image's
    /// patches, per channel: the channel weights are their sum over the images divided by all
    /// images' patch count (kept so a test can hold each image's part to finite differences).
    pub gradient_sums: Vec<Vec<f64>>,
}

/// Grad-CAM of the yes-minus-no margin over every image of the prompt at once: each image's
/// Grad-CAM block output is a `Var`, the features made from them are concatenated in prompt
/// order and the prompt runs tracked; the channel weights are the gradient's mean over all
/// images' patches (the site covers every image token, as if one image), and each image's
/// patches are scored with them and pooled onto its own grid. `features` is the unperturbed
/// concatenation, which picks the spellings of "yes" and "no".
pub fn gradcam_multi(
    model: &dyn VisionLanguageModel,
    input_ids: &[u32],
    pixels: &[&Tensor],
    features: &Tensor,
    yes_ids: &[u32],
    no_ids: &[u32],
) -> Result<MultiGradcam> {
    let mut cache = model.new_cache();
    let logits = model.prefill_from(input_ids, 0, features, &mut cache, &mut NoProbe)?.to_vec1::<f32>()?;
    let tokens = MarginTokens::pick(&logits, yes_ids, no_ids)
        .ok_or_else(|| ModelError::Invalid("Grad-CAM needs single-token spellings of \"yes\" and \"no\" in the vocabulary".into()))?;
    let mut sites = Vec::with_capacity(pixels.len());
    let mut vars = Vec::with_capacity(pixels.len());
    let mut tracked = Vec::with_capacity(pixels.len());
    for p in pixels {
        let site = model.gradcam_site(p)?;
        let activations = model.gradcam_activations(p)?;
        // Held in f32 and cast on entry, as the single-image Grad-CAM does.
        let var = Var::from_tensor(&activations.detach().to_dtype(DType::F32)?)?;
        tracked.push(model.features_from_gradcam_block(&var.as_tensor().to_dtype(activations.dtype())?, &site)?);
        sites.push(site);
        vars.push(var);
    }
    let combined = concat_features(&tracked)?;
    let mut cache = model.new_cache();
    let margin = tokens.margin(&model.prefill_from(input_ids, 0, &combined, &mut cache, &mut NoProbe)?)?;
    let grads = margin.backward()?;
    let mut a_parts = Vec::with_capacity(pixels.len());
    let mut g_parts = Vec::with_capacity(pixels.len());
    let mut channels = 0;
    for (k, (var, site)) in vars.iter().zip(&sites).enumerate() {
        let g = grads.get(var.as_tensor()).ok_or_else(|| {
            ModelError::Invalid(format!("{}: the yes/no margin does not depend on image {} of the prompt", site.name, k + 1))
        })?;
        let (a, g) = (var.as_tensor().squeeze(0)?, g.squeeze(0)?);
        let (positions, c) = a.dims2()?;
        let patches = site.patch_grid.0 * site.patch_grid.1;
        if positions != site.skip + patches {
            return Err(ModelError::Shape {
                site: site.name.to_string(),
                expected: format!("{} positions", site.skip + patches),
                got: format!("{positions}"),
            });
        }
        channels = c;
        a_parts.push(a.narrow(0, site.skip, patches)?.flatten_all()?.to_vec1::<f32>()?);
        g_parts.push(g.narrow(0, site.skip, patches)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
    }
    let w = channel_weights(&g_parts.iter().map(Vec::as_slice).collect::<Vec<_>>(), channels);
    let gradient_sums = g_parts
        .iter()
        .map(|g| {
            let mut sum = vec![0f64; channels];
            g.chunks_exact(channels).for_each(|row| row.iter().zip(&mut sum).for_each(|(&v, acc)| *acc += f64::from(v)));
            sum
        })
        .collect();
    let mut cells = Vec::with_capacity(pixels.len());
    let mut grids = Vec::with_capacity(pixels.len());
    for (a, site) in a_parts.iter().zip(&sites) {
        let (rows, cols) = site.patch_grid;
        let per_patch = weighted_cam(a, &w, rows * cols, channels);
        cells.push(pool_sum(&per_patch, site.patch_grid, site.pool));
        grids.push((rows / site.pool, cols / site.pool));
    }
    let margin = f64::from(margin.to_dtype(DType::F32)?.to_scalar::<f32>()?);
    Ok(MultiGradcam { cells, grids, site: sites.swap_remove(0), margin, gradient_sums })
}

/// The generic prompt's attention over the same images as `like` (the question's prompt),
/// fused as the question maps are (last prompt row, the plan's layers and head fusion), over
/// every image token in prompt order, normalised. `features` are the images' concatenated in
/// `like.order`; a template that orders the images differently for the generic prompt is an
/// error.
pub fn generic_map_multi(
    engine: &Engine,
    plan: &CasePlan,
    request: &[PromptImage],
    like: &MultiImagePrompt,
    features: &Tensor,
) -> Result<Vec<f64>> {
    let generic = engine.prompter.encode_images(GENERIC_PROMPT, None, request)?;
    if generic.order != like.order {
        return Err(ModelError::Invalid(format!(
            "the generic prompt orders the images {:?}, the question's prompt {:?}",
            generic.roles, like.roles
        )));
    }
    let prompt = &generic.prompt;
    let l = prompt.input_ids.len();
    let mut recorder = AttentionRecorder::new(plan.last_row_policy(l));
    let mut cache = engine.model.new_cache();
    engine.model.prefill_from(&prompt.input_ids, 0, features, &mut cache, &mut recorder)?;
    let captured = fuse_captured(&recorder, &plan.layers, &[last_prompt_row(l)], &prompt.image_positions, plan.spec.head_fusion)?;
    Ok(normalize_vec(&captured.fused.values)?)
}

/// Each image's occlusion map over a multi-image prompt (prompt order): image `i`'s cells
/// hidden one at a time (`occluded[i]`), its occluded features put in its place among the other
/// images' unchanged ones, and the margin measured by `margin_of` (a [`super::occlusion::MarginProbe`]
/// of the whole prompt) against the unperturbed `margin`. Costs the sum of the images' `g^2`
/// prompt forwards.
pub fn occlusion_per_image(
    parts: &[Tensor],
    occluded: &[&OccludedImages],
    margin: f64,
    mut margin_of: impl FnMut(&Tensor) -> Result<f64>,
) -> Result<Vec<OcclusionMap>> {
    if parts.len() != occluded.len() {
        return Err(ModelError::Invalid(format!("{} images' features but {} occluded sets", parts.len(), occluded.len())));
    }
    let mut out = Vec::with_capacity(parts.len());
    for (i, o) in occluded.iter().enumerate() {
        let mut margins = Vec::with_capacity(o.features.len());
        for f in &o.features {
            let mut shown = parts.to_vec();
            shown[i] = f.clone();
            margins.push(margin_of(&concat_features(&shown)?)?);
        }
        out.push(OcclusionMap::of(o.grid, margin, margins));
    }
    Ok(out)
}

/// Deletion tests of one image's maps in a multi-image prompt: the cells deleted from image
/// `k`'s pixels (prompt order), that image re-encoded and put back among the others' unchanged
/// features, the margin read by `probe` (the whole prompt's). `grid` is image `k`'s map grid.
#[allow(clippy::too_many_arguments)]
pub fn deletion_on_image(
    model: &dyn VisionLanguageModel,
    probe: &MarginProbe<'_>,
    parts: &[Tensor],
    k: usize,
    pixels: &Tensor,
    grid: (usize, usize),
    maps: &[&MethodValues],
    settings: &TrustSettings,
    seed: u64,
) -> Result<Vec<Faithfulness>> {
    let delta = |cells: &[usize]| -> Result<f64> {
        let deleted = delete_cells(pixels, grid.0, grid.1, cells)?;
        let mut shown = parts.to_vec();
        shown[k] = model.encode_image(&deleted, &mut NoProbe)?;
        Ok(probe.margin_of(&concat_features(&shown)?)? - probe.margin)
    };
    deletion_tests(grid, probe.margin, delta, maps, &settings.k_percents, settings.random_draws, seed)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn a_map_is_split_at_the_image_spans_with_each_share_of_the_mass() {
        let parts = split_by_image(&[1.0, 1.0, 2.0, 0.0, 0.0, 0.0, 4.0], &[3, 3, 1]).unwrap();
        let shares: Vec<f64> = parts.iter().map(|p| p.share).collect();
        assert_eq!(shares, [0.5, 0.0, 0.5]);
        assert_eq!(parts[0].values.as_deref(), Some(&[0.25, 0.25, 0.5][..]), "each part renormalised on its own");
        assert_eq!(parts[1].values, None, "an image without mass has no map of its own");
        assert_eq!(parts[2].values.as_deref(), Some(&[1.0][..]));
        assert!(split_by_image(&[1.0, 2.0], &[1, 2]).unwrap_err().contains("2 image tokens in the map, the images' spans hold 3"));
        assert!(split_by_image(&[0.0, 0.0], &[1, 1]).is_err(), "no mass at all is an error");
    }

    fn column(values: &[f32]) -> Tensor {
        Tensor::from_vec(values.to_vec(), (values.len(), 1), &Device::Cpu).unwrap()
    }

    /// Two images of two tokens each with a 2x2 occlusion grid each (synthetic occluded
    /// features); a "model" whose margin reads only the second image's tokens: hiding the
    /// first image's cells changes nothing (share 0, no map), the second's carry all the
    /// support, cell by cell, and each image's occluded features land in its own span.
    #[test]
    fn only_the_image_whose_occlusion_moves_the_margin_gets_the_occlusion_share() {
        let parts = [column(&[1.0, 1.0]), column(&[2.0, 3.0])];
        let first = OccludedImages { grid: 2, features: (0..4).map(|c| column(&[c as f32, -1.0])).collect() };
        // Hiding cell `c` of the second image drops the margin by `c`.
        let second = OccludedImages { grid: 2, features: (0..4).map(|c| column(&[2.0, 3.0 - c as f32])).collect() };
        let margin_of = |f: &Tensor| -> Result<f64> {
            let v = f.flatten_all()?.to_vec1::<f32>()?;
            assert_eq!(v.len(), 4, "both images' tokens, concatenated");
            Ok(f64::from(v[2] + v[3]))
        };
        let maps = occlusion_per_image(&parts, &[&first, &second], 5.0, margin_of).unwrap();
        assert_eq!(maps[0].support, vec![0.0; 4], "the first image's occlusion leaves the margin as it is");
        assert_eq!(maps[1].support, vec![0.0, 1.0, 2.0, 3.0]);
        let split = split_occlusion(&maps).unwrap();
        assert_eq!((split[0].share, split[1].share), (0.0, 1.0));
        assert_eq!(split[0].values, None);
        assert_eq!(split[1].values.as_deref(), Some(&[0.0, 1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0][..]));

        // Swapped: the margin reads the first image only, so the first gets the whole share.
        let margin_of = |f: &Tensor| -> Result<f64> {
            let v = f.flatten_all()?.to_vec1::<f32>()?;
            Ok(f64::from(v[0] + v[1]))
        };
        let maps = occlusion_per_image(&parts, &[&first, &second], 2.0, margin_of).unwrap();
        let split = split_occlusion(&maps).unwrap();
        assert_eq!((split[0].share, split[1].share), (1.0, 0.0));
        assert!(split_occlusion(&[OcclusionMap::of(1, 1.0, vec![2.0])]).is_err(), "no positive support anywhere");
    }
}
