//! The opt-in checks that say whether a map can be trusted, run per case by [`super::run_case`]:
//! Grad-CAM as a second method (and the labelled fallback when attention cannot be captured),
//! deletion-based faithfulness, the generic-prompt map behind sinks and the relative map, and
//! the agreement between methods. The math lives in `radlens_shared::trust` and
//! [`super::gradcam`]; this module runs the extra forwards.

use candle_core::{DType, Tensor};
use radlens_shared::fusion::{MapMethod, MapProvenance};
use radlens_shared::geometry::MapGeometry;
use radlens_shared::map::normalize_vec;
use radlens_shared::metrics::MapMetrics;
pub use radlens_shared::record::TrustSettings;
use radlens_shared::record::{Faithfulness, SinkCheck};
use radlens_shared::trust::{
    GENERIC_PROMPT, MethodPair, SINK_FACTOR, deletion_count, method_agreement, random_cells, relative_map, sink_cells, top_cells,
    unfaithful, without_cells,
};

use super::capture::fuse_captured;
use super::gradcam::{MarginTokens, gradcam, margin_of_pixels};
use super::plan::{CasePlan, last_prompt_row};
use crate::models::VisionLanguageModel;
use crate::models::error::{ModelError, Result};
use crate::models::loader::Engine;
use crate::models::probe::AttentionRecorder;

/// What one case is about: the model, the whole prompt, the pixels and the map grid.
pub struct CaseInput<'a> {
    pub model: &'a dyn VisionLanguageModel,
    pub input_ids: &'a [u32],
    pub pixel_values: &'a Tensor,
    pub geometry: MapGeometry,
    pub yes_ids: &'a [u32],
    pub no_ids: &'a [u32],
}

/// A normalised map with its provenance.
#[derive(Debug, Clone)]
pub struct MethodValues {
    pub values: Vec<f64>,
    pub provenance: MapProvenance,
}

/// Grad-CAM of the case, normalised, with provenance derived from `like` (the attention map's, so
/// model, geometry and query are the same) relabelled `gradcam` with its block.
pub fn gradcam_map(case: &CaseInput<'_>, like: &MapProvenance) -> Result<MethodValues> {
    let cam = gradcam(case.model, case.input_ids, case.pixel_values, case.yes_ids, case.no_ids)?;
    if (cam.h, cam.w) != (case.geometry.h, case.geometry.w) {
        return Err(ModelError::Shape {
            site: cam.site.name.to_string(),
            expected: format!("{}x{}", case.geometry.h, case.geometry.w),
            got: format!("{}x{}", cam.h, cam.w),
        });
    }
    let values = normalize_vec(&cam.cells)
        .map_err(|_| ModelError::Invalid(format!("Grad-CAM at {} is zero everywhere: no patch raises the yes/no margin", cam.site.name)))?;
    let provenance = MapProvenance {
        method: MapMethod::Gradcam,
        layers: Vec::new(),
        query_positions: vec![case.input_ids.len() - 1],
        layers_without_image: Vec::new(),
        site: Some(cam.site.name),
        fallback_reason: None,
        ..like.clone()
    };
    Ok(MethodValues { values, provenance })
}

/// The map that stands in when attention cannot be captured: Grad-CAM, else uniform, each
/// labelled with its method and why (never a silent replacement).
pub fn fallback_map(case: &CaseInput<'_>, like: &MapProvenance, attention_error: &str) -> MethodValues {
    match gradcam_map(case, like) {
        Ok(mut m) => {
            m.provenance.fallback_reason = Some(format!("attention: {attention_error}"));
            m
        }
        Err(e) => {
            let n = case.geometry.h * case.geometry.w;
            MethodValues {
                values: vec![1.0 / n as f64; n],
                provenance: MapProvenance {
                    method: MapMethod::UniformFallback,
                    layers: Vec::new(),
                    layers_without_image: Vec::new(),
                    site: None,
                    fallback_reason: Some(format!("attention: {attention_error}; Grad-CAM: {e}")),
                    ..like.clone()
                },
            }
        }
    }
}

/// The generic prompt's attention map over the same image features (one prefill), fused as the
/// question maps are: last prompt row, the plan's layers and head fusion.
pub fn generic_map(engine: &Engine, plan: &CasePlan, features: &Tensor) -> Result<Vec<f64>> {
    // One image token per feature row (`[tokens, hidden]` or Qwen2.5-VL's `[rows, cols, hidden]`).
    let image_tokens = features.elem_count() / features.dims().last().copied().unwrap_or(1).max(1);
    let prompt = engine.prompter.encode_for_image(GENERIC_PROMPT, None, image_tokens)?;
    let l = prompt.input_ids.len();
    let mut recorder = AttentionRecorder::new(plan.last_row_policy(l));
    let mut cache = engine.model.new_cache();
    engine.model.prefill_from(&prompt.input_ids, 0, features, &mut cache, &mut recorder)?;
    let captured = fuse_captured(&recorder, &plan.layers, &[last_prompt_row(l)], &prompt.image_positions, plan.spec.head_fusion)?;
    Ok(normalize_vec(&captured.fused.values)?)
}

