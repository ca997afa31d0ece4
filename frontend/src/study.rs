//! View model of the case/study view (`/runs/:id/studies/:study`): the grid of variants x
//! models, the overlay bitmap (viridis at a chosen opacity) and the provenance line. Pure Rust.

use radlens_shared::MetricError;
use radlens_shared::fusion::{HeadFusion, HeadRows, LayerRange, MapMethod, MapProvenance, fuse_rows};
use radlens_shared::map::AttentionMap;
use radlens_shared::metrics::MapMetrics;

use crate::api::ApiRecord;
use crate::colormap::Colormap;
use crate::url_state::parse_query;

/// `GET /api/runs/{id}/records/{n}/map` (the shared wire type).
pub use radlens_shared::api::MapPayload;

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

/// How the study view paints a map; every field lives in the URL query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverlayOpts {
    /// Alpha of the drawn cells, `0..=1` (`opacity=`).
    pub opacity: f64,
    /// Cells below `threshold * max` are not drawn, `0..=1` (`threshold=`).
    pub threshold: f64,
    /// `cmap=viridis|inferno|gray`.
    pub colormap: Colormap,
    /// Percentile (`50..=100`) the colour scale saturates at (`clip=`); 100 = the map max.
    pub clip: f64,
    /// Bilinear interpolation of the cell grid instead of nearest-neighbour blocks (`smooth=1`).
    pub smooth: bool,
    /// The radiologist box, its mirror and the G2 control boxes drawn on the overlay (`boxes=1`).
    pub boxes: bool,
    /// The map drawn on each card's overlay: another method's (`overlay=gradcam|relative|occlusion`,
    /// where the record has it), or the record's own (`None`).
    pub method: Option<MapMethod>,
}

/// Re-fusion choice (`fusion=mean|max|entropy`, `layers=2-5`); `None`/empty = as stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RefuseOpts {
    pub fusion: Option<HeadFusion>,
    pub layers: String,
}

impl RefuseOpts {
    pub fn from_query(query: &str) -> Self {
        let kv = parse_query(query);
        let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        Self { fusion: get("fusion").and_then(|v| v.parse().ok()), layers: get("layers").unwrap_or_default().trim().to_owned() }
    }

    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(f) = self.fusion {
            out.push(("fusion".into(), fusion_key(f).into()));
        }
        if !self.layers.is_empty() {
            out.push(("layers".into(), self.layers.clone()));
        }
        out
    }
}

/// The short URL/select name of a head fusion.
pub fn fusion_key(f: HeadFusion) -> &'static str {
    match f {
        HeadFusion::Mean => "mean",
        HeadFusion::Max => "max",
        HeadFusion::EntropyWeighted => "entropy",
    }
}

/// The layers along the layer axis of a record's `rows.bin`: the resolved range, i.e. the used
/// layers and those without image mass, ascending (`n` = the axis length, for a check).
pub fn captured_layers(p: &MapProvenance, n: usize) -> Result<Vec<usize>, String> {
    let mut l: Vec<usize> = p.layers.iter().chain(&p.layers_without_image).copied().collect();
    l.sort_unstable();
    l.dedup();
    if l.len() != n {
        return Err(format!("the rows hold {n} layers but the provenance names {}", l.len()));
    }
    Ok(l)
}

/// Positions along the layer axis the `text` choice selects (empty: all captured layers).
pub fn select_layers(text: &str, captured: &[usize], stored: &LayerRange) -> Result<Vec<usize>, String> {
    let text = text.trim();
    let all = || (0..captured.len()).collect::<Vec<_>>();
    if text.is_empty() {
        return Ok(all());
    }
    let range: LayerRange = text.parse().map_err(|e| format!("{e}"))?;
    match range {
        LayerRange::All => Ok(all()),
        r if &r == stored => Ok(all()),
        LayerRange::LastQuarter => Err("last-quarter needs the model's depth: list layers, e.g. 2-5".into()),
        // A choice names layers of every model on the page; each map uses those it captured.
        LayerRange::List(mut l) => {
            l.sort_unstable();
            l.dedup();
            let idx: Vec<usize> = l.iter().filter_map(|x| captured.iter().position(|c| c == x)).collect();
            if idx.is_empty() {
                return Err(format!(
                    "layers {} not captured for this model (captured: {})",
                    LayerRange::List(l),
                    LayerRange::List(captured.to_vec())
                ));
            }
            Ok(idx)
        }
    }
}

