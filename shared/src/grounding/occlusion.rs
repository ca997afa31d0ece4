//! G1: occlusion as a causal reference map, and how far an attention map agrees with it.
//!
//! The backend occludes one cell of a `g x g` grid over the model's square input at a time
//! ([`occlusion_cells`] says which input pixels), reads the margin `m_c`, and turns the margins
//! into the signed support map `O` ([`occlusion_support`]). A map is then compared with `O` on
//! that grid over the map's own crop ([`occlusion_agreement`]).

use serde::{Deserialize, Serialize};

use super::rank::{is_constant, spearman};
use crate::MetricError;
use crate::geometry::{PixelBox, resample_to_rect};
use crate::map::AttentionMap;
use crate::trust::top_cells;

/// The spec's default occlusion grid side `g`.
pub const DEFAULT_OCCLUSION_GRID: usize = 16;

/// The input pixels one occlusion cell spans along one axis, inclusive at both ends:
/// `floor(c S / g) ..= floor((c+1) S / g) - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellSpan {
    pub first: usize,
    pub last: usize,
}

impl CellSpan {
    /// As a half-open range of pixel indices.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.first..self.last + 1
    }
}

/// The `g` pixel spans of the cells along a side of `input_side` pixels (rows and columns
/// alike). Errors: `g == 0`, or `g > input_side` (some cells would hold no pixel).
pub fn occlusion_cells(input_side: usize, g: usize) -> Result<Vec<CellSpan>, MetricError> {
    check_grid(input_side, g)?;
    // Integer division is the floor for non-negative values; no float rounding at the edges.
    Ok((0..g).map(|c| CellSpan { first: c * input_side / g, last: (c + 1) * input_side / g - 1 }).collect())
}

fn check_grid(input_side: usize, g: usize) -> Result<(), MetricError> {
    if g == 0 || g > input_side {
        return Err(MetricError::Invalid(format!(
            "an occlusion grid of {g} x {g} cells does not fit an input of {input_side} pixels: needs 1 <= g <= S"
        )));
    }
    Ok(())
}

/// The model's own answer direction `s`: `+1` when `margin >= 0`, else `-1`.
pub fn answer_direction(margin: f64) -> f64 {
    if margin >= 0.0 { 1.0 } else { -1.0 }
}

/// `support_c = s (m - m_c)` for each cell's occluded margin `m_c` (row-major, `g x g`):
/// positive where hiding the cell weakens the model's own answer. Errors: a non-finite margin.
pub fn occlusion_support(margin: f64, occluded_margins: &[f64]) -> Result<Vec<f64>, MetricError> {
    if !margin.is_finite() {
        return Err(MetricError::Invalid(format!("margin {margin} is not finite")));
    }
    if let Some((index, &value)) = occluded_margins.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MetricError::InvalidValue { index, value });
    }
    let s = answer_direction(margin);
    Ok(occluded_margins.iter().map(|m_c| s * (margin - m_c)).collect())
}

/// `p'`: the normalised map resampled by area onto the `g x g` grid over its **own** crop.
pub fn resample_to_occlusion_grid(map: &AttentionMap, crop: &PixelBox, g: usize) -> Result<Vec<f64>, MetricError> {
    resample_to_rect(&map.normalized()?, map.h, map.w, crop, crop, g, g)
}

fn check_pair(p_grid: &[f64], support: &[f64]) -> Result<(), MetricError> {
    if p_grid.len() != support.len() || p_grid.is_empty() {
        return Err(MetricError::Invalid(format!(
            "the resampled map has {} cells and the occlusion map {}: both must be the same non-empty g x g grid",
            p_grid.len(),
            support.len()
        )));
    }
    Ok(())
}

/// Spearman's rho of `p'` and `O` (average ranks for ties); `None` when either is constant.
pub fn occlusion_spearman(p_grid: &[f64], support: &[f64]) -> Result<Option<f64>, MetricError> {
    check_pair(p_grid, support)?;
    spearman(p_grid, support)
}

/// `k = ceil(0.10 g^2)` (at least 1) cells taken by the top-k overlap.
///
/// An integer ceiling: the reference script's `math.ceil(0.10 * g * g)` agrees for every `g`
/// whose `g^2` is not a multiple of 10 and for g = 10, 20, but gives 91 for g = 30, where the
/// float `0.1 * 30` is 3.0000000000000004.
pub fn topk_cells(n: usize) -> usize {
    n.div_ceil(10).max(1)
}

/// `|T_p ∩ T_O| / k`: the top-k cells of each (descending, ties: lower index first).
pub fn occlusion_topk_overlap(p_grid: &[f64], support: &[f64]) -> Result<f64, MetricError> {
    check_pair(p_grid, support)?;
    if let Some((index, &value)) = support.iter().chain(p_grid).enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MetricError::InvalidValue { index: index % support.len(), value });
    }
    let k = topk_cells(p_grid.len());
    let mut in_p = vec![false; p_grid.len()];
    for i in top_cells(p_grid, k) {
        in_p[i] = true;
    }
    let common = top_cells(support, k).into_iter().filter(|&i| in_p[i]).count();
    Ok(common as f64 / k as f64)
}