/// The trust checks of one case: the other methods' maps (normalised, with provenance), the
/// deletion tests of every map and their agreement. A check that fails is a note; the others
/// are kept. Sinks need every variant's map and are added by [`sink_checks`].
#[derive(Debug, Clone, Default)]
pub struct TrustChecks {
    /// Grad-CAM and the relative map, as asked for (the case's own map is not repeated here).
    pub maps: Vec<MethodValues>,
    pub faithfulness: Vec<Faithfulness>,
    pub agreement: Vec<MethodPair>,
    pub notes: Vec<String>,
}

/// Runs the checks `settings` asks for on a case whose own map is `own` (attention, or the
/// fallback standing in for it: the deletion tests and agreement cover it too; the relative map
/// needs attention).
pub fn checks(
    case: &CaseInput<'_>,
    settings: &TrustSettings,
    own: &MethodValues,
    generic: Option<&std::result::Result<Vec<f64>, String>>,
    seed: u64,
) -> TrustChecks {
    let mut out = TrustChecks::default();
    let mut methods = vec![own.clone()];
    // A fallback record's own map may already be the Grad-CAM.
    if settings.gradcam && own.provenance.method != MapMethod::Gradcam {
        match gradcam_map(case, &own.provenance) {
            Ok(m) => methods.push(m),
            Err(e) => out.notes.push(format!("gradcam: {e}")),
        }
    }
    if settings.sinks {
        let attention = Some(own).filter(|m| m.provenance.method == MapMethod::QueryToVisual);
        match (generic, attention) {
            (Some(Ok(g)), Some(att)) => match relative(att, g) {
                Ok(m) => methods.push(m),
                Err(e) => out.notes.push(format!("relative map: {e}")),
            },
            (Some(Err(e)), _) => out.notes.push(e.clone()),
            _ => out.notes.push("relative map: no attention map".into()),
        }
    }
    if settings.faithfulness {
        let refs: Vec<&MethodValues> = methods.iter().collect();
        match faithfulness(case, &refs, &settings.k_percents, settings.random_draws, seed) {
            Ok(f) => out.faithfulness = f,
            Err(e) => out.notes.push(format!("faithfulness: {e}")),
        }
    }
    out.agreement = agreement(&methods.iter().collect::<Vec<_>>());
    out.maps = methods.split_off(1);
    out
}

/// Sinks of a set of maps of one image (a study's variants, or a probe's one question): cells
/// above `SINK_FACTOR / n` in every map and in the generic map. Each map gets the cells, the
/// mass it puts on them and its metrics without them; `None` maps (no attention) get none.
pub fn sink_checks(maps: &[Option<&[f64]>], generic: &[f64]) -> Vec<Option<SinkCheck>> {
    let mut all: Vec<&[f64]> = maps.iter().flatten().copied().collect();
    if all.is_empty() {
        return maps.iter().map(|_| None).collect();
    }
    all.push(generic);
    let cells = sink_cells(&all, SINK_FACTOR);
    maps.iter()
        .map(|p| {
            p.map(|p| SinkCheck {
                factor: SINK_FACTOR,
                generic_prompt: GENERIC_PROMPT.to_string(),
                cells: cells.clone(),
                mass: cells.iter().fold(0.0, |acc, &c| acc + p[c]),
                metrics_without: without_cells(p, &cells).ok().map(|q| MapMetrics::of_probs(&q)),
            })
        })
        .collect()
}

/// The relative map of a question's attention map against the generic map.
pub fn relative(attention: &MethodValues, generic: &[f64]) -> Result<MethodValues> {
    let values = relative_map(&attention.values, generic)?;
    let provenance = MapProvenance { method: MapMethod::Relative, site: None, fallback_reason: None, ..attention.provenance.clone() };
    Ok(MethodValues { values, provenance })
}

/// `pixel_values` `[1, C, S, S]` with each listed cell of an `h x w` grid over the input square
/// replaced by the per-channel mean of the image.
pub fn delete_cells(pixel_values: &Tensor, h: usize, w: usize, cells: &[usize]) -> Result<Tensor> {
    let (_, _, sh, sw) = pixel_values.dims4()?;
    let mut mask = vec![0f32; sh * sw];
    for &cell in cells {
        let (r, c) = (cell / w, cell % w);
        for y in r * sh / h..(r + 1) * sh / h {
            for x in c * sw / w..(c + 1) * sw / w {
                mask[y * sw + x] = 1.0;
            }
        }
    }
    let pixels = pixel_values.to_dtype(DType::F32)?;
    let mask = Tensor::from_vec(mask, (1, 1, sh, sw), pixels.device())?;
    let mean = pixels.mean_keepdim(3)?.mean_keepdim(2)?; // [1, C, 1, 1]
    let kept = pixels.broadcast_mul(&(1.0 - &mask)?)?;
    Ok(kept.broadcast_add(&mask.broadcast_mul(&mean)?)?.to_dtype(pixel_values.dtype())?)
}

