//! The other methods' maps of a prompt with several images (issue 21): Grad-CAM over every
//! image's tokens at once, the generic prompt's attention over the same images, occlusion one
//! image at a time with the others intact; and the split of a map over all the prompt's image
//! tokens into one map per image, each with its share of the mass.
//!
//! Every function here takes the images in prompt order (the order their features are
//! concatenated in, [`concat_features`]).

use candle_core::{DType, Tensor, Var};
use radlens_shared::AttentionMap;
use radlens_shared::fusion::{MapMethod, MapProvenance};
use radlens_shared::geometry::MapGeometry;
use radlens_shared::map::normalize_vec;
use radlens_shared::metrics::MapMetrics;
use radlens_shared::record::Faithfulness;
use radlens_shared::trust::{GENERIC_PROMPT, relative_map};

use super::capture::fuse_captured;
use super::gradcam::{MarginTokens, channel_weights, pool_sum, weighted_cam};
use super::grounding::occlusion_provenance;
use super::image::CaseImage;
use super::occlusion::{MarginProbe, OccludedImages, OcclusionMap};
use super::plan::{CasePlan, last_prompt_row};
use super::trust::{MethodValues, TrustSettings, delete_cells, deletion_tests};
use crate::models::error::{ModelError, Result};
use crate::models::loader::Engine;
use crate::models::probe::{AttentionRecorder, NoProbe};
use crate::models::processor::{EncodedPrompt, ImageRole, MultiImagePrompt, PromptImage};
use crate::models::{GradcamSite, VisionLanguageModel, concat_features};

/// One image's part of a map over a multi-image prompt: its share of the whole map's mass, and
/// its values renormalised on its own grid (`None` for a part without mass).
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePart {
    pub share: f64,
    pub values: Option<Vec<f64>>,
}

/// Where an image is asked for in a multi-image prompt: chronological, then the lateral view
/// (the order Gemma3's multi-image renderings use; MAIRA-2's template reorders).
pub fn request_rank(role: ImageRole) -> usize {
    match role {
        ImageRole::Prior => 0,
        ImageRole::Current => 1,
        ImageRole::Lateral => 2,
    }
}

/// The current image's index in prompt order (the first image when none is current).
pub fn current_index(prompt: &MultiImagePrompt) -> usize {
    prompt.roles.iter().position(|&r| r == ImageRole::Current).unwrap_or(0)
}

/// The prompt a multi-image case runs with: every id, but only the current image's tokens as
/// its image positions, so the case's own map is the current image's.
pub fn current_prompt(prompt: &MultiImagePrompt) -> EncodedPrompt {
    EncodedPrompt {
        input_ids: prompt.prompt.input_ids.clone(),
        image_positions: prompt.image_spans[current_index(prompt)].clone().collect(),
    }
}

/// The images (request order) as one case image: their features concatenated in prompt order,
/// the current image's pixels and geometry (what the case's own map and checks are on), and
/// the images' preprocessing and encoding times summed.
pub fn combined_image(images: &[&CaseImage], prompt: &MultiImagePrompt) -> Result<CaseImage> {
    let current = images[prompt.order[current_index(prompt)]];
    let in_prompt_order: Vec<Tensor> = prompt.order.iter().map(|&i| images[i].features.clone()).collect();
    Ok(CaseImage {
        features: concat_features(&in_prompt_order)?,
        pixels: current.pixels.clone(),
        geometry: current.geometry,
        preprocess_ms: images.iter().map(|i| i.preprocess_ms).sum(),
        encode_ms: images.iter().map(|i| i.encode_ms).sum(),
    })
}

/// One image's map of one method over a multi-image prompt, on the image's own grid.
#[derive(Debug, Clone)]
pub struct ImageMap {
    pub role: ImageRole,
    /// The image's share of the method's mass over all the prompt's images.
    pub share: f64,
    /// Normalised; a labelled uniform map (`provenance.fallback_reason`) for a part without mass.
    pub values: Vec<f64>,
    pub metrics: MapMetrics,
    pub provenance: MapProvenance,
}

