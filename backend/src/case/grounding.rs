//! The grounding figures of one case (spec G1-G3): the occlusion reference map, and for each of
//! the case's maps its agreement with it, its lift over control boxes and its box score against
//! the radiologist box. The math is `radlens_shared::grounding`; this runs the occlusion
//! forwards and collects the figures. A figure that cannot be computed is a note.

use candle_core::Tensor;
use radlens_shared::AttentionMap;
use radlens_shared::fusion::{MapMethod, MapProvenance};
use radlens_shared::geometry::{MapGeometry, PixelBox};
use radlens_shared::grounding::{
    CaseGrounding, GroundingRecord, MethodGrounding, OcclusionSupport, box_controls, box_score, confound_mass, occlusion_agreement,
};
use radlens_shared::record::GroundingSettings;

use super::image::CaseImage;
use super::occlusion::{OccludedImages, OcclusionMap, OcclusionSettings, occlusion_map};
use super::trust::{CaseInput, MethodValues};

/// What grounding adds to a case: its figures, and the occlusion map as a map of its own.
#[derive(Debug, Clone, Default)]
pub struct GroundingOutcome {
    pub record: CaseGrounding,
    /// The positive part of the support, normalised (`method: occlusion`), on the occlusion grid.
    pub occlusion_map: Option<MethodValues>,
}

/// The occluded images of `image`, encoded for the settings' grid.
pub fn occluded_images(
    input: &CaseInput<'_>,
    image: &CaseImage,
    settings: GroundingSettings,
) -> crate::models::error::Result<OccludedImages> {
    OccludedImages::encode(input.model, &image.pixels, OcclusionSettings { grid: settings.occlusion_grid, batch: settings.occlusion_batch })
}

/// The boxes a case's maps are held against, in original pixels.
#[derive(Debug, Clone, Copy, Default)]
pub struct Boxes {
    /// The radiologist's box (G2, G3).
    pub roi: Option<PixelBox>,
    /// A known shortcut region (radlens' confound mass).
    pub confound: Option<PixelBox>,
}

/// Grounds `maps` (the case's own map first, then the other methods'). `occluded` is the image's
/// occluded encodings when the caller shares them between questions; else they are made here.
pub fn ground(
    input: &CaseInput<'_>,
    image: &CaseImage,
    settings: GroundingSettings,
    occluded: Option<&OccludedImages>,
    maps: &[&MethodValues],
    boxes: Boxes,
) -> GroundingOutcome {
    let mut out = GroundingOutcome::default();
    let made;
    let occluded = match occluded {
        // `probe --null-edits` alone: no occlusion reference.
        _ if !settings.occlusion => None,
        Some(o) => Some(o),
        None => match occluded_images(input, image, settings) {
            Ok(o) => {
                made = o;
                Some(&made)
            }
            Err(e) => {
                out.record.notes.push(format!("occlusion: {e}"));
                None
            }
        },
    };
    let image_token_id = input.model.summary().image_token_id;
    let support = occluded.and_then(|o| {
        match occlusion_map(input.model, input.input_ids, image_token_id, &image.features, o, input.yes_ids, input.no_ids) {
            Ok(m) => Some(m),
            Err(e) => {
                out.record.notes.push(format!("occlusion: {e}"));
                None
            }
        }
    });
    figures(&mut out, support.as_ref(), &image.pixels, maps, boxes);
    out
}

/// Adds to `out` the occlusion map of `support` (when there is one) and the figures of `maps`
/// and of that map: agreement with the support, control boxes, box score and confound mass.
/// `pixels` is the model's input `[1, C, H, W]` the support was measured on (a multi-image
/// prompt's current image, issue 21).
pub fn figures(out: &mut GroundingOutcome, support: Option<&OcclusionMap>, pixels: &Tensor, maps: &[&MethodValues], boxes: Boxes) {
    // A non-square input (Qwen2.5-VL) records its shorter side and both sides.
    let (input_h, input_w) = (pixels.dim(2).unwrap_or(0), pixels.dim(3).unwrap_or(0));
    let input_side = input_h.min(input_w);
    let input_hw = (input_h != input_w).then_some((input_h, input_w));
    if let Some(s) = support {
        let like = maps.first().map(|m| &m.provenance);
        match (s.positive_map(), like) {
            (Some(values), Some(like)) => out.occlusion_map = Some(MethodValues { values, provenance: occlusion_provenance(like, s.grid) }),
            (None, _) => out.record.notes.push("occlusion: no cell weakens the answer when hidden (no positive support)".into()),
            _ => {}
        }
        out.record.occlusion =
            Some(OcclusionSupport { grid: s.grid, input_side, input_hw, margin: s.margin, sign: s.sign, support: s.support.clone() });
    }
    let all: Vec<&MethodValues> = maps.iter().copied().chain(out.occlusion_map.as_ref()).collect();
    for m in all {
        let g = m.provenance.geometry;
        let map = match AttentionMap::new(g.h, g.w, m.values.clone()) {
            Ok(map) => map,
            Err(e) => {
                out.record.notes.push(format!("{}: {e}", m.provenance.method));
                continue;
            }
        };
        let mut figures = GroundingRecord::default();
        let mut note = |what: &str, e: radlens_shared::MetricError| out.record.notes.push(format!("{} {what}: {e}", m.provenance.method));
        if let (Some(s), true) = (support, m.provenance.method != MapMethod::Occlusion) {
            match occlusion_agreement(&map, &g.crop, &s.support, input_side, s.grid) {
                Ok(a) => figures.occlusion = Some(a),
                Err(e) => note("occlusion agreement", e),
            }
        }
        if let Some(b) = boxes.confound {
            match confound_mass(&map, &g, &b) {
                Ok(c) => figures.confound = c,
                Err(e) => note("confound mass", e),
            }
        }
        if let Some(b) = boxes.roi {
            match box_controls(&map, &g, &b) {
                Ok(c) => figures.box_controls = Some(c),
                Err(e) => note("box controls", e),
            }
            match box_score(&map, &g.crop, &[b]) {
                Ok(s) => figures.box_score = Some(s),
                Err(e) => note("box score", e),
            }
        }
        out.record.maps.push(MethodGrounding { method: m.provenance.method, figures });
    }
}

/// The occlusion map's provenance: the case's, on the `g x g` grid over the same crop.
pub fn occlusion_provenance(like: &MapProvenance, grid: usize) -> MapProvenance {
    MapProvenance {
        method: MapMethod::Occlusion,
        layers: Vec::new(),
        layers_without_image: Vec::new(),
        site: None,
        fallback_reason: None,
        geometry: MapGeometry { h: grid, w: grid, ..like.geometry },
        ..like.clone()
    }
}
