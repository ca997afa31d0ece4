//! View model of the study view's method and trust panels: a record's attention map, Grad-CAM
//! and relative map side by side over the X-ray, with their pairwise Jensen-Shannon distance
//! computed in the browser by the shared crate (the same code the backend stored in the record's
//! `trust.agreement`), its deletion tests and its sink check. Pure Rust; the panels themselves
//! are `pages::methods_panel` (wasm32).
//!
//! Shown only for records of runs made with `--gradcam` or `--sinks` (or the demo).

use radlens_shared::fusion::{MapMethod, MapProvenance};
use radlens_shared::metrics::{MapMetrics, js_distance};
use radlens_shared::record::{CaseRecord, Faithfulness};

use crate::study::overlay_size;

/// `GET /api/runs/{run}/records/{n}/maps/{method}`: a map by one method (the shared wire type).
pub use radlens_shared::api::MethodMapPayload;

/// The methods shown side by side: the record's own map first (attention, or the labelled
/// fallback standing in for it), then the checks' maps. Empty when the record has no other map.
pub fn panel_methods(record: &CaseRecord) -> Vec<MapMethod> {
    let others: Vec<MapMethod> = record.trust.iter().flat_map(|t| &t.maps).map(|m| m.provenance.method).collect();
    match (&record.map, others.is_empty()) {
        (Some(own), false) => std::iter::once(own.provenance.method).chain(others).collect(),
        _ => Vec::new(),
    }
}

/// What a method is called on the page.
pub fn method_label(m: MapMethod) -> &'static str {
    match m {
        MapMethod::QueryToVisual => "attention",
        MapMethod::TokenConditioned => "attention (term)",
        MapMethod::Gradcam => "Grad-CAM",
        MapMethod::Relative => "relative to a generic prompt",
        MapMethod::UniformFallback => "uniform (fallback)",
        MapMethod::Occlusion => "occlusion (causal reference)",
    }
}

/// The JS distance (bits) of every unordered pair of loaded maps, in the order given; `None`
/// where a map is missing or the grids differ.
pub fn pairwise_js(maps: &[(MapMethod, Option<&[f64]>)]) -> Vec<(MapMethod, MapMethod, Option<f64>)> {
    let mut out = Vec::new();
    for (i, (a, p)) in maps.iter().enumerate() {
        for (b, q) in &maps[i + 1..] {
            let d = match (p, q) {
                (Some(p), Some(q)) => js_distance(p, q).ok(),
                _ => None,
            };
            out.push((*a, *b, d));
        }
    }
    out
}

/// Whether a method's map enters the side-by-side JS table. The occlusion map lies on its own
/// (coarser) occlusion grid, so it is compared with the others by the grounding figures (G1:
/// Spearman, top-10% overlap and support mass on its grid), not by a JS distance.
pub fn in_js_table(m: MapMethod) -> bool {
    m != MapMethod::Occlusion
}

/// A line under a method's map: the block Grad-CAM differentiated at, or why a fallback stands in.
pub fn method_note(p: &MapProvenance) -> String {
    match (&p.fallback_reason, &p.site) {
        (Some(reason), _) => format!("fallback: {reason}"),
        (None, Some(site)) => format!("gradient at {site}"),
        (None, None) if p.method == MapMethod::Relative => format!("over \"{}\"", radlens_shared::trust::GENERIC_PROMPT),
        (None, None) if p.method == MapMethod::Occlusion => {
            format!("over {} x {} occlusion cells: where hiding the image weakens the answer", p.geometry.h, p.geometry.w)
        }
        _ => String::new(),
    }
}

/// A record's deletion tests as the run stored them (per size, then per method); empty when the
/// run was made without `--faithfulness`.
pub fn deletion_rows(record: &CaseRecord) -> &[Faithfulness] {
    record.trust.as_ref().map(|t| t.faithfulness.as_slice()).unwrap_or(&[])
}

/// The badge of one deletion test. `flagged` is the stored verdict (shared `unfaithful`), not
/// recomputed here.
pub fn deletion_verdict(f: &Faithfulness) -> &'static str {
    if f.flagged { "not faithful" } else { "beats random" }
}

/// The colour sink cells are outlined in (no colour map reaches pure magenta).
pub const SINK_OUTLINE: &str = "#ff00ff";

/// A record's sink cells (row-major) on its own attention map; empty without `--sinks` or when
/// the study has none.
pub fn sink_cells(record: &CaseRecord) -> &[usize] {
    record.trust.as_ref().and_then(|t| t.sinks.as_ref()).map(|s| s.cells.as_slice()).unwrap_or(&[])
}

