//! G2: box controls. Does the map put more mass on the radiologist's box `B` than on boxes of
//! the same size elsewhere in the crop, and than on the mirrored box on the other side?
//!
//! Boxes are [`PixelBox`]es in original-image pixels, as the record's `roi`. The spec's boxes
//! are integers; the enumeration below is written for any finite box and is exact for integer
//! ones.

use serde::{Deserialize, Serialize};

use crate::MetricError;
use crate::geometry::{MapGeometry, PixelBox};
use crate::map::AttentionMap;
use crate::stats::robustness::{ClusterRatio, merge_clusters, ratio};

/// A record's box-control figures (grounding.md G2). Every `Option` is null where the spec says
/// so: `mass` and `pointing_game` when `mask(B)` is empty, `mirror_mass` when the mirror box's
/// mask is, the control figures when there is no control or `mask(B)` is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxControls {
    /// `sum p_i mask(B)_i` (the relevance mass).
    pub mass: Option<f64>,
    /// `(W - bx - bw, by, bw, bh)`.
    pub mirror_box: PixelBox,
    pub mirror_mass: Option<f64>,
    pub n_controls: usize,
    pub control_mass_mean: Option<f64>,
    /// `mass(B) - control_mass_mean`.
    pub roi_lift: Option<f64>,
    /// `(#{controls with mass < mass(B)} + 0.5 #{equal}) / n_controls`.
    pub roi_percentile: Option<f64>,
    /// The pointing game's chance level: its mean over the controls.
    pub control_pointing_mean: Option<f64>,
    /// The record's own pointing game against `B`.
    pub pointing_game: Option<f64>,
}

/// The box mirrored about the image's vertical centre line: `(W - bx - bw, by, bw, bh)`.
pub fn mirror_box(roi: &PixelBox, image_w: u32) -> PixelBox {
    let w = f64::from(image_w);
    PixelBox { x0: w - roi.x1, y0: roi.y0, x1: w - roi.x0, y1: roi.y1 }
}

/// The cell centres of a map's grid along one axis, computed as [`crate::geometry::bbox_mask`]
/// does, so a rectangle's cells are a row range times a column range found by bisection.
struct Centres {
    xs: Vec<f64>,
    ys: Vec<f64>,
}

impl Centres {
    fn of(geometry: &MapGeometry) -> Self {
        let c = &geometry.crop;
        let ys = (0..geometry.h).map(|r| c.y0 + (r as f64 + 0.5) * (c.y1 - c.y0) / geometry.h as f64).collect();
        let xs = (0..geometry.w).map(|col| c.x0 + (col as f64 + 0.5) * (c.x1 - c.x0) / geometry.w as f64).collect();
        Self { xs, ys }
    }

    /// Rows and columns whose centres lie in `[x0, x1) x [y0, y1)`; empty ranges for an empty mask.
    fn cells(&self, x0: f64, y0: f64, x1: f64, y1: f64) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        // Centres increase with the index, so `lo <= c < hi` is a contiguous range.
        let span = |v: &[f64], lo: f64, hi: f64| {
            let a = v.partition_point(|&c| c < lo);
            let b = v.partition_point(|&c| c < hi).max(a);
            a..b
        };
        (span(&self.ys, y0, y1), span(&self.xs, x0, x1))
    }
}

/// Mass and pointing game of the cells `rows x cols` of `p` (`w` columns); `None` for no cell.
fn rect_stats(p: &[f64], w: usize, max: f64, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) -> Option<(f64, f64)> {
    if rows.is_empty() || cols.is_empty() {
        return None;
    }
    let (mut mass, mut pointing) = (0.0, false);
    for r in rows {
        for &v in &p[r * w + cols.start..r * w + cols.end] {
            mass += v;
            pointing |= v == max;
        }
    }
    Some((mass, if pointing { 1.0 } else { 0.0 }))
}