/// The parts of a split map (prompt order) as maps on each image's grid (`grids`, prompt
/// order), with `like`'s provenance; a part without mass becomes a uniform map that says so.
pub fn image_maps(
    like: &MapProvenance,
    parts: Vec<ImagePart>,
    grids: &[MapGeometry],
    roles: &[ImageRole],
) -> std::result::Result<Vec<ImageMap>, String> {
    if parts.len() != grids.len() || parts.len() != roles.len() {
        return Err(format!("{} parts for {} images", parts.len(), roles.len()));
    }
    let mut out = Vec::with_capacity(parts.len());
    for ((ImagePart { share, values }, g), &role) in parts.into_iter().zip(grids).zip(roles) {
        let n = g.h * g.w;
        let mut provenance = MapProvenance { geometry: *g, ..like.clone() };
        let values = match values {
            Some(v) if v.len() == n => v,
            Some(v) => return Err(format!("the {role} image's part has {} cells but a {}x{} grid", v.len(), g.h, g.w)),
            None => {
                provenance.fallback_reason = Some(match like.method {
                    MapMethod::QueryToVisual | MapMethod::TokenConditioned => {
                        format!("uniform_fallback: the captured rows put no attention on the {role} image")
                    }
                    m => format!("uniform_fallback: the {m} map puts no mass on the {role} image"),
                });
                vec![1.0 / n as f64; n]
            }
        };
        let metrics =
            MapMetrics::of(&AttentionMap::new(g.h, g.w, values.clone()).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        out.push(ImageMap { role, share, values, metrics, provenance });
    }
    Ok(out)
}

/// The case's attention split per image: the query rows of `own` (the current image's map)
/// fused over every image token of the prompt, cut at the image spans. Returns each image's
/// map (prompt order) and the fused values over all image tokens (for the relative map).
pub fn attention_by_image(
    recorder: &AttentionRecorder,
    plan: &CasePlan,
    own: &MapProvenance,
    prompt: &MultiImagePrompt,
    grids: &[MapGeometry],
) -> std::result::Result<(Vec<ImageMap>, Vec<f64>), String> {
    let captured = fuse_captured(recorder, &plan.layers, &own.query_positions, &prompt.prompt.image_positions, plan.spec.head_fusion)
        .map_err(|e| e.to_string())?;
    let parts = split_by_image(&captured.fused.values, &span_lens(prompt)).map_err(|e| format!("attention: {e}"))?;
    Ok((image_maps(own, parts, grids, &prompt.roles)?, captured.fused.values))
}

/// Grad-CAM per image ([`gradcam_multi`]), each image's part on its own grid with its share of
/// the (rectified) Grad-CAM mass. `pixels` and `grids` in prompt order; `own` the case's map.
#[allow(clippy::too_many_arguments)]
pub fn gradcam_by_image(
    model: &dyn VisionLanguageModel,
    prompt: &MultiImagePrompt,
    pixels: &[&Tensor],
    features: &Tensor,
    yes_ids: &[u32],
    no_ids: &[u32],
    own: &MapProvenance,
    grids: &[MapGeometry],
) -> std::result::Result<Vec<ImageMap>, String> {
    let input_ids = &prompt.prompt.input_ids;
    let cam = gradcam_multi(model, input_ids, pixels, features, yes_ids, no_ids).map_err(|e| e.to_string())?;
    let like = MapProvenance {
        method: MapMethod::Gradcam,
        layers: Vec::new(),
        query_positions: vec![input_ids.len() - 1],
        layers_without_image: Vec::new(),
        site: Some(cam.site.name),
        fallback_reason: None,
        ..own.clone()
    };
    if !cam.grids.iter().zip(grids).all(|(&(h, w), g)| (h, w) == (g.h, g.w)) {
        return Err(format!("Grad-CAM grids {:?} differ from the images' map grids", cam.grids));
    }
    let parts = split_by_image(&cam.cells.concat(), &cam.cells.iter().map(Vec::len).collect::<Vec<_>>())
        .map_err(|_| format!("Grad-CAM at {} is zero everywhere: no patch raises the yes/no margin", cam.site.name))?;
    image_maps(&like, parts, grids, &prompt.roles)
}

/// The relative map per image: the question's fused attention over every image token (`fused`)
/// against the generic prompt's over the same tokens ([`generic_map_multi`]), split per image.
pub fn relative_by_image(
    fused: &[f64],
    generic: &[f64],
    own: &MapProvenance,
    prompt: &MultiImagePrompt,
    grids: &[MapGeometry],
) -> std::result::Result<Vec<ImageMap>, String> {
    let like = MapProvenance { method: MapMethod::Relative, site: None, fallback_reason: None, ..own.clone() };
    let q = normalize_vec(fused).map_err(|e| e.to_string())?;
    let r = relative_map(&q, generic).map_err(|e| e.to_string())?;
    image_maps(&like, split_by_image(&r, &span_lens(prompt))?, grids, &prompt.roles)
}

/// Each image's occlusion map ([`occlusion_per_image`], prompt order) split per image
/// ([`split_occlusion`]) on each image's occlusion grid over its own crop (`geometries`).
pub fn occlusion_by_image(
    maps: &[OcclusionMap],
    own: &MapProvenance,
    prompt: &MultiImagePrompt,
    geometries: &[MapGeometry],
) -> std::result::Result<Vec<ImageMap>, String> {
    let grids: Vec<MapGeometry> = maps.iter().zip(geometries).map(|(o, g)| MapGeometry { h: o.grid, w: o.grid, ..*g }).collect();
    let like = occlusion_provenance(own, maps[current_index(prompt)].grid);
    image_maps(&like, split_occlusion(maps)?, &grids, &prompt.roles)
}

/// The current image's part of a map over every image token (the generic map, for sinks),
/// renormalised.
pub fn current_part(values: &[f64], prompt: &MultiImagePrompt) -> std::result::Result<Vec<f64>, String> {
    let mut parts = split_by_image(values, &span_lens(prompt))?;
    parts.swap_remove(current_index(prompt)).values.ok_or_else(|| "the generic prompt puts no attention on the current image".to_string())
}

fn span_lens(prompt: &MultiImagePrompt) -> Vec<usize> {
    prompt.image_spans.iter().map(|s| s.len()).collect()
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
