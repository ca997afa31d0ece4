//! ROI metrics (spec "ROI metrics"): how much of a map falls inside a binary cell mask, e.g.
//! the cells whose centres lie in a radiologist's bounding box ([`crate::geometry::bbox_mask`]).

use serde::{Deserialize, Serialize};

use crate::MetricError;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoiMetrics {
    /// `sum p_i s_i`.
    pub relevance_mass: f64,
    /// Share of the `K = |s|` highest cells (ties: lower index first) that lie inside `s`.
    pub rank_accuracy: f64,
    /// 1 if any cell holding the maximum of `p` lies in `s`, else 0.
    pub pointing_game: f64,
}

/// ROI metrics of a normalised map `p` against `mask`. An empty mask has no value (`None`),
/// never 0.
pub fn roi_metrics(p: &[f64], mask: &[bool]) -> Result<Option<RoiMetrics>, MetricError> {
    if p.len() != mask.len() {
        return Err(MetricError::MaskMismatch { expected: p.len(), got: mask.len() });
    }
    let k = mask.iter().filter(|&&s| s).count();
    if k == 0 {
        return Ok(None);
    }
    let relevance_mass = p.iter().zip(mask).filter(|(_, s)| **s).map(|(x, _)| x).sum();
    let mut order: Vec<usize> = (0..p.len()).collect();
    // Stable sort on descending mass keeps the lower index first among ties.
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let hits = order[..k].iter().filter(|&&i| mask[i]).count();
    let max = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pointing = p.iter().zip(mask).any(|(&x, &s)| s && x == max);
    Ok(Some(RoiMetrics { relevance_mass, rank_accuracy: hits as f64 / k as f64, pointing_game: if pointing { 1.0 } else { 0.0 } }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_mask_gives_no_value() {
        assert_eq!(roi_metrics(&[0.5, 0.5], &[false, false]).unwrap(), None);
    }

    #[test]
    fn ties_rank_the_lower_index_first() {
        // K = 1; cells 0 and 1 tie for the maximum, cell 0 ranks first and is outside the mask,
        // yet the pointing game counts any maximal cell.
        let m = roi_metrics(&[0.4, 0.4, 0.2], &[false, true, false]).unwrap().unwrap();
        assert_eq!(m.rank_accuracy, 0.0);
        assert_eq!(m.pointing_game, 1.0);
        assert!((m.relevance_mass - 0.4).abs() < 1e-15);
    }

    #[test]
    fn mask_must_match_the_map() {
        assert!(matches!(roi_metrics(&[1.0], &[true, false]), Err(MetricError::MaskMismatch { .. })));
    }
}
