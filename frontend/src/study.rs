//! View model of the case/study view (`/runs/:id/studies/:study`): the grid of variants x
//! models, the overlay bitmap (viridis at a chosen opacity) and the provenance line. Pure Rust.

use radlens_shared::fusion::MapProvenance;
use radlens_shared::metrics::MapMetrics;
use serde::Deserialize;

use crate::api::ApiRecord;
use crate::colormap::heatmap_rgba;
use crate::url_state::parse_query;

/// `GET /api/runs/{id}/records/{n}/map`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MapJson {
    pub h: usize,
    pub w: usize,
    pub values: Vec<f64>,
    pub provenance: MapProvenance,
    pub image_share: f64,
    pub metrics: MapMetrics,
}

/// Default overlay opacity.
pub const DEFAULT_OPACITY: f64 = 0.6;

/// The overlay opacity of a query string (`opacity=0..1`), clamped; default [`DEFAULT_OPACITY`].
pub fn opacity_from_query(query: &str) -> f64 {
    parse_query(query)
        .into_iter()
        .find(|(k, _)| k == "opacity")
        .and_then(|(_, v)| v.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .map(|v| v.clamp(0.0, 1.0))
        .unwrap_or(DEFAULT_OPACITY)
}

/// Pixel size of the overlay bitmap for an `h x w` grid: whole blocks per cell, about 256 px on
/// the long side.
pub fn overlay_size(h: usize, w: usize) -> (usize, usize) {
    let k = (256 / h.max(w).max(1)).max(1);
    (w * k, h * k)
}

/// The overlay's RGBA pixels: the viridis heatmap with every pixel's alpha set to `opacity`.
pub fn overlay_rgba(m: &MapJson, opacity: f64) -> Option<(usize, usize, Vec<u8>)> {
    let (pw, ph) = overlay_size(m.h, m.w);
    let mut px = heatmap_rgba(m.h, m.w, &m.values, pw, ph)?;
    let a = (opacity.clamp(0.0, 1.0) * 255.0).round() as u8;
    for p in px.chunks_exact_mut(4) {
        p[3] = a;
    }
    Some((pw, ph, px))
}

/// Where the grid lies on the image, as CSS percentages of the image box: left, top, width,
/// height (the crop may reach past the image when the model padded it).
pub fn overlay_box(p: &MapProvenance) -> (f64, f64, f64, f64) {
    let g = &p.geometry;
    let (iw, ih) = (g.image_w.max(1) as f64, g.image_h.max(1) as f64);
    (
        100.0 * g.crop.x0 / iw,
        100.0 * g.crop.y0 / ih,
        100.0 * g.crop.width() / iw,
        100.0 * g.crop.height() / ih,
    )
}

/// One line saying where the map came from.
pub fn provenance_line(p: &MapProvenance, image_share: f64) -> String {
    let layers = match (p.layers.first(), p.layers.last()) {
        (Some(a), Some(b)) if a != b => format!("layers {a}–{b}"),
        (Some(a), _) => format!("layer {a}"),
        _ => "no layers".to_owned(),
    };
    let skipped = if p.layers_without_image.is_empty() {
        String::new()
    } else {
        format!(" ({} without image mass)", p.layers_without_image.len())
    };
    format!(
        "{} · {} · {} ({}){} · heads: {} · query: {} · grid {}×{} over {}×{} px · image share {:.3}",
        p.model,
        p.method,
        layers,
        p.layer_range,
        skipped,
        p.head_fusion,
        p.query_mode,
        p.geometry.h,
        p.geometry.w,
        p.geometry.image_w,
        p.geometry.image_h,
        image_share
    )
}

/// One variant of a study: its index and one cell per model (`None`: that model has no record).
pub type VariantRow = (u32, Vec<Option<ApiRecord>>);

/// The image-pass records of one study as rows of variants (by `variant_index`), each row's
/// records in the models' order of first appearance.
pub fn grid(records: &[ApiRecord]) -> (Vec<String>, Vec<VariantRow>) {
    let mut models: Vec<String> = Vec::new();
    for r in records {
        if !models.contains(&r.record.model) {
            models.push(r.record.model.clone());
        }
    }
    let mut variants: Vec<u32> = records.iter().map(|r| r.record.variant_index).collect();
    variants.sort_unstable();
    variants.dedup();
    let rows = variants
        .into_iter()
        .map(|v| {
            let cells = models
                .iter()
                .map(|m| {
                    records
                        .iter()
                        .find(|r| r.record.variant_index == v && &r.record.model == m)
                        .cloned()
                })
                .collect();
            (v, cells)
        })
        .collect();
    (models, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opacity_is_read_and_clamped() {
        assert_eq!(opacity_from_query("?opacity=0.25"), 0.25);
        assert_eq!(opacity_from_query("opacity=7"), 1.0);
        assert_eq!(opacity_from_query("opacity=x"), DEFAULT_OPACITY);
        assert_eq!(opacity_from_query(""), DEFAULT_OPACITY);
    }

    #[test]
    fn overlay_size_keeps_whole_cells() {
        assert_eq!(overlay_size(24, 24), (240, 240));
        assert_eq!(overlay_size(16, 32), (256, 128));
        assert_eq!(overlay_size(1000, 10), (10, 1000));
    }
}
