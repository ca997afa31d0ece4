//! Seeded cluster bootstrap of a ratio-of-sums statistic (spec "Robustness statistics").
//!
//! Rows of one study share an image and are correlated, so resampling rows would understate the
//! uncertainty: the unit resampled is the cluster (study, or subject when the data has one).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::robustness::{ClusterRatio, merge_clusters, ratio};
use crate::MetricError;

/// The spec's default number of bootstrap resamples `B`.
pub const DEFAULT_RESAMPLES: u32 = 2000;
/// The default confidence level: the 2.5 and 97.5 percentiles.
pub const DEFAULT_LEVEL: f64 = 0.95;
/// Resampling unit names recorded with each interval.
pub const UNIT_STUDY: &str = "study";
pub const UNIT_SUBJECT: &str = "subject";

/// How to bootstrap: everything that must be recorded next to the interval to reproduce it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    /// `B`, the number of resamples.
    pub resamples: u32,
    pub seed: u64,
    /// Two-sided confidence level in (0, 1).
    pub level: f64,
    /// [`UNIT_STUDY`] or [`UNIT_SUBJECT`]: what the parts' `cluster` names identify.
    pub unit: String,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self { resamples: DEFAULT_RESAMPLES, seed: 0, level: DEFAULT_LEVEL, unit: UNIT_STUDY.to_owned() }
    }
}

impl BootstrapConfig {
    /// The defaults (B = 2000, 95%, study unit) with the given seed.
    pub fn with_seed(seed: u64) -> Self {
        Self { seed, ..Self::default() }
    }
}

/// A point estimate with its percentile cluster-bootstrap interval and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The statistic on the original clusters.
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
    pub level: f64,
    /// `B`, the number of resamples drawn.
    pub resamples: u32,
    /// Resamples whose denominators did not sum to zero; only these enter the percentiles.
    pub valid_resamples: u32,
    pub seed: u64,
    pub unit: String,
}

/// Percentile cluster bootstrap of `sum num / sum den`.
///
/// Parts sharing a cluster name are merged first (they move together), and clusters are
/// ordered by name, so the interval depends only on the multiset of parts and the config: the
/// same seed gives an identical interval. Each of the `B` resamples draws as many cluster ids as
/// there are clusters, with replacement (ChaCha8 seeded with `seed`), and recomputes the ratio
/// of sums; a resample whose denominators sum to zero is skipped and not counted in
/// `valid_resamples`. The bounds are the `(1 - level)/2` and `(1 + level)/2` quantiles of the
/// valid resample values with numpy's default (`linear`) interpolation, see
/// [`percentile_linear`].
///
/// Returns `Ok(None)` when the statistic itself has no value (denominators sum to zero, or no
/// parts). Errors: `resamples == 0`, a level outside (0, 1), an unknown unit, a non-finite part
/// or a negative denominator ([`MetricError::Invalid`]); no valid resample at all
/// ([`MetricError::TooFew`]).
pub fn cluster_bootstrap(parts: &[ClusterRatio], config: &BootstrapConfig) -> Result<Option<Interval>, MetricError> {
    if config.resamples == 0 {
        return Err(MetricError::Invalid("bootstrap needs at least one resample".to_owned()));
    }
    if !(config.level > 0.0 && config.level < 1.0) {
        return Err(MetricError::Invalid(format!("confidence level {} is not in (0, 1)", config.level)));
    }
    if config.unit != UNIT_STUDY && config.unit != UNIT_SUBJECT {
        return Err(MetricError::Invalid(format!("bootstrap unit {:?} is neither {UNIT_STUDY:?} nor {UNIT_SUBJECT:?}", config.unit)));
    }
    if let Some(bad) = parts.iter().find(|p| !p.num.is_finite() || !p.den.is_finite() || p.den < 0.0) {
        return Err(MetricError::Invalid(format!(
            "cluster {}: num {} / den {} must be finite with den >= 0",
            bad.cluster, bad.num, bad.den
        )));
    }
    let clusters = merge_clusters(parts);
    let Some(estimate) = ratio(&clusters) else {
        return Ok(None);
    };

    let m = clusters.len();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut values = Vec::with_capacity(config.resamples as usize);
    for _ in 0..config.resamples {
        let (mut num, mut den) = (0.0, 0.0);
        // Always draw m ids, even for a resample that turns out invalid, so the random stream
        // (and every later resample) does not depend on which resamples are skipped.
        for _ in 0..m {
            let c = &clusters[rng.random_range(0..m)];
            num += c.num;
            den += c.den;
        }
        if den > 0.0 {
            values.push(num / den);
        }
    }
    percentile_interval(estimate, values, config, "cluster bootstrap resamples with a non-zero denominator").map(Some)
}

/// The percentile interval of the valid resample statistics `values` around `estimate`; `what`
/// names the resamples in the error when none was valid.
pub(crate) fn percentile_interval(
    estimate: f64,
    mut values: Vec<f64>,
    config: &BootstrapConfig,
    what: &'static str,
) -> Result<Interval, MetricError> {
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - config.level) / 2.0;
    let (Some(lo), Some(hi)) = (percentile_linear(&values, tail), percentile_linear(&values, 1.0 - tail)) else {
        return Err(MetricError::TooFew { what, needed: 1, got: 0 });
    };
    Ok(Interval {
        estimate,
        lo,
        hi,
        level: config.level,
        resamples: config.resamples,
        valid_resamples: values.len() as u32,
        seed: config.seed,
        unit: config.unit.clone(),
    })
}

