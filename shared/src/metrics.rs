//! Map metrics (spec "Map metrics"): how concentrated one map is, and how far apart two are.
//!
//! Functions taking `p` expect a normalised probability vector (see [`crate::map::normalize`]);
//! [`MapMetrics::of`] and the `*_maps` functions normalise and validate for you.

use serde::{Deserialize, Serialize};

use crate::MetricError;
use crate::map::{AttentionMap, normalize_vec};

/// The four single-map metrics stored with every map and recomputed in the browser.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MapMetrics {
    pub entropy_nats: f64,
    pub focus: f64,
    pub gini: f64,
    pub top10_mass: f64,
}

impl MapMetrics {
    pub fn of(map: &AttentionMap) -> Result<Self, MetricError> {
        Ok(Self::of_probs(&map.normalized()?))
    }

    /// Metrics of an already normalised vector.
    pub fn of_probs(p: &[f64]) -> Self {
        Self { entropy_nats: entropy_nats(p), focus: focus(p), gini: gini(p), top10_mass: top10_mass(p) }
    }
}

/// `H(p) = -sum p_i ln p_i` over `p_i > 0`.
pub fn entropy_nats(p: &[f64]) -> f64 {
    -p.iter().filter(|&&x| x > 0.0).map(|&x| x * x.ln()).sum::<f64>()
}

/// `1 - H(p) / ln n`: 1 for one cell, 0 for uniform, comparable across grid sizes.
pub fn focus(p: &[f64]) -> f64 {
    let n = p.len();
    if n <= 1 { 1.0 } else { 1.0 - entropy_nats(p) / (n as f64).ln() }
}

/// Gini coefficient of the sorted cells: `sum_i (2i - n - 1) x_(i) / (n sum x)`; 0 for `n = 1`.
pub fn gini(p: &[f64]) -> f64 {
    let n = p.len();
    if n <= 1 {
        return 0.0;
    }
    let mut x = p.to_vec();
    x.sort_by(f64::total_cmp);
    let nf = n as f64;
    let weighted: f64 = x.iter().enumerate().map(|(i, &v)| (2.0 * (i + 1) as f64 - nf - 1.0) * v).sum();
    weighted / (nf * x.iter().sum::<f64>())
}

/// Mass of the `ceil(0.10 n)` largest cells (at least one cell).
pub fn top10_mass(p: &[f64]) -> f64 {
    // Integer ceiling: `0.1 * 30` is 3.0000000000000004 in floating point, whose ceiling is 4.
    let k = p.len().div_ceil(10).max(1);
    let mut x = p.to_vec();
    x.sort_by(|a, b| b.total_cmp(a));
    x[..k.min(x.len())].iter().sum()
}

/// Jensen-Shannon divergence in bits, in `[0, 1]`. Both inputs are normalised (and validated).
pub fn js_divergence(p: &[f64], q: &[f64]) -> Result<f64, MetricError> {
    if p.len() != q.len() {
        return Err(MetricError::GridsDiffer { a_h: 1, a_w: p.len(), b_h: 1, b_w: q.len() });
    }
    let (p, q) = (normalize_vec(p)?, normalize_vec(q)?);
    Ok(js_divergence_probs(&p, &q))
}

/// JS divergence (bits) of two normalised vectors of equal length.
pub fn js_divergence_probs(p: &[f64], q: &[f64]) -> f64 {
    // x ln(x / m) with the 0 ln 0 = 0 convention, as scipy's rel_entr.
    let kl_term = |x: f64, m: f64| if x > 0.0 { x * (x / m).ln() } else { 0.0 };
    let nats: f64 = p
        .iter()
        .zip(q)
        .map(|(&a, &b)| {
            let m = 0.5 * (a + b);
            kl_term(a, m) + kl_term(b, m)
        })
        .sum::<f64>()
        / 2.0;
    // Rounding can leave -1e-17 for identical maps; the true value lies in [0, 1].
    (nats / std::f64::consts::LN_2).clamp(0.0, 1.0)
}

/// `sqrt(js_divergence)` in bits: scipy's `jensenshannon(p, q, base=2)`.
pub fn js_distance(p: &[f64], q: &[f64]) -> Result<f64, MetricError> {
    js_divergence(p, q).map(f64::sqrt)
}

/// JS divergence (bits) of two maps on the same grid.
pub fn js_divergence_maps(a: &AttentionMap, b: &AttentionMap) -> Result<f64, MetricError> {
    same_grid(a, b)?;
    Ok(js_divergence_probs(&a.normalized()?, &b.normalized()?))
}

fn same_grid(a: &AttentionMap, b: &AttentionMap) -> Result<(), MetricError> {
    if (a.h, a.w) == (b.h, b.w) { Ok(()) } else { Err(MetricError::GridsDiffer { a_h: a.h, a_w: a.w, b_h: b.h, b_w: b.w }) }
}

/// Mean over unordered pairs of `1 - js_distance`; needs at least two maps on one grid.
pub fn consistency(maps: &[AttentionMap]) -> Result<f64, MetricError> {
    if maps.len() < 2 {
        return Err(MetricError::TooFew { what: "consistency", needed: 2, got: maps.len() });
    }
    for m in &maps[1..] {
        same_grid(&maps[0], m)?;
    }
    let probs = maps.iter().map(AttentionMap::normalized).collect::<Result<Vec<_>, _>>()?;
    let mut total = 0.0;
    let mut pairs = 0usize;
    for i in 0..probs.len() {
        for j in i + 1..probs.len() {
            total += 1.0 - js_divergence_probs(&probs[i], &probs[j]).sqrt();
            pairs += 1;
        }
    }
    Ok(total / pairs as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hot_is_fully_focused_and_uniform_not_at_all() {
        let one_hot = [0.0, 1.0, 0.0, 0.0];
        assert_eq!(focus(&one_hot), 1.0);
        assert!((focus(&[0.25; 4])).abs() < 1e-15);
        assert!((gini(&one_hot) - 0.75).abs() < 1e-15);
        assert_eq!(gini(&[0.25; 4]), 0.0);
    }

    #[test]
    fn top10_takes_ceil_of_a_tenth_of_the_cells() {
        // 30 cells: the 3 largest, not 4 (the float 0.1 * 30 has ceiling 4).
        let mut p = vec![0.0; 30];
        p[..4].copy_from_slice(&[0.4, 0.3, 0.2, 0.1]);
        assert!((top10_mass(&p) - 0.9).abs() < 1e-15);
        assert_eq!(top10_mass(&[1.0]), 1.0);
    }

    #[test]
    fn disjoint_maps_are_one_bit_apart() {
        assert!((js_divergence(&[1.0, 0.0], &[0.0, 1.0]).unwrap() - 1.0).abs() < 1e-15);
        assert_eq!(js_divergence(&[0.3, 0.7], &[0.3, 0.7]).unwrap(), 0.0);
    }

    #[test]
    fn maps_on_different_grids_are_not_compared() {
        let a = AttentionMap::new(2, 2, vec![1.0; 4]).unwrap();
        let b = AttentionMap::new(1, 4, vec![1.0; 4]).unwrap();
        assert!(matches!(js_divergence_maps(&a, &b), Err(MetricError::GridsDiffer { .. })));
        assert!(matches!(consistency(std::slice::from_ref(&a)), Err(MetricError::TooFew { .. })));
        assert!(matches!(consistency(&[a, b]), Err(MetricError::GridsDiffer { .. })));
    }
}
