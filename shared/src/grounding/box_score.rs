//! G3: the box score of the MedGround-Bench protocol, on the map's grid. The map's brightest
//! 10% becomes at most ten boxes, which are scored against the ground-truth boxes by exact
//! (continuous) union areas.

use serde::{Deserialize, Serialize};

use crate::MetricError;
use crate::geometry::PixelBox;
use crate::map::AttentionMap;
use crate::stats::bootstrap::percentile_linear;

/// The quantile of the positive normalised cells above which cells are kept.
pub const BOX_QUANTILE: f64 = 0.9;
/// At most this many components become boxes.
pub const MAX_BOXES: usize = 10;

/// A record's box score (grounding.md G3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxScore {
    /// The predicted boxes, best component first, in original-image pixels.
    pub boxes: Vec<PixelBox>,
    pub box_iou: f64,
    pub box_precision: f64,
    pub box_recall: f64,
    pub box_f1: f64,
}

/// The predicted boxes of `map` (its raw values; min-max scaling makes them scale-free) laid
/// over `crop`. No box when the map is constant.
pub fn predicted_boxes(map: &AttentionMap, crop: &PixelBox) -> Result<Vec<PixelBox>, MetricError> {
    map.validate()?;
    let (h, w) = (map.h, map.w);
    let min = map.values.iter().copied().fold(f64::INFINITY, f64::min);
    let mut hm: Vec<f64> = map.values.iter().map(|v| v - min).collect();
    let max = hm.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == 0.0 {
        return Ok(Vec::new());
    }
    for v in &mut hm {
        *v /= max;
    }
    let mut positive: Vec<f64> = hm.iter().copied().filter(|&v| v > 0.0).collect();
    positive.sort_by(f64::total_cmp);
    // Non-empty: the maximum cell is 1.
    let thr = percentile_linear(&positive, BOX_QUANTILE).ok_or(MetricError::ZeroMass)?;
    let mask: Vec<bool> = hm.iter().map(|&v| v >= thr).collect();

    // 8-connected components, labelled in row-major order of their first cell (as
    // scipy.ndimage.label with a 3 x 3 structure), by an explicit stack (no recursion).
    struct Component {
        score: f64,
        first: usize,
        r1: usize,
        r2: usize,
        c1: usize,
        c2: usize,
    }
    let mut seen = vec![false; h * w];
    let mut comps = Vec::new();
    let mut stack = Vec::new();
    for start in 0..h * w {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut sum, mut count) = (0.0, 0usize);
        let (mut r1, mut r2, mut c1, mut c2) = (usize::MAX, 0, usize::MAX, 0);
        while let Some(i) = stack.pop() {
            let (r, c) = (i / w, i % w);
            sum += hm[i];
            count += 1;
            (r1, r2, c1, c2) = (r1.min(r), r2.max(r), c1.min(c), c2.max(c));
            for nr in r.saturating_sub(1)..=(r + 1).min(h - 1) {
                for nc in c.saturating_sub(1)..=(c + 1).min(w - 1) {
                    let j = nr * w + nc;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        // The scan meets each component first at its first cell in row-major order.
        comps.push(Component { score: sum / count as f64, first: start, r1, r2, c1, c2 });
    }
    comps.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.first.cmp(&b.first)));
    let (cw, ch) = (crop.x1 - crop.x0, crop.y1 - crop.y0);
    Ok(comps
        .iter()
        .take(MAX_BOXES)
        .map(|k| PixelBox {
            // Same operation order as the reference: x0 + (c1 (x1 - x0)) / w.
            x0: crop.x0 + k.c1 as f64 * cw / w as f64,
            y0: crop.y0 + k.r1 as f64 * ch / h as f64,
            x1: crop.x0 + (k.c2 + 1) as f64 * cw / w as f64,
            y1: crop.y0 + (k.r2 + 1) as f64 * ch / h as f64,
        })
        .collect())
}

/// A rectangle as `(x0, y0, x1, y1)`, possibly empty (an intersection of two boxes).
pub type Corners = (f64, f64, f64, f64);

/// The exact area of the union of rectangles `(x0, y0, x1, y1)`; empty ones (`x1 <= x0` or
/// `y1 <= y0`) count for nothing. Coordinate compression: O(n^3) for n rectangles, fine for the
/// few boxes of a record.
pub fn union_area(rects: &[Corners]) -> f64 {
    let rects: Vec<&Corners> = rects.iter().filter(|r| r.2 > r.0 && r.3 > r.1).collect();
    if rects.is_empty() {
        return 0.0;
    }
    let axis = |lo: fn(&Corners) -> f64, hi: fn(&Corners) -> f64| {
        let mut v: Vec<f64> = rects.iter().flat_map(|r| [lo(r), hi(r)]).collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    };
    let xs = axis(|r| r.0, |r| r.2);
    let ys = axis(|r| r.1, |r| r.3);
    let mut area = 0.0;
    for i in 0..xs.len() - 1 {
        for j in 0..ys.len() - 1 {
            let covered = rects.iter().any(|r| r.0 <= xs[i] && xs[i + 1] <= r.2 && r.1 <= ys[j] && ys[j + 1] <= r.3);
            if covered {
                area += (xs[i + 1] - xs[i]) * (ys[j + 1] - ys[j]);
            }
        }
    }
    area
}