/// The mass of `p'` on cells with positive support; `None` when no cell has positive support.
pub fn occlusion_support_mass(p_grid: &[f64], support: &[f64]) -> Result<Option<f64>, MetricError> {
    check_pair(p_grid, support)?;
    let mut any = false;
    let mut mass = 0.0;
    for (p, o) in p_grid.iter().zip(support) {
        if *o > 0.0 {
            any = true;
            mass += p;
        }
    }
    Ok(any.then_some(mass))
}

/// A record's agreement between its map and the occlusion map (grounding.md G1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcclusionAgreement {
    /// The occlusion grid side `g`.
    pub grid: usize,
    /// The model's input side `S` in pixels.
    pub input_side: usize,
    pub occlusion_spearman: Option<f64>,
    pub occlusion_topk_overlap: f64,
    pub occlusion_support_mass: Option<f64>,
    /// `O`'s constant-ness is worth knowing on its own: no cell changed the margin at all.
    pub support_constant: bool,
}

/// Compares `map` (over `crop`) with the `g x g` support map `support` of an input of side
/// `input_side`. Errors: `g` outside `1..=input_side`, `support` not `g * g` values, an invalid map.
pub fn occlusion_agreement(
    map: &AttentionMap,
    crop: &PixelBox,
    support: &[f64],
    input_side: usize,
    g: usize,
) -> Result<OcclusionAgreement, MetricError> {
    check_grid(input_side, g)?;
    if support.len() != g * g {
        return Err(MetricError::Invalid(format!("the occlusion map holds {} values, not g x g = {}", support.len(), g * g)));
    }
    let p_grid = resample_to_occlusion_grid(map, crop, g)?;
    Ok(OcclusionAgreement {
        grid: g,
        input_side,
        occlusion_spearman: occlusion_spearman(&p_grid, support)?,
        occlusion_topk_overlap: occlusion_topk_overlap(&p_grid, support)?,
        occlusion_support_mass: occlusion_support_mass(&p_grid, support)?,
        support_constant: is_constant(support),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_tile_the_input_without_gaps() {
        let cells = occlusion_cells(56, 4).unwrap();
        assert_eq!(cells.iter().map(|c| (c.first, c.last)).collect::<Vec<_>>(), vec![(0, 13), (14, 27), (28, 41), (42, 55)]);
        let cells = occlusion_cells(336, 16).unwrap();
        assert_eq!(cells[0].first, 0);
        assert_eq!(cells[15].last, 335);
        assert!(cells.windows(2).all(|w| w[1].first == w[0].last + 1));
        assert_eq!(occlusion_cells(5, 5).unwrap()[4].range(), 4..5);
    }

    #[test]
    fn a_grid_finer_than_the_input_is_an_error_not_a_panic() {
        assert!(matches!(occlusion_cells(8, 9), Err(MetricError::Invalid(_))));
        assert!(matches!(occlusion_cells(8, 0), Err(MetricError::Invalid(_))));
        let map = AttentionMap::new(2, 2, vec![1.0; 4]).unwrap();
        let crop = PixelBox::new(0.0, 0.0, 8.0, 8.0).unwrap();
        assert!(matches!(occlusion_agreement(&map, &crop, &[0.0; 81], 8, 9), Err(MetricError::Invalid(_))));
    }

    #[test]
    fn support_is_signed_by_the_models_own_answer() {
        // m = -2 (answer no): a cell whose occlusion moves m to 0 weakens "no": support +2.
        assert_eq!(occlusion_support(-2.0, &[0.0, -3.0]).unwrap(), vec![2.0, -1.0]);
        assert_eq!(occlusion_support(1.0, &[0.5, 2.0]).unwrap(), vec![0.5, -1.0]);
        assert!(occlusion_support(f64::NAN, &[0.0]).is_err());
    }

    #[test]
    fn constant_maps_have_no_spearman_and_no_positive_support_has_no_mass() {
        let flat = AttentionMap::new(2, 2, vec![1.0; 4]).unwrap();
        let crop = PixelBox::new(0.0, 0.0, 4.0, 4.0).unwrap();
        let a = occlusion_agreement(&flat, &crop, &[1.0, 0.0, -1.0, 2.0], 4, 2).unwrap();
        assert_eq!(a.occlusion_spearman, None);
        assert!((a.occlusion_support_mass.unwrap() - 0.5).abs() < 1e-15);
        let none_positive = occlusion_agreement(&flat, &crop, &[0.0, -1.0, 0.0, 0.0], 4, 2).unwrap();
        assert_eq!(none_positive.occlusion_support_mass, None);
        let constant_support = occlusion_agreement(&flat, &crop, &[0.3; 4], 4, 2).unwrap();
        assert!(constant_support.support_constant);
        assert_eq!(constant_support.occlusion_spearman, None);
    }

    #[test]
    fn topk_uses_an_exact_integer_ceiling() {
        assert_eq!(topk_cells(256), 26);
        assert_eq!(topk_cells(900), 90);
        assert_eq!(topk_cells(4), 1);
        // k = 1; the tie between cells 0 and 1 goes to cell 0 on both sides.
        assert_eq!(occlusion_topk_overlap(&[0.5, 0.5, 0.0, 0.0], &[1.0, 1.0, 0.0, 0.0]).unwrap(), 1.0);
        assert_eq!(occlusion_topk_overlap(&[0.5, 0.5, 0.0, 0.0], &[0.0, 1.0, 0.0, 0.0]).unwrap(), 0.0);
    }
}