/// The `q`-quantile (`q` in [0, 1]) of ascending `sorted` values with numpy's default
/// (`method="linear"`) interpolation, so `np.percentile(x, 2.5)` equals
/// `percentile_linear(&sorted_x, 0.025)`: virtual index `(n - 1) q`, linear between its two
/// neighbours, evaluated from the nearer end as numpy's `_lerp` does. `None` when `sorted` is
/// empty or `q` is outside [0, 1].
pub fn percentile_linear(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let n = sorted.len();
    let h = (n - 1) as f64 * q;
    let below = (h.floor() as usize).min(n - 1);
    let above = (below + 1).min(n - 1);
    let t = h - below as f64;
    let (a, b) = (sorted[below], sorted[above]);
    let diff = b - a;
    Some(if t >= 0.5 { b - diff * (1.0 - t) } else { a + diff * t })
}

/// The `p`-th percentile (`p` in `0..=100`, clamped) of the finite values of `values` (any
/// order), by [`percentile_linear`]; 0 when none is finite. The dashboard's colour scale clips
/// at it, so the browser and the analysis share one definition of a percentile.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let q = if p.is_nan() { 0.0 } else { p.clamp(0.0, 100.0) / 100.0 };
    percentile_linear(&v, q).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn parts(v: &[(&str, f64, f64)]) -> Vec<ClusterRatio> {
        v.iter().map(|&(c, n, d)| ClusterRatio::new(c, n, d)).collect()
    }

    fn sample() -> Vec<ClusterRatio> {
        (0..40).map(|i| ClusterRatio::new(format!("s{i:02}"), (i % 3) as f64, (1 + i % 4) as f64)).collect()
    }

    #[test]
    fn percentile_of_unsorted_values_skips_non_finite_ones() {
        let v = [2.0, f64::NAN, 0.0, 1.0, 0.5, f64::INFINITY];
        assert_eq!(percentile(&v, 50.0), 0.75);
        assert_eq!(percentile(&v, 0.0), 0.0);
        assert_eq!(percentile(&v, 100.0), 2.0);
        assert_eq!(percentile(&v, 250.0), 2.0);
        assert_eq!(percentile(&v, -1.0), 0.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[f64::NAN], 50.0), 0.0);
        assert_eq!(percentile(&[3.0], 90.0), 3.0);
    }

    #[test]
    fn percentile_matches_numpy_linear_interpolation() {
        let x = [1.0, 2.0, 3.0, 4.0];
        // np.percentile([1, 2, 3, 4], [0, 2.5, 50, 97.5, 100]) = [1, 1.075, 2.5, 3.925, 4]
        assert_eq!(percentile_linear(&x, 0.0), Some(1.0));
        assert!((percentile_linear(&x, 0.025).unwrap() - 1.075).abs() < 1e-12);
        assert_eq!(percentile_linear(&x, 0.5), Some(2.5));
        assert!((percentile_linear(&x, 0.975).unwrap() - 3.925).abs() < 1e-12);
        assert_eq!(percentile_linear(&x, 1.0), Some(4.0));
        assert_eq!(percentile_linear(&[7.0], 0.3), Some(7.0));
        assert_eq!(percentile_linear(&[], 0.5), None);
        assert_eq!(percentile_linear(&x, 1.5), None);
    }

    #[test]
    fn same_seed_gives_an_identical_interval() {
        let config = BootstrapConfig::with_seed(42);
        let a = cluster_bootstrap(&sample(), &config).unwrap().unwrap();
        let b = cluster_bootstrap(&sample(), &config).unwrap().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.resamples, DEFAULT_RESAMPLES);
        assert_eq!(a.valid_resamples, DEFAULT_RESAMPLES);
        assert_eq!((a.seed, a.level, a.unit.as_str()), (42, 0.95, "study"));
        assert_eq!(Some(a.estimate), ratio(&sample()));
        assert!(a.lo < a.estimate && a.estimate < a.hi);
    }

    #[test]
    fn different_seeds_give_different_intervals() {
        let a = cluster_bootstrap(&sample(), &BootstrapConfig::with_seed(1)).unwrap().unwrap();
        let b = cluster_bootstrap(&sample(), &BootstrapConfig::with_seed(2)).unwrap().unwrap();
        assert_eq!(a.estimate, b.estimate);
        assert!((a.lo, a.hi) != (b.lo, b.hi));
    }

    #[test]
    fn the_interval_does_not_depend_on_the_order_of_the_parts() {
        let mut shuffled = sample();
        shuffled.reverse();
        shuffled.swap(3, 17);
        let config = BootstrapConfig::with_seed(7);
        assert_eq!(cluster_bootstrap(&shuffled, &config), cluster_bootstrap(&sample(), &config));
    }

    #[test]
    fn parts_of_one_cluster_are_resampled_together() {
        let split = parts(&[("a", 1.0, 1.0), ("b", 0.0, 2.0), ("a", 0.0, 1.0), ("c", 3.0, 3.0)]);
        let whole = parts(&[("a", 1.0, 2.0), ("b", 0.0, 2.0), ("c", 3.0, 3.0)]);
        let config = BootstrapConfig { resamples: 300, ..BootstrapConfig::with_seed(3) };
        assert_eq!(cluster_bootstrap(&split, &config), cluster_bootstrap(&whole, &config));
    }

    #[test]
    fn clusters_with_equal_ratios_give_a_degenerate_interval() {
        let p = parts(&[("a", 1.0, 2.0), ("b", 2.0, 4.0), ("c", 3.0, 6.0)]);
        let i = cluster_bootstrap(&p, &BootstrapConfig::with_seed(0)).unwrap().unwrap();
        assert_eq!((i.estimate, i.lo, i.hi), (0.5, 0.5, 0.5));
    }

    #[test]
    fn resamples_without_a_denominator_are_skipped_and_counted() {
        // Only one of three clusters is covered: (2/3)^3 of resamples miss it.
        let p = parts(&[("a", 1.0, 1.0), ("b", 0.0, 0.0), ("c", 0.0, 0.0)]);
        let config = BootstrapConfig { resamples: 500, ..BootstrapConfig::with_seed(9) };
        let i = cluster_bootstrap(&p, &config).unwrap().unwrap();
        assert_eq!(i.resamples, 500);
        assert!(i.valid_resamples < 500 && i.valid_resamples > 250, "{}", i.valid_resamples);
        assert_eq!((i.estimate, i.lo, i.hi), (1.0, 1.0, 1.0));
    }

    #[test]
    fn a_statistic_without_a_value_has_no_interval() {
        let config = BootstrapConfig::default();
        assert_eq!(cluster_bootstrap(&[], &config), Ok(None));
        assert_eq!(cluster_bootstrap(&parts(&[("a", 0.0, 0.0)]), &config), Ok(None));
    }

    #[test]
    fn invalid_configurations_and_parts_are_rejected() {
        let p = sample();
        let invalid = |c: BootstrapConfig, p: &[ClusterRatio]| matches!(cluster_bootstrap(p, &c), Err(MetricError::Invalid(_)));
        assert!(invalid(BootstrapConfig { resamples: 0, ..Default::default() }, &p));
        assert!(invalid(BootstrapConfig { level: 1.0, ..Default::default() }, &p));
        assert!(invalid(BootstrapConfig { level: f64::NAN, ..Default::default() }, &p));
        assert!(invalid(BootstrapConfig { unit: "row".to_owned(), ..Default::default() }, &p));
        assert!(invalid(BootstrapConfig::default(), &parts(&[("a", 1.0, -1.0)])));
        assert!(invalid(BootstrapConfig::default(), &parts(&[("a", f64::NAN, 1.0)])));
        let subject = BootstrapConfig { unit: UNIT_SUBJECT.to_owned(), resamples: 50, ..Default::default() };
        assert_eq!(cluster_bootstrap(&p, &subject).unwrap().unwrap().unit, "subject");
    }

    #[test]
    fn interval_serializes_with_its_provenance() {
        let i = cluster_bootstrap(&sample(), &BootstrapConfig { resamples: 100, ..BootstrapConfig::with_seed(5) }).unwrap().unwrap();
        let json = serde_json::to_value(&i).unwrap();
        for key in ["estimate", "lo", "hi", "level", "resamples", "valid_resamples", "seed", "unit"] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        let back: Interval = serde_json::from_value(json).unwrap();
        assert_eq!(back, i);
    }

    /// About 95% of 95% intervals cover the true ratio. 200 clusters of 1..=8 Bernoulli(0.3)
    /// rows: the ratio of sums estimates 0.3. 200 simulated studies with B = 300 keep this fast;
    /// the seeds are fixed, so the test is deterministic.
    #[test]
    fn intervals_cover_the_true_ratio_about_95_percent_of_the_time() {
        const TRUE_P: f64 = 0.3;
        const REPS: u32 = 200;
        let mut data_rng = ChaCha8Rng::seed_from_u64(2024);
        let mut covered = 0;
        for rep in 0..REPS {
            let p: Vec<ClusterRatio> = (0..200)
                .map(|c| {
                    let size = data_rng.random_range(1..=8u32);
                    let hits = (0..size).filter(|_| data_rng.random_bool(TRUE_P)).count();
                    ClusterRatio::new(format!("c{c:03}"), hits as f64, f64::from(size))
                })
                .collect();
            let config = BootstrapConfig { resamples: 300, ..BootstrapConfig::with_seed(u64::from(rep)) };
            let i = cluster_bootstrap(&p, &config).unwrap().unwrap();
            covered += u32::from(i.lo <= TRUE_P && TRUE_P <= i.hi);
        }
        let coverage = f64::from(covered) / f64::from(REPS);
        assert!((0.88..=0.99).contains(&coverage), "coverage {coverage}");
    }
}