fn corners(b: &PixelBox) -> Corners {
    (b.x0, b.y0, b.x1, b.y1)
}

/// Scores `predicted` against the ground-truth boxes `truths` (at least one): `I` = union of the
/// pairwise intersections, `P` = union of `predicted`, `Q` = union of `truths`; IoU `I / (P + Q -
/// I)`, precision `I / P` (0 when `P = 0`), recall `I / Q`, F1 (0 when both are 0).
pub fn score_boxes(predicted: Vec<PixelBox>, truths: &[PixelBox]) -> Result<BoxScore, MetricError> {
    if truths.is_empty() {
        return Err(MetricError::TooFew { what: "box score ground-truth boxes", needed: 1, got: 0 });
    }
    let inter: Vec<_> = predicted
        .iter()
        .flat_map(|p| truths.iter().map(move |t| (p.x0.max(t.x0), p.y0.max(t.y0), p.x1.min(t.x1), p.y1.min(t.y1))))
        .collect();
    let i = union_area(&inter);
    let p = union_area(&predicted.iter().map(corners).collect::<Vec<_>>());
    let q = union_area(&truths.iter().map(corners).collect::<Vec<_>>());
    if !(q > 0.0 && q.is_finite()) {
        return Err(MetricError::Invalid(format!("the ground-truth boxes cover an area of {q}: recall needs a positive, finite one")));
    }
    let precision = if p == 0.0 { 0.0 } else { i / p };
    let recall = i / q;
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    Ok(BoxScore { boxes: predicted, box_iou: i / (p + q - i), box_precision: precision, box_recall: recall, box_f1: f1 })
}

/// [`predicted_boxes`] of `map` over `crop`, scored against `truths` with [`score_boxes`].
pub fn box_score(map: &AttentionMap, crop: &PixelBox, truths: &[PixelBox]) -> Result<BoxScore, MetricError> {
    score_boxes(predicted_boxes(map, crop)?, truths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_crop(side: f64) -> PixelBox {
        PixelBox::new(0.0, 0.0, side, side).unwrap()
    }

    #[test]
    fn a_flat_map_has_no_boxes_and_scores_zero() {
        let map = AttentionMap::new(4, 4, vec![0.3; 16]).unwrap();
        let s = box_score(&map, &unit_crop(4.0), &[PixelBox::new(1.0, 1.0, 2.0, 2.0).unwrap()]).unwrap();
        assert!(s.boxes.is_empty());
        assert_eq!((s.box_iou, s.box_precision, s.box_recall, s.box_f1), (0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn diagonal_cells_join_one_component() {
        // Cells 0 and 5 touch diagonally: one box over rows 0..=1, columns 0..=1.
        let mut v = vec![0.0; 16];
        v[0] = 1.0;
        v[5] = 1.0;
        v[15] = 0.5;
        let map = AttentionMap::new(4, 4, v).unwrap();
        let boxes = predicted_boxes(&map, &unit_crop(8.0)).unwrap();
        assert_eq!(boxes[0], PixelBox::new(0.0, 0.0, 4.0, 4.0).unwrap());
    }

    #[test]
    fn equal_scores_keep_the_earlier_component_first() {
        let mut v = vec![0.0; 9];
        v[8] = 1.0;
        v[2] = 1.0;
        let map = AttentionMap::new(3, 3, v).unwrap();
        let boxes = predicted_boxes(&map, &unit_crop(3.0)).unwrap();
        assert_eq!(boxes, vec![PixelBox::new(2.0, 0.0, 3.0, 1.0).unwrap(), PixelBox::new(2.0, 2.0, 3.0, 3.0).unwrap()]);
    }

    #[test]
    fn union_areas_are_exact() {
        assert_eq!(union_area(&[(0.0, 0.0, 2.0, 2.0), (1.0, 1.0, 3.0, 3.0)]), 7.0);
        assert_eq!(union_area(&[(0.0, 0.0, 0.0, 2.0), (1.0, 1.0, 0.5, 3.0)]), 0.0);
        let s = score_boxes(vec![PixelBox::new(0.0, 0.0, 2.0, 2.0).unwrap()], &[PixelBox::new(1.0, 0.0, 3.0, 2.0).unwrap()]).unwrap();
        assert_eq!((s.box_iou, s.box_precision, s.box_recall), (2.0 / 6.0, 0.5, 0.5));
        assert!(score_boxes(vec![], &[]).is_err());
        assert!(score_boxes(vec![], &[PixelBox { x0: 1.0, y0: 1.0, x1: 1.0, y1: 5.0 }]).is_err());
    }
}
