//! Can a map be trusted? The math of the checks on top of the maps (issue 10): which cells a
//! deletion test removes, attention sinks, the relative map, and agreement between methods.
//!
//! Everything takes normalised maps (`p`, see [`crate::map::normalize_vec`]) on one grid.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::MetricError;
use crate::fusion::MapMethod;
use crate::map::normalize_vec;
use crate::metrics::js_divergence_probs;

/// Deletion sizes of the faithfulness check, in percent of the cells.
pub const DEFAULT_DELETION_PERCENTS: [u32; 2] = [10, 25];
/// Random deletions averaged per size: the baseline a map's top cells must beat.
pub const DEFAULT_RANDOM_DRAWS: usize = 3;
/// A sink holds more than this many times the uniform share `1/n` in every map it is found in.
pub const SINK_FACTOR: f64 = 5.0;
/// The relative map divides by the generic map, floored at this fraction of `1/n`, so cells the
/// generic prompt ignores cannot blow up.
pub const RELATIVE_FLOOR: f64 = 0.1;
/// The generic prompt whose map sinks and the relative map are judged against.
pub const GENERIC_PROMPT: &str = "Describe the image.";

/// Cells deleted for `percent`%: `ceil(percent * n / 100)`, at least one, at most `n`.
pub fn deletion_count(n: usize, percent: u32) -> usize {
    (n * percent as usize).div_ceil(100).clamp(1, n.max(1))
}

/// The `count` cells with the largest mass (ties: lower index first), as the spec's rank order.
pub fn top_cells(p: &[f64], count: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    idx.truncate(count);
    idx
}

/// `count` distinct cells of `n` drawn uniformly, reproducibly from `seed` (ChaCha8).
pub fn random_cells(n: usize, count: usize, seed: u64) -> Vec<usize> {
    // A partial Fisher-Yates shuffle: the first `count` places.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut idx: Vec<usize> = (0..n).collect();
    let count = count.min(n);
    for i in 0..count {
        let j = rng.random_range(i..n);
        idx.swap(i, j);
    }
    idx.truncate(count);
    idx
}

/// Whether a map's top cells move the margin no more than the same number of random cells:
/// `|delta_top| <= |delta_random|`.
pub fn unfaithful(delta_top: f64, delta_random: f64) -> bool {
    delta_top.abs() <= delta_random.abs()
}

/// Cells above `factor / n` in every one of `maps` (normalised, equal length): the cells that take
/// a large share whatever the question. Empty without maps.
pub fn sink_cells(maps: &[&[f64]], factor: f64) -> Vec<usize> {
    let Some(first) = maps.first() else { return Vec::new() };
    let threshold = factor / first.len() as f64;
    (0..first.len()).filter(|&i| maps.iter().all(|m| m.get(i).is_some_and(|&v| v > threshold))).collect()
}

/// `p` with `cells` zeroed and renormalised: the map as if the sinks were not there. An error
/// when nothing is left.
pub fn without_cells(p: &[f64], cells: &[usize]) -> Result<Vec<f64>, MetricError> {
    let mut q = p.to_vec();
    for &c in cells {
        if let Some(v) = q.get_mut(c) {
            *v = 0.0;
        }
    }
    normalize_vec(&q)
}

/// The relative map: `normalise(question / max(generic, RELATIVE_FLOOR / n))`, what the question
/// adds over a generic look at the image. Both normalised, on one grid.
pub fn relative_map(question: &[f64], generic: &[f64]) -> Result<Vec<f64>, MetricError> {
    if question.len() != generic.len() {
        return Err(MetricError::GridsDiffer { a_h: 1, a_w: question.len(), b_h: 1, b_w: generic.len() });
    }
    let floor = RELATIVE_FLOOR / question.len() as f64;
    let ratio: Vec<f64> = question.iter().zip(generic).map(|(&q, &g)| q / g.max(floor)).collect();
    normalize_vec(&ratio)
}

/// Jensen-Shannon between two methods' maps of one record, on the attention map's grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodPair {
    pub a: MapMethod,
    pub b: MapMethod,
    pub js_divergence: f64,
    pub js_distance: f64,
}

/// Every unordered pair of `maps` (normalised, equal length), in the given order.
pub fn method_agreement(maps: &[(MapMethod, &[f64])]) -> Vec<MethodPair> {
    let mut out = Vec::new();
    for (i, (a, p)) in maps.iter().enumerate() {
        for (b, q) in &maps[i + 1..] {
            if p.len() == q.len() {
                let js = js_divergence_probs(p, q);
                out.push(MethodPair { a: *a, b: *b, js_divergence: js, js_distance: js.max(0.0).sqrt() });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_counts_round_up() {
        assert_eq!(deletion_count(16, 10), 2);
        assert_eq!(deletion_count(16, 25), 4);
        assert_eq!(deletion_count(576, 10), 58);
        assert_eq!(deletion_count(3, 1), 1);
        assert_eq!(deletion_count(4, 100), 4);
    }

    #[test]
    fn top_cells_break_ties_by_index() {
        assert_eq!(top_cells(&[0.1, 0.4, 0.1, 0.4], 3), vec![1, 3, 0]);
    }

    #[test]
    fn random_cells_are_distinct_and_seeded() {
        let a = random_cells(16, 4, 7);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
        assert_eq!(a, random_cells(16, 4, 7));
        assert_ne!(a, random_cells(16, 4, 8));
    }

    #[test]
    fn a_map_no_better_than_random_is_flagged() {
        assert!(unfaithful(0.1, -0.3));
        assert!(unfaithful(0.2, 0.2));
        assert!(!unfaithful(-0.5, 0.1));
    }

    /// Cell 0 is a sink in both maps; cell 2 is high in one map only.
    #[test]
    fn sinks_are_high_in_every_map() {
        let a = [0.5, 0.1, 0.3, 0.1];
        let b = [0.6, 0.2, 0.1, 0.1];
        assert_eq!(sink_cells(&[&a, &b], 1.1), vec![0]);
        assert!(sink_cells(&[], 1.1).is_empty());
        let w = without_cells(&a, &[0]).unwrap();
        assert!((w[2] - 0.6).abs() < 1e-12 && w[0] == 0.0);
        assert!(without_cells(&[1.0, 0.0], &[0]).is_err());
    }

    /// A question map equal to the generic one gives a uniform relative map; extra mass on one
    /// cell shows there.
    #[test]
    fn relative_maps_show_what_the_question_adds() {
        let g = [0.4, 0.2, 0.2, 0.2];
        assert!(relative_map(&g, &g).unwrap().iter().all(|&v| (v - 0.25).abs() < 1e-12));
        let q = [0.2, 0.4, 0.2, 0.2];
        let r = relative_map(&q, &g).unwrap();
        assert!(r[1] > r[2] && r[0] < r[2]);
        // A zero generic cell is floored at RELATIVE_FLOOR / n, not divided by.
        let r = relative_map(&[0.5, 0.5], &[1.0, 0.0]).unwrap();
        assert!((r[1] / r[0] - 1.0 / (RELATIVE_FLOOR / 2.0)).abs() < 1e-9);
    }

    #[test]
    fn agreement_covers_every_pair() {
        let a = [0.5, 0.5];
        let b = [1.0, 0.0];
        let pairs = method_agreement(&[(MapMethod::QueryToVisual, &a), (MapMethod::Gradcam, &b), (MapMethod::Relative, &a)]);
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[1].js_distance, 0.0);
        assert!((pairs[0].js_distance - pairs[2].js_distance).abs() < 1e-12 && pairs[0].js_distance > 0.0);
    }
}