/// Calls `f(x, y)` for the top-left corner of every control box of `roi`'s size: strides
/// `max(1, floor(bw/2))`, `max(1, floor(bh/2))` from `(ceil(x0), ceil(y0))` of the crop, inside
/// `floor(x1)`, `floor(y1)`, not overlapping `roi` (intersection area 0); `y` outer, `x` inner.
/// The empty-mask test is the caller's.
fn for_each_position(crop: &PixelBox, roi: &PixelBox, mut f: impl FnMut(f64, f64)) {
    let (bw, bh) = (roi.width(), roi.height());
    if bw <= 0.0 || bh <= 0.0 {
        // A zero-area control's mask is empty: no control at all.
        return;
    }
    let sx = (bw / 2.0).floor().max(1.0);
    let sy = (bh / 2.0).floor().max(1.0);
    let (start_x, start_y) = (crop.x0.ceil(), crop.y0.ceil());
    let (end_x, end_y) = (crop.x1.floor(), crop.y1.floor());
    let mut j = 0.0;
    loop {
        let y = start_y + j * sy;
        if y + bh > end_y {
            break;
        }
        let iy = ((y + bh).min(roi.y1) - y.max(roi.y0)).max(0.0);
        let mut i = 0.0;
        loop {
            let x = start_x + i * sx;
            if x + bw > end_x {
                break;
            }
            let ix = ((x + bw).min(roi.x1) - x.max(roi.x0)).max(0.0);
            if ix * iy == 0.0 {
                f(x, y);
            }
            i += 1.0;
        }
        j += 1.0;
    }
}

/// The crop must be a proper box; the radiologist box must be finite with `x0 <= x1` and
/// `y0 <= y1`. A zero-area box is allowed: its mask is empty, so it has no mass and no control.
fn check_boxes(geometry: &MapGeometry, roi: &PixelBox) -> Result<(), MetricError> {
    let c = &geometry.crop;
    PixelBox::new(c.x0, c.y0, c.x1, c.y1)?;
    let finite = [roi.x0, roi.y0, roi.x1, roi.y1].iter().all(|v| v.is_finite());
    if !(finite && roi.x0 <= roi.x1 && roi.y0 <= roi.y1) {
        return Err(MetricError::InvalidCrop { x0: roi.x0, y0: roi.y0, x1: roi.x1, y1: roi.y1 });
    }
    Ok(())
}

fn check(map: &AttentionMap, geometry: &MapGeometry, roi: &PixelBox) -> Result<(), MetricError> {
    if (map.h, map.w) != (geometry.h, geometry.w) {
        return Err(MetricError::GridsDiffer { a_h: map.h, a_w: map.w, b_h: geometry.h, b_w: geometry.w });
    }
    check_boxes(geometry, roi)
}

/// Every control box of `roi` on this grid, in the spec's order: same size, inside the crop,
/// not overlapping `roi`, with a non-empty mask. The list can be long for a small box (a 3 x 3
/// box on a 1024-pixel crop has thousands); [`box_controls`] does not build it. Errors: a crop
/// that is not a proper box, a radiologist box that is not finite or has negative size.
pub fn control_boxes(geometry: &MapGeometry, roi: &PixelBox) -> Result<Vec<PixelBox>, MetricError> {
    check_boxes(geometry, roi)?;
    let centres = Centres::of(geometry);
    let mut out = Vec::new();
    for_each_position(&geometry.crop, roi, |x, y| {
        let (bw, bh) = (roi.width(), roi.height());
        let (rows, cols) = centres.cells(x, y, x + bw, y + bh);
        if !rows.is_empty() && !cols.is_empty() {
            out.push(PixelBox { x0: x, y0: y, x1: x + bw, y1: y + bh });
        }
    });
    Ok(out)
}

/// The G2 figures of `map` (over `geometry`) against the radiologist's box `roi`.
pub fn box_controls(map: &AttentionMap, geometry: &MapGeometry, roi: &PixelBox) -> Result<BoxControls, MetricError> {
    check(map, geometry, roi)?;
    let p = map.normalized()?;
    let max = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let centres = Centres::of(geometry);
    let stats = |b: &PixelBox| {
        let (rows, cols) = centres.cells(b.x0, b.y0, b.x1, b.y1);
        rect_stats(&p, geometry.w, max, rows, cols)
    };
    let own = stats(roi);
    let mirror = mirror_box(roi, geometry.image_w);
    let mirror_mass = stats(&mirror).map(|(m, _)| m);
    let mut controls: Vec<(f64, f64)> = Vec::new();
    for_each_position(&geometry.crop, roi, |x, y| {
        let (rows, cols) = centres.cells(x, y, x + roi.width(), y + roi.height());
        if let Some(s) = rect_stats(&p, geometry.w, max, rows, cols) {
            controls.push(s);
        }
    });
    let n = controls.len();
    let mut out = BoxControls {
        mass: own.map(|(m, _)| m),
        mirror_box: mirror,
        mirror_mass,
        n_controls: n,
        control_mass_mean: None,
        roi_lift: None,
        roi_percentile: None,
        control_pointing_mean: None,
        pointing_game: own.map(|(_, pg)| pg),
    };
    if let (Some((mass, _)), true) = (own, n > 0) {
        let mean = controls.iter().map(|c| c.0).sum::<f64>() / n as f64;
        let below = controls.iter().filter(|c| c.0 < mass).count() as f64;
        let equal = controls.iter().filter(|c| c.0 == mass).count() as f64;
        out.control_mass_mean = Some(mean);
        out.roi_lift = Some(mass - mean);
        out.roi_percentile = Some((below + 0.5 * equal) / n as f64);
        out.control_pointing_mean = Some(controls.iter().map(|c| c.1).sum::<f64>() / n as f64);
    }
    Ok(out)
}