/// Pixel squares `(x, y, side, side)` of `cells` of an `h x w` grid on the overlay bitmap
/// ([`overlay_size`]: whole blocks per cell), for outlining; cells off the grid are skipped.
pub fn sink_rects(h: usize, w: usize, cells: &[usize]) -> Vec<(usize, usize, usize, usize)> {
    let (pw, _) = overlay_size(h, w);
    let k = pw / w.max(1);
    cells.iter().filter(|&&c| c < h * w).map(|&c| ((c % w) * k, (c / w) * k, k, k)).collect()
}

/// The map's metrics as stored and with the sinks zeroed (`None`: the sinks held all the mass),
/// one `(name, as is, without sinks)` row per metric.
pub fn sink_metric_rows(with: &MapMetrics, without: Option<&MapMetrics>) -> Vec<(&'static str, f64, Option<f64>)> {
    vec![
        ("focus", with.focus, without.map(|m| m.focus)),
        ("gini", with.gini, without.map(|m| m.gini)),
        ("top-10% mass", with.top10_mass, without.map(|m| m.top10_mass)),
        ("entropy (nats)", with.entropy_nats, without.map(|m| m.entropy_nats)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_in_order_with_missing_maps_left_blank() {
        let a = [0.5, 0.5];
        let b = [1.0, 0.0];
        let pairs = pairwise_js(&[(MapMethod::QueryToVisual, Some(&a)), (MapMethod::Gradcam, Some(&b)), (MapMethod::Relative, None)]);
        assert_eq!(pairs.len(), 3);
        assert_eq!((pairs[0].0, pairs[0].1), (MapMethod::QueryToVisual, MapMethod::Gradcam));
        let d = pairs[0].2.unwrap();
        assert!((d - js_distance(&a, &b).unwrap()).abs() < 1e-15 && d > 0.0);
        assert!(pairs[1].2.is_none() && pairs[2].2.is_none());
    }

    /// On a 2x3 grid (overlay blocks of 85 px: 256 / 3), cell 4 is row 1, column 1; cells off
    /// the grid are not outlined.
    #[test]
    fn sink_cells_are_outlined_on_their_overlay_blocks() {
        let (pw, ph) = overlay_size(2, 3);
        assert_eq!((pw, ph), (255, 170));
        assert_eq!(sink_rects(2, 3, &[4, 0, 6]), vec![(85, 85, 85, 85), (0, 0, 85, 85)]);
        assert!(sink_rects(2, 3, &[]).is_empty());
    }

    #[test]
    fn deletion_verdicts_follow_the_stored_flag() {
        let f = Faithfulness {
            method: MapMethod::Gradcam,
            k_percent: 10,
            cells: 2,
            margin: 0.5,
            delta_top: -0.1,
            delta_random: -0.3,
            random_draws: 3,
            flagged: true,
        };
        assert_eq!(deletion_verdict(&f), "not faithful");
        assert_eq!(deletion_verdict(&Faithfulness { flagged: false, ..f }), "beats random");
    }

    #[test]
    fn metrics_without_sinks_sit_beside_the_stored_ones() {
        let with = MapMetrics { entropy_nats: 1.0, focus: 0.2, gini: 0.3, top10_mass: 0.4 };
        let without = MapMetrics { entropy_nats: 2.0, focus: 0.1, gini: 0.2, top10_mass: 0.3 };
        let rows = sink_metric_rows(&with, Some(&without));
        assert_eq!(rows[0], ("focus", 0.2, Some(0.1)));
        assert_eq!(rows[3], ("entropy (nats)", 1.0, Some(2.0)));
        // The sinks held all the mass: nothing is left to measure.
        assert!(sink_metric_rows(&with, None).iter().all(|r| r.2.is_none()));
    }

    #[test]
    fn notes_say_where_a_map_comes_from() {
        let p: MapProvenance = serde_json::from_value(serde_json::json!({
            "model": "m", "method": "gradcam", "layer_range": "last-quarter", "layers": [], "head_fusion": "mean",
            "query_mode": "query", "query_positions": [9],
            "geometry": {"h": 2, "w": 2, "crop": {"x0": 0.0, "y0": 0.0, "x1": 4.0, "y1": 4.0}, "image_w": 4, "image_h": 4},
            "site": "vision.blocks.22.output"
        }))
        .unwrap();
        assert_eq!(method_note(&p), "gradient at vision.blocks.22.output");
        let fallback = MapProvenance { fallback_reason: Some("attention: no rows".into()), ..p.clone() };
        assert_eq!(method_note(&fallback), "fallback: attention: no rows");
        assert_eq!(method_label(MapMethod::Relative), "relative to a generic prompt");
    }
}