/// The layers a record's rows hold (used and without image mass), ascending.
pub fn record_layers(p: &MapProvenance) -> Vec<usize> {
    let mut l: Vec<usize> = p.layers.iter().chain(&p.layers_without_image).copied().collect();
    l.sort_unstable();
    l.dedup();
    l
}

/// The layer list of a `layers=` value (`2,5`, `2-4`), empty for none, `all` or anything else.
pub fn checked_layers(text: &str) -> Vec<usize> {
    match text.trim().parse::<LayerRange>() {
        Ok(LayerRange::List(mut l)) => {
            l.sort_unstable();
            l.dedup();
            l
        }
        _ => Vec::new(),
    }
}

/// The `layers=` value after toggling `layer` in `text` (empty when no layer is left: as stored).
pub fn toggle_layer(text: &str, layer: usize, on: bool) -> String {
    let mut l = checked_layers(text);
    l.retain(|&x| x != layer);
    if on {
        l.push(layer);
        l.sort_unstable();
    }
    l.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
}

/// The record indices of `diff=3,7` (cards showing the difference to the pinned map).
pub fn diff_from_query(query: &str) -> std::collections::BTreeSet<usize> {
    parse_query(query)
        .into_iter()
        .find(|(k, _)| k == "diff")
        .map(|(_, v)| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// `|a - b|` divided by its maximum (all zeros when the maps are equal); `None` for grids of
/// different sizes.
pub fn difference_map(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    if a.len() != b.len() {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| (x - y).abs()).collect();
    let max = d.iter().copied().filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    Some(if max > 0.0 { d.iter().map(|v| v / max).collect() } else { d })
}

/// JS distance (bits, shared `js_distance`) between every pair of maps; `None` where a pair
/// cannot be compared.
pub fn js_matrix(maps: &[Option<&[f64]>]) -> Vec<Vec<Option<f64>>> {
    maps.iter()
        .map(|a| {
            maps.iter()
                .map(|b| match (a, b) {
                    (Some(a), Some(b)) => radlens_shared::metrics::js_distance(a, b).ok(),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// Little-endian f32 bytes.
pub fn f32_le(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// A map re-fused in the browser.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub values: Vec<f64>,
    pub image_share: f64,
    pub metrics: MapMetrics,
}

/// Re-fuses `[rows, layers, heads, tokens]` raw rows over the layer axis positions `layer_idx`
/// with `fusion`, as the backend does: the shared `fuse_rows` (per row, `layer_map` of each
/// layer, layers without image mass left out, `mean_of` the layers; `mean_of` the rows) over
/// rows already restricted to the image tokens. Metrics on the `h x w` grid.
pub fn refuse(rows: &[f32], shape: &[usize], layer_idx: &[usize], fusion: HeadFusion, h: usize, w: usize) -> Result<Refused, String> {
    let [nr, nl, nh, nt] = shape else {
        return Err(format!("rows of shape {shape:?}, expected [rows, layers, heads, tokens]"));
    };
    let (nr, nl, nh, nt) = (*nr, *nl, *nh, *nt);
    if rows.len() != nr * nl * nh * nt {
        return Err(format!("{} values for shape {shape:?}", rows.len()));
    }
    if layer_idx.is_empty() {
        return Err("no layers selected".into());
    }
    if let Some(l) = layer_idx.iter().find(|&&l| l >= nl).filter(|_| nr > 0) {
        return Err(format!("layer position {l} beyond {nl}"));
    }
    let positions: Vec<usize> = (0..nt).collect();
    let fused = fuse_rows::<MetricError>(nr, layer_idx, &positions, fusion, |r, l| {
        let start = (r * nl + l) * nh * nt;
        Ok(HeadRows { probs: &rows[start..start + nh * nt], heads: nh })
    })
    .map_err(|e| e.to_string())?
    .ok_or_else(|| "no selected layer puts any mass on the image".to_string())?
    .fused;
    let map = AttentionMap::new(h, w, fused.values.clone()).map_err(|e| e.to_string())?;
    let metrics = MapMetrics::of(&map).map_err(|e| e.to_string())?;
    Ok(Refused { values: fused.values, image_share: fused.image_share, metrics })
}

impl Default for OverlayOpts {
    fn default() -> Self {
        Self {
            opacity: DEFAULT_OPACITY,
            threshold: 0.0,
            colormap: Colormap::Viridis,
            clip: 100.0,
            smooth: false,
            boxes: false,
            method: None,
        }
    }
}

impl OverlayOpts {
    /// Reads the options of a query string; unknown or bad values fall back to the defaults.
    pub fn from_query(query: &str) -> Self {
        let d = Self::default();
        let kv = parse_query(query);
        let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let num = |k: &str| get(k).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite());
        Self {
            opacity: opacity_from_query(query),
            threshold: num("threshold").map(|v| v.clamp(0.0, 1.0)).unwrap_or(d.threshold),
            colormap: get("cmap").and_then(Colormap::parse).unwrap_or(d.colormap),
            clip: num("clip").map(|v| v.clamp(50.0, 100.0)).unwrap_or(d.clip),
            smooth: matches!(get("smooth"), Some("1" | "true")),
            boxes: matches!(get("boxes"), Some("1" | "true")),
            method: get("overlay").and_then(crate::grounding::overlay_method_of),
        }
    }

    /// The query pairs of these options (without `?`), in a fixed order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("opacity".into(), self.opacity.to_string()),
            ("threshold".into(), self.threshold.to_string()),
            ("cmap".into(), self.colormap.as_str().into()),
            ("clip".into(), self.clip.to_string()),
            ("smooth".into(), if self.smooth { "1" } else { "0" }.into()),
            ("boxes".into(), if self.boxes { "1" } else { "0" }.into()),
        ];
        if let Some(m) = self.method {
            out.push(("overlay".into(), m.to_string()));
        }
        out
    }
}

/// The `p`-th percentile of the finite values (the shared definition).
pub use radlens_shared::stats::percentile;

/// The value of an `h x w` grid at pixel (`x`, `y`) of a `pw x ph` bitmap: the cell under it
/// (nearest) or the bilinear interpolation between the four nearest cell centres (smooth).
#[allow(clippy::too_many_arguments)]
fn sample(h: usize, w: usize, values: &[f64], x: usize, y: usize, pw: usize, ph: usize, smooth: bool) -> f64 {
    if !smooth {
        return values[(y * h / ph) * w + x * w / pw];
    }
    let fx = ((x as f64 + 0.5) * w as f64 / pw as f64 - 0.5).clamp(0.0, (w - 1) as f64);
    let fy = ((y as f64 + 0.5) * h as f64 / ph as f64 - 0.5).clamp(0.0, (h - 1) as f64);
    let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (tx, ty) = (fx - x0 as f64, fy - y0 as f64);
    let at = |r: usize, c: usize| {
        let v = values[r * w + c];
        if v.is_finite() { v } else { 0.0 }
    };
    let top = at(y0, x0) * (1.0 - tx) + at(y0, x1) * tx;
    let bottom = at(y1, x0) * (1.0 - tx) + at(y1, x1) * tx;
    top * (1.0 - ty) + bottom * ty
}

/// RGBA pixels of an `h x w` grid painted with `opts` into a `pw x ph` bitmap: colour by
/// `min(v, clip) / clip` (clip = the `opts.clip` percentile, the max at 100), alpha `opacity`,
/// and fully transparent where `v < threshold * max`. `None` for a grid that does not match.
pub fn paint(h: usize, w: usize, values: &[f64], opts: &OverlayOpts, pw: usize, ph: usize) -> Option<Vec<u8>> {
    if h == 0 || w == 0 || values.len() != h * w || pw == 0 || ph == 0 {
        return None;
    }
    let (max, scale) = colour_scale(values, opts);
    let cut = opts.threshold * max;
    let a = (opts.opacity.clamp(0.0, 1.0) * 255.0).round() as u8;
    let mut out = Vec::with_capacity(pw * ph * 4);
    for y in 0..ph {
        for x in 0..pw {
            let v = sample(h, w, values, x, y, pw, ph, opts.smooth);
            let v = if v.is_finite() { v } else { 0.0 };
            let t = if scale > 0.0 { (v / scale).min(1.0) } else { 0.0 };
            let [r, g, b] = opts.colormap.colour(t);
            let alpha = if opts.threshold > 0.0 && v < cut { 0 } else { a };
            out.extend_from_slice(&[r, g, b, alpha]);
        }
    }
    Some(out)
}

/// `(max, scale)` of a map under `opts`: its largest finite value, and the value the colour
/// scale saturates at (the `clip` percentile; the max at 100 or when the percentile is 0).
fn colour_scale(values: &[f64], opts: &OverlayOpts) -> (f64, f64) {
    let max = values.iter().copied().filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    let mut scale = if opts.clip >= 100.0 { max } else { percentile(values, opts.clip) };
    if scale.is_nan() || scale <= 0.0 {
        scale = max;
    }
    (max, scale)
}

/// The legend of one drawn map: the colours from 0 to `scale` (where the colour saturates) and
/// the part below the threshold, which is not drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct ColorBar {
    /// The value at the right end (the clip percentile, or the max).
    pub scale: f64,
    /// Values below this are not drawn (`threshold * max`; 0 without a threshold).
    pub cut: f64,
}

impl ColorBar {
    pub fn of(values: &[f64], opts: &OverlayOpts) -> Self {
        let (max, scale) = colour_scale(values, opts);
        let cut = if opts.threshold > 0.0 { opts.threshold * max } else { 0.0 };
        Self { scale, cut }
    }

    /// RGBA pixels of a `pw x ph` bar: column `x` shows the colour of the value
    /// `(x + 0.5) / pw * scale`, exactly as [`paint`] colours it, fully opaque; transparent
    /// where that value is under the threshold.
    pub fn rgba(&self, opts: &OverlayOpts, pw: usize, ph: usize) -> Vec<u8> {
        let mut row = Vec::with_capacity(pw * 4);
        for x in 0..pw {
            let t = (x as f64 + 0.5) / pw as f64;
            let [r, g, b] = opts.colormap.colour(t);
            let hidden = self.cut > 0.0 && t * self.scale < self.cut;
            row.extend_from_slice(&[r, g, b, if hidden { 0 } else { 255 }]);
        }
        row.repeat(ph)
    }

    /// The labels under the bar: `0`, the threshold (when set) and the saturation value.
    pub fn labels(&self, opts: &OverlayOpts) -> (String, Option<String>, String) {
        let top = if opts.clip >= 100.0 {
            format!("{} (max)", fmt_value(self.scale))
        } else {
            format!("≥ {} (p{:.0})", fmt_value(self.scale), opts.clip)
        };
        let cut = (self.cut > 0.0).then(|| format!("hidden < {}", fmt_value(self.cut)));
        ("0".to_owned(), cut, top)
    }
}

/// A map value in 4 significant digits.
fn fmt_value(v: f64) -> String {
    if v == 0.0 || (1e-3..1e4).contains(&v.abs()) { format!("{v:.4}") } else { format!("{v:.3e}") }
}

/// The overlay's RGBA pixels for a map painted with `opts`.
pub fn overlay_rgba(m: &MapPayload, opts: &OverlayOpts) -> Option<(usize, usize, Vec<u8>)> {
    let (pw, ph) = overlay_size(m.h, m.w);
    let px = paint(m.h, m.w, &m.values, opts, pw, ph)?;
    Some((pw, ph, px))
}

/// The cell (row, col, patch index) under the point at fractions `fx`, `fy` (`0..1`) of the
/// map's box; `None` outside it.
pub fn cell_at(h: usize, w: usize, fx: f64, fy: f64) -> Option<(usize, usize, usize)> {
    if !(0.0..1.0).contains(&fx) || !(0.0..1.0).contains(&fy) || h == 0 || w == 0 {
        return None;
    }
    let (row, col) = (((fy * h as f64) as usize).min(h - 1), ((fx * w as f64) as usize).min(w - 1));
    Some((row, col, row * w + col))
}

/// Where the grid lies on the image, as CSS percentages of the image box: left, top, width,
/// height (the crop may reach past the image when the model padded it).
pub fn overlay_box(p: &MapProvenance) -> (f64, f64, f64, f64) {
    let g = &p.geometry;
    let (iw, ih) = (g.image_w.max(1) as f64, g.image_h.max(1) as f64);
    (100.0 * g.crop.x0 / iw, 100.0 * g.crop.y0 / ih, 100.0 * g.crop.width() / iw, 100.0 * g.crop.height() / ih)
}

/// What a map that stands in for attention is called, `None` for an attention map. A record's own
/// map is a fallback when it carries a reason or is not made from attention rows.
pub fn fallback_label(p: &MapProvenance) -> Option<&'static str> {
    match p.method {
        MapMethod::QueryToVisual | MapMethod::TokenConditioned if p.fallback_reason.is_none() => None,
        MapMethod::UniformFallback => Some("Uniform fallback"),
        MapMethod::Relative => Some("Relative map"),
        MapMethod::Occlusion => Some("Occlusion map"),
        _ => Some("Grad-CAM fallback"),
    }
}

/// Why the head-fusion and layer controls do not apply to a map, `None` when they do: a fallback
/// map has no per-layer attention rows to re-fuse (its stored rows are empty).
pub fn refusion_not_applicable(p: &MapProvenance) -> Option<String> {
    let label = fallback_label(p)?;
    let reason = p.fallback_reason.as_deref().unwrap_or("no reason recorded");
    Some(format!("{label}: {reason}; layer re-fusion does not apply"))
}

/// One line saying where the map came from. A fallback names its method and why it stands in,
/// and leaves out the layers and heads it was not made from.
pub fn provenance_line(p: &MapProvenance, image_share: f64) -> String {
    if let Some(label) = fallback_label(p) {
        let site = p.site.map(|s| format!(" · gradient at {s}")).unwrap_or_default();
        return format!(
            "{} · {} ({}): {}{} · query: {} · grid {}×{} over {}×{} px · image share {:.3}",
            p.model,
            label,
            p.method,
            p.fallback_reason.as_deref().unwrap_or("no reason recorded"),
            site,
            p.query_mode,
            p.geometry.h,
            p.geometry.w,
            p.geometry.image_w,
            p.geometry.image_h,
            image_share
        );
    }
    let layers = match (p.layers.first(), p.layers.last()) {
        (Some(a), Some(b)) if a != b => format!("layers {a}–{b}"),
        (Some(a), _) => format!("layer {a}"),
        _ => "no layers".to_owned(),
    };
    let skipped =
        if p.layers_without_image.is_empty() { String::new() } else { format!(" ({} without image mass)", p.layers_without_image.len()) };
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
            let cells =
                models.iter().map(|m| records.iter().find(|r| r.record.variant_index == v && &r.record.model == m).cloned()).collect();
            (v, cells)
        })
        .collect();
    (models, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use radlens_shared::fusion::{Fused, layer_map, mean_of};

    #[test]
    fn opacity_is_read_and_clamped() {
        assert_eq!(opacity_from_query("?opacity=0.25"), 0.25);
        assert_eq!(opacity_from_query("opacity=7"), 1.0);
        assert_eq!(opacity_from_query("opacity=x"), DEFAULT_OPACITY);
        assert_eq!(opacity_from_query(""), DEFAULT_OPACITY);
    }

    #[test]
    fn overlay_options_round_trip_through_the_query() {
        assert_eq!(OverlayOpts::from_query(""), OverlayOpts::default());
        let o = OverlayOpts {
            opacity: 0.3,
            threshold: 0.25,
            colormap: Colormap::Inferno,
            clip: 95.0,
            smooth: true,
            boxes: true,
            method: Some(MapMethod::Occlusion),
        };
        let q: Vec<String> = o.query_pairs().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert!(q.contains(&"boxes=1".to_owned()) && q.contains(&"overlay=occlusion".to_owned()), "{q:?}");
        assert_eq!(OverlayOpts::from_query(&q.join("&")), o);
        let own = OverlayOpts::from_query("overlay=nonsense&boxes=0");
        assert_eq!((own.method, own.boxes), (None, false));
        let bad = OverlayOpts::from_query("threshold=5&cmap=jet&clip=10&smooth=no");
        assert_eq!((bad.threshold, bad.colormap, bad.clip, bad.smooth), (1.0, Colormap::Viridis, 50.0, false));
    }

    #[test]
    fn painting_thresholds_clips_and_smooths() {
        let v = [0.0, 1.0, 0.5, 2.0];
        let mut o = OverlayOpts { opacity: 1.0, ..Default::default() };
        let px = paint(2, 2, &v, &o, 2, 2).unwrap();
        assert_eq!(px[12..15], crate::colormap::viridis(1.0));
        assert_eq!(px[4..7], crate::colormap::viridis(0.5));
        o.threshold = 0.4; // hides cells below 0.8
        let px = paint(2, 2, &v, &o, 2, 2).unwrap();
        let alphas: Vec<u8> = px.chunks(4).map(|p| p[3]).collect();
        assert_eq!(alphas, vec![0, 255, 0, 255]);
        o.threshold = 0.0;
        o.clip = 50.0; // median 0.75: 1.0 and 2.0 saturate
        let px = paint(2, 2, &v, &o, 2, 2).unwrap();
        assert_eq!(px[4..7], crate::colormap::viridis(1.0));
        assert!((percentile(&v, 50.0) - 0.75).abs() < 1e-12);
        o.clip = 100.0;
        o.smooth = true;
        let px = paint(2, 2, &v, &o, 8, 8).unwrap();
        let distinct: std::collections::HashSet<[u8; 3]> = px.chunks(4).map(|p| [p[0], p[1], p[2]]).collect();
        assert!(distinct.len() > 4, "smooth painting interpolates");
        o.colormap = Colormap::Gray;
        o.smooth = false;
        let px = paint(2, 2, &v, &o, 2, 2).unwrap();
        assert_eq!(px[12..15], [255, 255, 255]);
        assert_eq!(cell_at(2, 3, 0.99, 0.6), Some((1, 2, 5)));
        assert_eq!(cell_at(2, 3, 1.0, 0.6), None);
    }

    #[test]
    fn refusing_matches_the_shared_pipeline() {
        // 2 rows, 3 layers, 2 heads, 4 tokens; layer 1 of row 0 sees no image.
        let mut rows = Vec::new();
        for r in 0..2 {
            for l in 0..3 {
                for hd in 0..2 {
                    for t in 0..4 {
                        rows.push(if r == 0 && l == 1 { 0.0 } else { 0.01 * (1 + r + 2 * l + 3 * hd + t * t) as f32 });
                    }
                }
            }
        }
        let shape = [2, 3, 2, 4];
        let got = refuse(&rows, &shape, &[0, 1, 2], HeadFusion::Max, 2, 2).unwrap();
        let pos: Vec<usize> = (0..4).collect();
        let row = |r: usize, ls: &[usize]| {
            let f: Vec<Fused> = ls
                .iter()
                .filter_map(|&l| layer_map(&rows[(r * 3 + l) * 8..(r * 3 + l) * 8 + 8], 2, &pos, HeadFusion::Max).unwrap())
                .collect();
            mean_of(&f).unwrap()
        };
        let want = mean_of(&[row(0, &[0, 1, 2]), row(1, &[0, 1, 2])]).unwrap();
        assert_eq!(got.values, want.values);
        assert_eq!(got.metrics, MapMetrics::of(&AttentionMap::new(2, 2, want.values).unwrap()).unwrap());
        assert!(refuse(&rows, &shape, &[1], HeadFusion::Mean, 2, 2).is_ok());
        assert!(refuse(&rows, &[2, 3], &[0], HeadFusion::Mean, 2, 2).is_err());
        // Layer selection against the captured layers 24..26.
        let cap = [24, 25, 26];
        assert_eq!(select_layers("", &cap, &LayerRange::LastQuarter).unwrap(), vec![0, 1, 2]);
        assert_eq!(select_layers("25-26", &cap, &LayerRange::LastQuarter).unwrap(), vec![1, 2]);
        assert_eq!(select_layers("last-quarter", &cap, &LayerRange::LastQuarter).unwrap(), vec![0, 1, 2]);
        assert!(select_layers("3", &cap, &LayerRange::LastQuarter).unwrap_err().contains("not captured"));
        assert!(select_layers("x-", &cap, &LayerRange::LastQuarter).is_err());
        // Layers of another model on the page are skipped; this model uses the ones it has.
        assert_eq!(select_layers("3,25", &cap, &LayerRange::LastQuarter).unwrap(), vec![1]);
        // The checkboxes' layers= value.
        assert_eq!(checked_layers("5,2,2"), vec![2, 5]);
        assert_eq!(checked_layers("all"), Vec::<usize>::new());
        assert_eq!(toggle_layer("", 5, true), "5");
        assert_eq!(toggle_layer("5", 2, true), "2,5");
        assert_eq!(toggle_layer("2,5", 5, false), "2");
        assert_eq!(toggle_layer("2", 2, false), "");
        assert_eq!(diff_from_query("opacity=0.5&diff=7,3&pin=1"), [3, 7].into());
        assert!(diff_from_query("pin=1").is_empty());
        let q = RefuseOpts { fusion: Some(HeadFusion::EntropyWeighted), layers: "2-5".into() };
        let s: Vec<String> = q.query_pairs().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(RefuseOpts::from_query(&s.join("&")), q);
        assert_eq!(RefuseOpts::from_query(""), RefuseOpts::default());
    }

    #[test]
    fn differences_and_js_matrix() {
        assert_eq!(difference_map(&[0.5, 0.25, 0.25], &[0.25, 0.25, 0.5]).unwrap(), vec![1.0, 0.0, 1.0]);
        assert_eq!(difference_map(&[0.5, 0.5], &[0.5, 0.5]).unwrap(), vec![0.0, 0.0]);
        assert!(difference_map(&[1.0], &[0.5, 0.5]).is_none());
        let (a, b) = ([0.5, 0.5], [1.0, 0.0]);
        let m = js_matrix(&[Some(&a[..]), Some(&b[..]), None]);
        assert_eq!(m[0][0], Some(0.0));
        assert_eq!(m[0][1], m[1][0]);
        assert!((m[0][1].unwrap() - radlens_shared::metrics::js_distance(&a, &b).unwrap()).abs() < 1e-15);
        assert_eq!(m[2][0], None);
    }

    /// A Grad-CAM map standing in for attention says so, with its reason, in the provenance
    /// line and where the re-fusion result would be; an attention map gets neither.
    #[test]
    fn fallback_maps_say_why_and_that_refusion_does_not_apply() {
        let attention: MapProvenance = serde_json::from_value(serde_json::json!({
            "model": "gemma", "method": "query_to_visual", "layer_range": "last-quarter", "layers": [4, 5], "head_fusion": "mean",
            "query_mode": "query", "query_positions": [9],
            "geometry": {"h": 2, "w": 2, "crop": {"x0": 0.0, "y0": 0.0, "x1": 4.0, "y1": 4.0}, "image_w": 4, "image_h": 4}
        }))
        .unwrap();
        assert_eq!(refusion_not_applicable(&attention), None);
        assert!(provenance_line(&attention, 0.5).contains("layers 4–5"));
        let reason = "attention: every captured layer is sliding-window and ends before the image";
        let gradcam = MapProvenance {
            method: MapMethod::Gradcam,
            layers: Vec::new(),
            site: Some(radlens_shared::site::SiteName::vision_output(3)),
            fallback_reason: Some(reason.into()),
            ..attention.clone()
        };
        assert_eq!(refusion_not_applicable(&gradcam).unwrap(), format!("Grad-CAM fallback: {reason}; layer re-fusion does not apply"));
        let line = provenance_line(&gradcam, 0.0);
        assert!(line.starts_with(&format!("gemma · Grad-CAM fallback (gradcam): {reason} · gradient at vision.blocks.3.output")), "{line}");
        assert!(line.contains("grid 2×2") && line.contains("image share") && !line.contains("heads"), "{line}");
        let uniform = MapProvenance {
            method: MapMethod::UniformFallback,
            site: None,
            fallback_reason: Some("attention: x; Grad-CAM: y".into()),
            ..gradcam
        };
        assert_eq!(
            refusion_not_applicable(&uniform).unwrap(),
            "Uniform fallback: attention: x; Grad-CAM: y; layer re-fusion does not apply"
        );
        assert!(provenance_line(&uniform, 0.0).contains("Uniform fallback (uniform_fallback): attention: x; Grad-CAM: y"));
    }

    /// A Qwen2.5-VL map: 3 rows x 7 columns over a whole 280 x 120 image. Each cell paints its
    /// own block of the bitmap (rows and columns apart), and the grid covers the whole image box.
    #[test]
    fn a_non_square_map_paints_row_major_blocks_over_its_image() {
        let (h, w) = (3, 7);
        let mut values = vec![0.0; h * w];
        values[5] = 1.0; // row 0, column 5
        // Cells under half the maximum are not drawn: only that one is.
        let opts = OverlayOpts { opacity: 1.0, threshold: 0.5, colormap: Colormap::Gray, ..OverlayOpts::default() };
        let (pw, ph) = overlay_size(h, w);
        assert_eq!((pw, ph), (7 * 36, 3 * 36));
        let px = paint(h, w, &values, &opts, pw, ph).unwrap();
        let at = |x: usize, y: usize| px[(y * pw + x) * 4 + 3];
        // The only opaque block is column 5 of row 0; column 0 of row 5 does not exist.
        assert_eq!(at(5 * 36 + 18, 18), 255);
        assert_eq!(at(18, 2 * 36 + 18), 0);
        assert_eq!(cell_at(h, w, (5.5) / 7.0, 0.5 / 3.0), Some((0, 5, 5)));
        let p: MapProvenance = serde_json::from_value(serde_json::json!({
            "model": "qwen", "method": "query_to_visual", "layer_range": "last-quarter", "layers": [2], "head_fusion": "mean",
            "query_mode": "query", "query_positions": [9],
            "geometry": {"h": 3, "w": 7, "crop": {"x0": 0.0, "y0": 0.0, "x1": 280.0, "y1": 120.0}, "image_w": 280, "image_h": 120}
        }))
        .unwrap();
        assert_eq!(overlay_box(&p), (0.0, 0.0, 100.0, 100.0));
        assert!(provenance_line(&p, 0.5).contains("grid 3×7 over 280×120 px"));
    }

    #[test]
    fn overlay_size_keeps_whole_cells() {
        assert_eq!(overlay_size(24, 24), (240, 240));
        assert_eq!(overlay_size(16, 32), (256, 128));
        assert_eq!(overlay_size(1000, 10), (10, 1000));
    }

    #[test]
    fn the_colour_bar_shows_what_paint_draws_up_to_the_clip_value_and_hides_below_the_threshold() {
        let values = [0.0, 0.1, 0.2, 0.7];
        let opts = OverlayOpts { threshold: 0.5, colormap: Colormap::Inferno, ..OverlayOpts::default() };
        let bar = ColorBar::of(&values, &opts);
        assert_eq!(bar, ColorBar { scale: 0.7, cut: 0.35 });
        let px = bar.rgba(&opts, 10, 2);
        assert_eq!(px.len(), 10 * 2 * 4);
        // Column 9 is t = 0.95: inferno(0.95), opaque; column 0 (t = 0.05 < 0.5) is hidden.
        let [r, g, b] = Colormap::Inferno.colour(0.95);
        assert_eq!(&px[36..40], &[r, g, b, 255]);
        assert_eq!(px[3], 0);
        // The same value painted on a map gets the same colour.
        let one = paint(1, 1, &[0.95 * 0.7], &OverlayOpts { opacity: 1.0, ..opts }, 1, 1).unwrap();
        let two = paint(1, 2, &[0.95 * 0.7, 0.7], &OverlayOpts { opacity: 1.0, ..opts }, 2, 1).unwrap();
        assert_eq!(&two[0..4], &px[36..40]);
        assert_eq!(one[3], 255);
        let (lo, cut, hi) = bar.labels(&opts);
        assert_eq!((lo.as_str(), cut.as_deref(), hi.as_str()), ("0", Some("hidden < 0.3500"), "0.7000 (max)"));
        // Clipped at a percentile: the bar ends at that value.
        let clipped = OverlayOpts { clip: 50.0, threshold: 0.0, ..OverlayOpts::default() };
        let bar = ColorBar::of(&values, &clipped);
        assert!((bar.scale - 0.15).abs() < 1e-12 && bar.cut == 0.0);
        assert!(bar.labels(&clipped).2.starts_with("≥ 0.1500 (p50)"));
    }
}