/// The percentile at or above which a record's box beats its controls (run-level share).
pub const BEATS_CONTROLS_PERCENTILE: f64 = 0.95;

/// Per-study parts of the run-level G2 figures of one model, for
/// [`crate::stats::cluster_bootstrap`]: `roi_lift` sums over records with a lift / their count,
/// and records with `roi_percentile >= 0.95` / records with a percentile. Studies without any
/// value keep a `0/0` part. Sorted by study id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlParts {
    pub roi_lift: Vec<ClusterRatio>,
    pub beats_controls: Vec<ClusterRatio>,
}

pub fn control_parts<'a>(records: impl IntoIterator<Item = (&'a str, &'a BoxControls)>) -> ControlParts {
    let (mut lift, mut beats) = (Vec::new(), Vec::new());
    for (study, c) in records {
        lift.push(match c.roi_lift {
            Some(v) => ClusterRatio::new(study, v, 1.0),
            None => ClusterRatio::new(study, 0.0, 0.0),
        });
        beats.push(match c.roi_percentile {
            Some(v) => ClusterRatio::new(study, f64::from(u8::from(v >= BEATS_CONTROLS_PERCENTILE)), 1.0),
            None => ClusterRatio::new(study, 0.0, 0.0),
        });
    }
    ControlParts { roi_lift: merge_clusters(&lift), beats_controls: merge_clusters(&beats) }
}

/// Mean `roi_lift` over the records that have one; `None` when none has.
pub fn mean_roi_lift(parts: &ControlParts) -> Option<f64> {
    ratio(&parts.roi_lift)
}

