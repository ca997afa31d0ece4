//! Paired comparison of two models answering the same rows (spec "Robustness statistics"):
//! the clustered McNemar test of Durkalski et al. (2003), which allows for rows of one study
//! being correlated, and the plain exact McNemar test, which does not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, ChiSquared, ContinuousCDF, DiscreteCDF};

use super::robustness::VariantRow;
use crate::MetricError;

/// Whether models A and B answered one row correctly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairedRow {
    pub study_id: String,
    pub a_correct: bool,
    pub b_correct: bool,
}

/// One study's discordance counts: `b` rows where A is correct and B wrong, `c` the reverse,
/// `n` rows in all (concordant ones included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyCounts {
    pub study_id: String,
    pub b: u64,
    pub c: u64,
    pub n: u64,
}

/// Result of comparing model A with model B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McNemar {
    /// Durkalski's clustered statistic, chi-square with 1 degree of freedom.
    pub chi2: f64,
    /// Its upper-tail p-value.
    pub p_clustered: f64,
    /// Rows where A is correct and B wrong, over all studies.
    pub b: u64,
    /// Rows where B is correct and A wrong.
    pub c: u64,
    /// Two-sided exact McNemar p-value from `b` and `c` (ignores clustering).
    pub p_exact: f64,
    /// Number of studies (clusters).
    pub studies: usize,
}

/// Pairs model A's and model B's rows on `(study_id, variant_index)`, sorted by that key.
///
/// Both models must have answered exactly the same variants with the same ground truth;
/// anything else is [`MetricError::Invalid`], because a comparison on different rows is not
/// paired.
pub fn pair_rows(a: &[VariantRow], b: &[VariantRow]) -> Result<Vec<PairedRow>, MetricError> {
    let a = index_rows(a, "A")?;
    let b = index_rows(b, "B")?;
    if let Some((study, variant)) = b.keys().find(|k| !a.contains_key(*k)) {
        return Err(MetricError::Invalid(format!("model A has no row for study {study} variant {variant}")));
    }
    let mut paired = Vec::with_capacity(a.len());
    for ((study, variant), ra) in &a {
        let Some(rb) = b.get(&(study.clone(), *variant)) else {
            return Err(MetricError::Invalid(format!("model B has no row for study {study} variant {variant}")));
        };
        if ra.truth != rb.truth {
            return Err(MetricError::Invalid(format!("study {study} variant {variant}: the models' rows disagree on the ground truth")));
        }
        paired.push(PairedRow { study_id: study.clone(), a_correct: ra.is_correct(), b_correct: rb.is_correct() });
    }
    Ok(paired)
}

/// Rows by `(study_id, variant_index)`; a repeated key is [`MetricError::Invalid`].
fn index_rows<'a>(rows: &'a [VariantRow], model: &str) -> Result<BTreeMap<(String, u32), &'a VariantRow>, MetricError> {
    let mut map = BTreeMap::new();
    for r in rows {
        if map.insert((r.study_id.clone(), r.variant_index), r).is_some() {
            return Err(MetricError::Invalid(format!("model {model} has two rows for study {} variant {}", r.study_id, r.variant_index)));
        }
    }
    Ok(map)
}

/// Per-study discordance counts, sorted by study id.
pub fn study_counts(rows: &[PairedRow]) -> Vec<StudyCounts> {
    let mut by_id: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for r in rows {
        let e = by_id.entry(r.study_id.as_str()).or_default();
        e.0 += u64::from(r.a_correct && !r.b_correct);
        e.1 += u64::from(!r.a_correct && r.b_correct);
        e.2 += 1;
    }
    by_id.into_iter().map(|(id, (b, c, n))| StudyCounts { study_id: id.to_owned(), b, c, n }).collect()
}

/// Clustered and exact McNemar tests of model A against model B on paired rows.
pub fn mcnemar(rows: &[PairedRow]) -> Result<McNemar, MetricError> {
    mcnemar_from_counts(&study_counts(rows))
}

/// Clustered and exact McNemar tests from per-study counts.
///
/// Durkalski: with `d_k = (b_k - c_k) / n_k`, `chi2 = (sum d_k)^2 / sum d_k^2` (1 df); when
/// every study has `b_k = c_k` the denominator is zero and there is no evidence of a
/// difference, so `chi2 = 0`, `p = 1`. No studies at all gives the same. Each study needs
/// `n_k >= 1` and `b_k + c_k <= n_k`, else [`MetricError::Invalid`].
pub fn mcnemar_from_counts(counts: &[StudyCounts]) -> Result<McNemar, MetricError> {
    let (mut sum_d, mut sum_d2, mut b, mut c) = (0.0, 0.0, 0u64, 0u64);
    for k in counts {
        if k.n == 0 || k.b.saturating_add(k.c) > k.n {
            return Err(MetricError::Invalid(format!(
                "study {}: b = {}, c = {} with n = {} rows (needs n >= 1 and b + c <= n)",
                k.study_id, k.b, k.c, k.n
            )));
        }
        let d = (k.b as f64 - k.c as f64) / k.n as f64;
        sum_d += d;
        sum_d2 += d * d;
        b += k.b;
        c += k.c;
    }
    let (chi2, p_clustered) = if sum_d2 == 0.0 {
        (0.0, 1.0)
    } else {
        let chi2 = sum_d * sum_d / sum_d2;
        let dist = ChiSquared::new(1.0).map_err(|e| MetricError::Invalid(format!("chi-square distribution: {e}")))?;
        (chi2, dist.sf(chi2))
    };
    Ok(McNemar { chi2, p_clustered, b, c, p_exact: exact_mcnemar_p(b, c)?, studies: counts.len() })
}