/// Deletion tests of each method's map: for each size, the top cells against `draws` random
/// draws of as many cells (seeded from `seed`; the same draws for every method).
pub fn faithfulness(
    case: &CaseInput<'_>,
    maps: &[&MethodValues],
    k_percents: &[u32],
    draws: usize,
    seed: u64,
) -> Result<Vec<Faithfulness>> {
    let features = case.model.encode_image(case.pixel_values, &mut crate::models::probe::NoProbe)?;
    let mut cache = case.model.new_cache();
    let logits = case.model.prefill_from(case.input_ids, 0, &features, &mut cache, &mut crate::models::probe::NoProbe)?.to_vec1::<f32>()?;
    let tokens = MarginTokens::pick(&logits, case.yes_ids, case.no_ids)
        .ok_or_else(|| ModelError::Invalid("faithfulness needs single-token spellings of \"yes\" and \"no\" in the vocabulary".into()))?;
    let margin = f64::from(logits[tokens.yes as usize] - logits[tokens.no as usize]);
    let (h, w) = (case.geometry.h, case.geometry.w);
    let delta = |cells: &[usize]| -> Result<f64> {
        let pixels = delete_cells(case.pixel_values, h, w, cells)?;
        Ok(margin_of_pixels(case.model, case.input_ids, &pixels, tokens)? - margin)
    };
    deletion_tests((h, w), margin, delta, maps, k_percents, draws, seed)
}

/// The deletion tests proper on an `h x w` grid: `delta(cells)` is the margin's change with
/// those cells deleted from the unperturbed `margin`'s input (one image's pixels, however the
/// prompt holds it).
pub fn deletion_tests(
    (h, w): (usize, usize),
    margin: f64,
    mut delta: impl FnMut(&[usize]) -> Result<f64>,
    maps: &[&MethodValues],
    k_percents: &[u32],
    draws: usize,
    seed: u64,
) -> Result<Vec<Faithfulness>> {
    let mut out = Vec::new();
    for &k in k_percents {
        let count = deletion_count(h * w, k);
        let mut random = 0.0;
        for d in 0..draws {
            random += delta(&random_cells(h * w, count, seed.wrapping_add(u64::from(k) * 1000 + d as u64)))?;
        }
        let delta_random = random / draws.max(1) as f64;
        for m in maps {
            let delta_top = delta(&top_cells(&m.values, count))?;
            out.push(Faithfulness {
                method: m.provenance.method,
                k_percent: k,
                cells: count,
                margin,
                delta_top,
                delta_random,
                random_draws: draws,
                flagged: unfaithful(delta_top, delta_random),
            });
        }
    }
    Ok(out)
}

/// Pairwise Jensen-Shannon of the case's maps.
pub fn agreement(maps: &[&MethodValues]) -> Vec<MethodPair> {
    let pairs: Vec<(MapMethod, &[f64])> = maps.iter().map(|m| (m.provenance.method, m.values.as_slice())).collect();
    method_agreement(&pairs)
}

/// A stable seed per sample (FNV-1a of its id), so reruns and resumes draw the same cells.
pub fn seed_of(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Deleting cell (0, 1) of a 2x2 grid over a 4x4 input replaces exactly its 2x2 pixels with
    /// the channel's mean.
    #[test]
    fn deletion_replaces_the_cells_pixels_by_the_channel_mean() {
        let v: Vec<f32> = (0..32).map(|i| i as f32).collect();
        let pixels = Tensor::from_vec(v, (1, 2, 4, 4), &Device::Cpu).unwrap();
        let out = delete_cells(&pixels, 2, 2, &[1]).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for ch in 0..2 {
            let mean = (0..16).map(|i| (ch * 16 + i) as f32).sum::<f32>() / 16.0;
            for y in 0..4 {
                for x in 0..4 {
                    let i = ch * 16 + y * 4 + x;
                    let want = if y < 2 && x >= 2 { mean } else { i as f32 };
                    assert_eq!(out[i], want, "channel {ch} pixel ({y}, {x})");
                }
            }
        }
    }

    #[test]
    fn seeds_are_stable_and_differ_by_sample() {
        assert_eq!(seed_of("s1#0"), seed_of("s1#0"));
        assert_ne!(seed_of("s1#0"), seed_of("s1#1"));
    }
}