/// Share of records (with a percentile) whose `roi_percentile >= 0.95`.
pub fn share_beating_controls(parts: &ControlParts) -> Option<f64> {
    ratio(&parts.beats_controls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(h: usize, w: usize, side: f64) -> MapGeometry {
        MapGeometry { h, w, crop: PixelBox::new(0.0, 0.0, side, side).unwrap(), image_w: side as u32, image_h: side as u32 }
    }

    #[test]
    fn row_and_column_ranges_are_exactly_the_bbox_mask() {
        // Odd crops and grids, boxes on and between cell centres, partly outside the crop.
        for (h, w, crop) in
            [(7usize, 5usize, PixelBox::new(3.5, -2.0, 97.25, 61.0).unwrap()), (37, 37, PixelBox::new(0.0, 112.0, 1024.0, 912.0).unwrap())]
        {
            let g = MapGeometry { h, w, crop, image_w: 1024, image_h: 1024 };
            let centres = Centres::of(&g);
            for k in 0..400u32 {
                let x0 = f64::from(k * 37 % 1100) - 40.0 + f64::from(k % 3) * 0.25;
                let y0 = f64::from(k * 53 % 1000) - 30.0;
                let b = PixelBox::new(x0, y0, x0 + f64::from(1 + k * 7 % 300), y0 + f64::from(1 + k * 11 % 250)).unwrap();
                let (rows, cols) = centres.cells(b.x0, b.y0, b.x1, b.y1);
                let ours: Vec<bool> = (0..h * w).map(|i| rows.contains(&(i / w)) && cols.contains(&(i % w))).collect();
                assert_eq!(ours, crate::geometry::bbox_mask(h, w, &crop, &b), "{h}x{w} box {b:?}");
            }
        }
    }

    #[test]
    fn a_box_covering_the_whole_crop_has_no_controls() {
        let g = geometry(4, 4, 64.0);
        let map = AttentionMap::new(4, 4, (1..=16).map(f64::from).collect()).unwrap();
        let c = box_controls(&map, &g, &PixelBox::new(0.0, 0.0, 64.0, 64.0).unwrap()).unwrap();
        assert_eq!(c.n_controls, 0);
        assert!((c.mass.unwrap() - 1.0).abs() < 1e-15);
        assert_eq!((c.control_mass_mean, c.roi_lift, c.roi_percentile, c.control_pointing_mean), (None, None, None, None));
        assert_eq!(c.pointing_game, Some(1.0));
    }

    #[test]
    fn a_box_between_cell_centres_has_no_mass() {
        // Centres at 8, 24, 40, 56: [10, 13) holds none.
        let g = geometry(4, 4, 64.0);
        let map = AttentionMap::new(4, 4, vec![1.0; 16]).unwrap();
        let c = box_controls(&map, &g, &PixelBox::from_xywh(10.0, 10.0, 3.0, 3.0).unwrap()).unwrap();
        assert_eq!((c.mass, c.pointing_game, c.roi_lift), (None, None, None));
        assert!(c.n_controls > 0);
        assert_eq!(c.n_controls, control_boxes(&g, &PixelBox::from_xywh(10.0, 10.0, 3.0, 3.0).unwrap()).unwrap().len());
    }

    #[test]
    fn a_zero_area_box_has_no_mass_and_no_controls_and_a_nan_box_is_an_error() {
        let g = geometry(4, 4, 64.0);
        let map = AttentionMap::new(4, 4, vec![1.0; 16]).unwrap();
        let flat = PixelBox { x0: 8.0, y0: 0.0, x1: 8.0, y1: 30.0 };
        let c = box_controls(&map, &g, &flat).unwrap();
        assert_eq!((c.mass, c.mirror_mass, c.n_controls, c.roi_lift, c.pointing_game), (None, None, 0, None, None));
        assert_eq!(control_boxes(&g, &flat).unwrap(), vec![]);
        let nan = PixelBox { x0: f64::NAN, y0: 0.0, x1: 8.0, y1: 8.0 };
        assert!(matches!(box_controls(&map, &g, &nan), Err(MetricError::InvalidCrop { .. })));
        assert!(control_boxes(&g, &nan).is_err());
        assert!(matches!(box_controls(&AttentionMap::new(2, 2, vec![1.0; 4]).unwrap(), &g, &flat), Err(MetricError::GridsDiffer { .. })));
    }

    #[test]
    fn controls_tile_the_crop_outside_the_box() {
        // A 16 x 16 box at (0, 0) in a 64-pixel crop: strides 8; x, y in 0, 8, .., 48; 7 x 7
        // positions minus the 2 x 2 (x, y in 0, 8) that overlap [0, 16)^2.
        let g = geometry(4, 4, 64.0);
        let roi = PixelBox::from_xywh(0.0, 0.0, 16.0, 16.0).unwrap();
        let boxes = control_boxes(&g, &roi).unwrap();
        assert_eq!(boxes.len(), 49 - 4);
        assert_eq!(boxes[0], PixelBox::new(16.0, 0.0, 32.0, 16.0).unwrap());
        let map = AttentionMap::new(4, 4, vec![1.0; 16]).unwrap();
        let c = box_controls(&map, &g, &roi).unwrap();
        assert_eq!(c.n_controls, 45);
        assert!((c.mass.unwrap() - 0.0625).abs() < 1e-15);
        // A uniform map: every cell is a maximum, so every control points.
        assert_eq!(c.control_pointing_mean, Some(1.0));
        assert_eq!(c.mirror_box, PixelBox::new(48.0, 0.0, 64.0, 16.0).unwrap());
    }

    #[test]
    fn run_level_parts_skip_records_without_a_value() {
        let mut a = box_controls(
            &AttentionMap::new(4, 4, vec![1.0; 16]).unwrap(),
            &geometry(4, 4, 64.0),
            &PixelBox::from_xywh(0.0, 0.0, 16.0, 16.0).unwrap(),
        )
        .unwrap();
        a.roi_lift = Some(0.2);
        a.roi_percentile = Some(0.96);
        let mut b = a.clone();
        b.roi_lift = Some(0.0);
        b.roi_percentile = Some(0.5);
        let mut none = a.clone();
        none.roi_lift = None;
        none.roi_percentile = None;
        let parts = control_parts([("s1", &a), ("s1", &b), ("s2", &none)]);
        assert_eq!(parts.roi_lift.len(), 2);
        assert!((mean_roi_lift(&parts).unwrap() - 0.1).abs() < 1e-15);
        assert_eq!(share_beating_controls(&parts), Some(0.5));
        assert_eq!(mean_roi_lift(&control_parts([("s2", &none)])), None);
    }
}