/// Two-sided exact McNemar p-value: `min(1, 2 P[X <= min(b, c)])` with
/// `X ~ Binomial(b + c, 1/2)`; `b + c = 0` gives 1.
pub fn exact_mcnemar_p(b: u64, c: u64) -> Result<f64, MetricError> {
    let Some(n) = b.checked_add(c) else {
        return Err(MetricError::Invalid(format!("b + c overflows: b = {b}, c = {c}")));
    };
    if n == 0 {
        return Ok(1.0);
    }
    let dist = Binomial::new(0.5, n).map_err(|e| MetricError::Invalid(format!("binomial distribution: {e}")))?;
    Ok((2.0 * dist.cdf(b.min(c))).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Answer::{No, Yes};
    use crate::stats::robustness::tests::{golden_stats, row};
    use proptest::prelude::*;

    fn paired(study: &str, a: bool, b: bool) -> PairedRow {
        PairedRow { study_id: study.to_owned(), a_correct: a, b_correct: b }
    }

    fn counts(v: &[(u64, u64, u64)]) -> Vec<StudyCounts> {
        v.iter().enumerate().map(|(i, &(b, c, n))| StudyCounts { study_id: format!("s{i}"), b, c, n }).collect()
    }

    #[test]
    fn hand_computed_clustered_and_exact_mcnemar() {
        let rows = [
            // s1: b = 2, c = 1, n = 4 -> d = 0.25
            paired("s1", true, false),
            paired("s1", true, false),
            paired("s1", false, true),
            paired("s1", true, true),
            // s2: b = 1, c = 0, n = 2 -> d = 0.5
            paired("s2", true, false),
            paired("s2", false, false),
        ];
        let m = mcnemar(&rows).unwrap();
        // chi2 = 0.75^2 / (0.25^2 + 0.5^2) = 1.8; p = erfc(sqrt(0.9)) = 0.17971249487899985
        assert!((m.chi2 - 1.8).abs() < 1e-12);
        assert!((m.p_clustered - 0.179_712_494_878_999_85).abs() < 1e-9, "{}", m.p_clustered);
        assert_eq!((m.b, m.c, m.studies), (3, 1, 2));
        // 2 P[Binomial(4, 1/2) <= 1] = 2 * 5/16
        assert!((m.p_exact - 0.625).abs() < 1e-12);
    }

    #[test]
    fn no_discordance_gives_chi2_zero_and_p_one() {
        let rows = [paired("s1", true, true), paired("s1", false, false), paired("s2", true, true)];
        let m = mcnemar(&rows).unwrap();
        assert_eq!((m.chi2, m.p_clustered, m.b, m.c, m.p_exact), (0.0, 1.0, 0, 0, 1.0));
        let empty = mcnemar(&[]).unwrap();
        assert_eq!((empty.chi2, empty.p_clustered, empty.p_exact, empty.studies), (0.0, 1.0, 1.0, 0));
    }

    #[test]
    fn balanced_discordance_within_every_study_has_a_zero_denominator() {
        // b_k = c_k everywhere: sum d_k^2 = 0 -> chi2 = 0, p = 1; exact p clamps to 1.
        let m = mcnemar_from_counts(&counts(&[(2, 2, 5), (1, 1, 3)])).unwrap();
        assert_eq!((m.chi2, m.p_clustered, m.p_exact), (0.0, 1.0, 1.0));
    }

    #[test]
    fn exact_p_is_twice_the_lower_binomial_tail() {
        assert_eq!(exact_mcnemar_p(0, 0).unwrap(), 1.0);
        // 2 * P[Binomial(5, 1/2) <= 0] = 2/32
        assert!((exact_mcnemar_p(5, 0).unwrap() - 0.0625).abs() < 1e-12);
        assert!((exact_mcnemar_p(0, 5).unwrap() - 0.0625).abs() < 1e-12);
        // 2 * P[Binomial(10, 1/2) <= 2] = 2 * 56/1024
        assert!((exact_mcnemar_p(8, 2).unwrap() - 112.0 / 1024.0).abs() < 1e-12);
        assert_eq!(exact_mcnemar_p(3, 3).unwrap(), 1.0);
    }

    #[test]
    fn inconsistent_counts_are_rejected() {
        assert!(matches!(mcnemar_from_counts(&counts(&[(1, 0, 0)])), Err(MetricError::Invalid(_))));
        assert!(matches!(mcnemar_from_counts(&counts(&[(2, 2, 3)])), Err(MetricError::Invalid(_))));
    }

    #[test]
    fn rows_of_two_models_are_paired_by_study_and_variant() {
        let a = [row("s", 0, "original", 1, Yes, Yes), row("s", 1, "negation", -1, Yes, No)];
        let b = [row("s", 1, "negation", -1, No, No), row("s", 0, "original", 1, Yes, Yes)];
        let p = pair_rows(&a, &b).unwrap();
        assert_eq!(p, vec![paired("s", true, true), paired("s", false, true)]);
        let m = mcnemar(&p).unwrap();
        assert_eq!((m.b, m.c, m.studies), (0, 1, 1));
    }

    #[test]
    fn unpaired_rows_are_rejected() {
        let a = [row("s", 0, "original", 1, Yes, Yes), row("s", 1, "synonym", 1, Yes, Yes)];
        let b = [row("s", 0, "original", 1, Yes, Yes)];
        assert!(matches!(pair_rows(&a, &b), Err(MetricError::Invalid(_))));
        assert!(matches!(pair_rows(&b, &a), Err(MetricError::Invalid(_))));
        let other_truth = [row("s", 0, "original", 1, Yes, No), row("s", 1, "synonym", 1, Yes, Yes)];
        assert!(matches!(pair_rows(&a, &other_truth), Err(MetricError::Invalid(_))));
        let dup = [row("s", 0, "original", 1, Yes, Yes), row("s", 0, "original", 1, No, Yes)];
        assert!(matches!(pair_rows(&dup, &dup), Err(MetricError::Invalid(_))));
    }

    #[test]
    fn golden_durkalski_and_exact_mcnemar() {
        let stats = golden_stats();
        let mut rows = Vec::new();
        for st in stats["studies"].as_array().unwrap() {
            let id = st["study_id"].as_str().unwrap();
            let (a, b) = (st["a_correct"].as_array().unwrap(), st["b_correct"].as_array().unwrap());
            for (x, y) in a.iter().zip(b) {
                rows.push(paired(id, x.as_i64() == Some(1), y.as_i64() == Some(1)));
            }
        }
        let m = mcnemar(&rows).unwrap();
        let f = |k: &str| stats[k].as_f64().unwrap();
        assert!((m.chi2 - f("durkalski_chi2")).abs() < 1e-9, "{} vs {}", m.chi2, f("durkalski_chi2"));
        assert!((m.p_clustered - f("durkalski_p")).abs() < 1e-9);
        assert_eq!(m.b, stats["mcnemar_b"].as_u64().unwrap());
        assert_eq!(m.c, stats["mcnemar_c"].as_u64().unwrap());
        assert!((m.p_exact - f("mcnemar_exact_p")).abs() < 1e-9);
        assert_eq!(m.studies, 30);
    }

    fn study_counts_strategy() -> impl Strategy<Value = Vec<StudyCounts>> {
        prop::collection::vec((1u64..8).prop_flat_map(|n| (0..=n, Just(n))), 0..20).prop_flat_map(|v| {
            v.into_iter().map(|(b, n)| (Just(b), 0..=n - b, Just(n))).collect::<Vec<_>>().prop_map(|triples| {
                triples.into_iter().enumerate().map(|(i, (b, c, n))| StudyCounts { study_id: format!("s{i}"), b, c, n }).collect()
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Cauchy-Schwarz: (sum d)^2 <= K sum d^2, so chi2 never exceeds the number of studies;
        /// p-values are probabilities; swapping the models swaps b and c and changes nothing else.
        #[test]
        fn mcnemar_is_bounded_and_symmetric(counts in study_counts_strategy()) {
            let m = mcnemar_from_counts(&counts).unwrap();
            prop_assert!(m.chi2 >= 0.0 && m.chi2 <= counts.len() as f64 + 1e-9);
            prop_assert!((0.0..=1.0).contains(&m.p_clustered));
            prop_assert!((0.0..=1.0).contains(&m.p_exact));
            let swapped: Vec<StudyCounts> =
                counts.iter().map(|k| StudyCounts { b: k.c, c: k.b, ..k.clone() }).collect();
            let s = mcnemar_from_counts(&swapped).unwrap();
            prop_assert!((s.chi2 - m.chi2).abs() <= 1e-12 * (1.0 + m.chi2));
            prop_assert_eq!((s.b, s.c), (m.c, m.b));
            prop_assert!((s.p_exact - m.p_exact).abs() <= 1e-12);
        }
    }
}
