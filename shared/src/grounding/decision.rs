//! G7: decision quality from the margin `m = logit(yes) - logit(no)`: does the margin rank
//! positives above negatives, how often is the decision a near tie, and does a near tie warn
//! that a rephrasing will flip the answer?

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::MetricError;
use crate::answer::Answer;
use crate::stats::bootstrap::{BootstrapConfig, Interval, UNIT_STUDY, UNIT_SUBJECT, percentile_interval};
use crate::stats::robustness::{ClusterRatio, ratio};

/// The spec's default near-tie threshold `eps` on `|m|`.
pub const DEFAULT_NEAR_TIE_EPS: f64 = 1.0;

/// One row (study, variant) with its margin, as G7 needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRow {
    pub study_id: String,
    /// 0 is the base question.
    pub variant_index: u32,
    /// `+1` same meaning as the base, `-1` negated.
    pub polarity: i8,
    /// `logit(yes) - logit(no)` at the first answer position.
    pub margin: f64,
    /// The parsed answer to this variant's question as asked.
    pub answer: Answer,
    /// The truth of this variant's question as asked; rows without a yes/no truth are left out
    /// of [`margin_auroc`] only.
    pub truth: Option<Answer>,
}

/// `(#{s_pos > s_neg} + 0.5 #{s_pos == s_neg}) / (n_pos n_neg)` over all positive-negative pairs
/// (the Mann-Whitney U over its maximum); `None` if a class is empty. Scores must be finite.
pub fn auroc(scores: &[f64], labels: &[bool]) -> Result<Option<f64>, MetricError> {
    if scores.len() != labels.len() {
        return Err(MetricError::Invalid(format!("{} scores but {} labels", scores.len(), labels.len())));
    }
    if let Some((index, &value)) = scores.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MetricError::InvalidValue { index, value });
    }
    let mut neg: Vec<f64> = scores.iter().zip(labels).filter(|(_, l)| !**l).map(|(s, _)| *s).collect();
    let n_pos = labels.len() - neg.len();
    if n_pos == 0 || neg.is_empty() {
        return Ok(None);
    }
    neg.sort_by(f64::total_cmp);
    // Counts are integers, so the sum is exact in any order.
    let (mut greater, mut equal) = (0u64, 0u64);
    for (s, _) in scores.iter().zip(labels).filter(|(_, l)| **l) {
        let below = neg.partition_point(|&x| x < *s);
        let not_above = neg.partition_point(|&x| x <= *s);
        greater += below as u64;
        equal += (not_above - below) as u64;
    }
    Ok(Some((greater as f64 + 0.5 * equal as f64) / (n_pos as f64 * neg.len() as f64)))
}

/// The binary entropy in bits of `pi = 1 / (1 + exp(-m))`; 0 where `pi` rounds to 0 or 1.
pub fn answer_entropy_bits(margin: f64) -> f64 {
    let pi = 1.0 / (1.0 + (-margin).exp());
    if pi == 0.0 || pi == 1.0 { 0.0 } else { -pi * pi.log2() - (1.0 - pi) * (1.0 - pi).log2() }
}

/// `margin_auroc`: the margin as a score for `truth == yes`, over the rows with a yes/no truth.
pub fn margin_auroc(rows: &[DecisionRow]) -> Result<Option<f64>, MetricError> {
    let labelled: Vec<&DecisionRow> = rows.iter().filter(|r| matches!(r.truth, Some(Answer::Yes | Answer::No))).collect();
    let scores: Vec<f64> = labelled.iter().map(|r| r.margin).collect();
    let labels: Vec<bool> = labelled.iter().map(|r| r.truth == Some(Answer::Yes)).collect();
    auroc(&scores, &labels)
}

/// One (base, variant `i >= 1`) pair of a study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionPair {
    pub study_id: String,
    pub variant_index: u32,
    /// The polarity-adjusted answers differ (unknown against yes or no flips; unknown against
    /// unknown does not).
    pub flip: bool,
    /// `|m_base - pol m_variant|`.
    pub margin_shift: f64,
    /// `|m_base| >= eps` and `|m_variant| >= eps`.
    pub robust: bool,
    /// The variant row's [`answer_entropy_bits`].
    pub variant_entropy_bits: f64,
}

fn check_rows(rows: &[DecisionRow]) -> Result<BTreeMap<&str, Vec<&DecisionRow>>, MetricError> {
    let mut by_study: BTreeMap<&str, Vec<&DecisionRow>> = BTreeMap::new();
    for r in rows {
        if r.polarity != 1 && r.polarity != -1 {
            return Err(MetricError::Invalid(format!(
                "study {} variant {}: polarity is {}, must be +1 or -1",
                r.study_id, r.variant_index, r.polarity
            )));
        }
        if !r.margin.is_finite() {
            return Err(MetricError::Invalid(format!(
                "study {} variant {}: margin {} is not finite",
                r.study_id, r.variant_index, r.margin
            )));
        }
        by_study.entry(r.study_id.as_str()).or_default().push(r);
    }
    for (id, v) in &mut by_study {
        v.sort_by_key(|r| r.variant_index);
        if let Some(w) = v.windows(2).find(|w| w[0].variant_index == w[1].variant_index) {
            return Err(MetricError::Invalid(format!("study {id} has two rows for variant {}", w[0].variant_index)));
        }
    }
    Ok(by_study)
}

/// The (base, variant) pairs, by study id then variant index. A study without variant 0 has no
/// pairs. Errors: a polarity other than ±1, a non-finite margin, a repeated variant.
pub fn decision_pairs(rows: &[DecisionRow], eps: f64) -> Result<Vec<DecisionPair>, MetricError> {
    let mut pairs = Vec::new();
    for (id, variants) in check_rows(rows)? {
        let base = variants[0];
        if base.variant_index != 0 {
            continue;
        }
        let base_answer = base.answer.with_polarity(base.polarity);
        for v in &variants[1..] {
            pairs.push(DecisionPair {
                study_id: id.to_owned(),
                variant_index: v.variant_index,
                flip: v.answer.with_polarity(v.polarity) != base_answer,
                margin_shift: (base.margin - f64::from(v.polarity) * v.margin).abs(),
                robust: base.margin.abs() >= eps && v.margin.abs() >= eps,
                variant_entropy_bits: answer_entropy_bits(v.margin),
            });
        }
    }
    Ok(pairs)
}

/// The per-study parts of G7's shares, for [`crate::stats::cluster_bootstrap`]; one part per
/// study (sorted by id), `0/0` where a study has no pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionParts {
    /// Sum of `margin_shift` / pairs.
    pub mean_margin_shift: Vec<ClusterRatio>,
    /// Rows with `|m| < eps` / rows.
    pub near_tie_share: Vec<ClusterRatio>,
    /// Pairs that flip with both margins at least `eps` / pairs.
    pub robust_flip_rate: Vec<ClusterRatio>,
    /// Pairs that flip / pairs.
    pub flip_rate: Vec<ClusterRatio>,
}

pub fn decision_parts(rows: &[DecisionRow], eps: f64) -> Result<DecisionParts, MetricError> {
    let by_study = check_rows(rows)?;
    let pairs = decision_pairs(rows, eps)?;
    let mut parts = DecisionParts { mean_margin_shift: vec![], near_tie_share: vec![], robust_flip_rate: vec![], flip_rate: vec![] };
    for (id, variants) in by_study {
        let near = variants.iter().filter(|r| r.margin.abs() < eps).count();
        parts.near_tie_share.push(ClusterRatio::new(id, near as f64, variants.len() as f64));
        let mine: Vec<&DecisionPair> = pairs.iter().filter(|p| p.study_id == id).collect();
        let n = mine.len() as f64;
        parts.mean_margin_shift.push(ClusterRatio::new(id, mine.iter().map(|p| p.margin_shift).sum(), n));
        parts.robust_flip_rate.push(ClusterRatio::new(id, mine.iter().filter(|p| p.flip && p.robust).count() as f64, n));
        parts.flip_rate.push(ClusterRatio::new(id, mine.iter().filter(|p| p.flip).count() as f64, n));
    }
    Ok(parts)
}

/// One model's G7 figures (point estimates; intervals: [`decision_parts`] with
/// [`crate::stats::cluster_bootstrap`], and [`margin_auroc_interval`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionQuality {
    pub eps: f64,
    pub rows: usize,
    pub pairs: usize,
    pub margin_auroc: Option<f64>,
    pub mean_margin_shift: Option<f64>,
    pub near_tie_share: Option<f64>,
    pub robust_flip_rate: Option<f64>,
    pub flip_rate: Option<f64>,
    /// AUROC of the variant's answer entropy as a score for "this pair flips".
    pub flip_screen_auroc: Option<f64>,
}

pub fn decision_quality(rows: &[DecisionRow], eps: f64) -> Result<DecisionQuality, MetricError> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(MetricError::Invalid(format!("near-tie eps {eps} must be finite and >= 0")));
    }
    let parts = decision_parts(rows, eps)?;
    let pairs = decision_pairs(rows, eps)?;
    let scores: Vec<f64> = pairs.iter().map(|p| p.variant_entropy_bits).collect();
    let flips: Vec<bool> = pairs.iter().map(|p| p.flip).collect();
    Ok(DecisionQuality {
        eps,
        rows: rows.len(),
        pairs: pairs.len(),
        margin_auroc: margin_auroc(rows)?,
        mean_margin_shift: ratio(&parts.mean_margin_shift),
        near_tie_share: ratio(&parts.near_tie_share),
        robust_flip_rate: ratio(&parts.robust_flip_rate),
        flip_rate: ratio(&parts.flip_rate),
        flip_screen_auroc: auroc(&scores, &flips)?,
    })
}

/// The cluster-bootstrap interval of [`margin_auroc`]: studies (or whatever `cluster_of` names:
/// the subject, for [`UNIT_SUBJECT`]) are resampled as [`crate::stats::cluster_bootstrap`] does
/// (clusters sorted by name, `m` ChaCha8 draws per resample, numpy-linear percentiles), the AUROC
/// is recomputed on the pooled rows of each resample, and resamples with an empty class are
/// dropped and counted out of `valid_resamples`. `None` when the AUROC itself has no value.
pub fn margin_auroc_interval(
    rows: &[DecisionRow],
    cluster_of: impl Fn(&DecisionRow) -> String,
    config: &BootstrapConfig,
) -> Result<Option<Interval>, MetricError> {
    let scored: Vec<(String, f64, bool)> = rows
        .iter()
        .filter(|r| matches!(r.truth, Some(Answer::Yes | Answer::No)))
        .map(|r| (cluster_of(r), r.margin, r.truth == Some(Answer::Yes)))
        .collect();
    clustered_auroc_interval(&scored, config, "margin AUROC resamples with both classes")
}

/// The cluster-bootstrap interval of `flip_screen_auroc`: the variant's answer entropy as a score
/// for "this pair flips", resampled by the study (or what `cluster_of` names) as
/// [`margin_auroc_interval`] does.
pub fn flip_screen_auroc_interval(
    pairs: &[DecisionPair],
    cluster_of: impl Fn(&DecisionPair) -> String,
    config: &BootstrapConfig,
) -> Result<Option<Interval>, MetricError> {
    let scored: Vec<(String, f64, bool)> = pairs.iter().map(|p| (cluster_of(p), p.variant_entropy_bits, p.flip)).collect();
    clustered_auroc_interval(&scored, config, "flip screen AUROC resamples with both classes")
}

/// The AUROC of `(cluster, score, label)` items with its cluster-bootstrap interval; `None` when
/// the AUROC itself has no value.
fn clustered_auroc_interval(
    scored: &[(String, f64, bool)],
    config: &BootstrapConfig,
    what: &'static str,
) -> Result<Option<Interval>, MetricError> {
    if config.resamples == 0 {
        return Err(MetricError::Invalid("bootstrap needs at least one resample".to_owned()));
    }
    if !(config.level > 0.0 && config.level < 1.0) {
        return Err(MetricError::Invalid(format!("confidence level {} is not in (0, 1)", config.level)));
    }
    if config.unit != UNIT_STUDY && config.unit != UNIT_SUBJECT {
        return Err(MetricError::Invalid(format!("bootstrap unit {:?} is neither {UNIT_STUDY:?} nor {UNIT_SUBJECT:?}", config.unit)));
    }
    let all_scores: Vec<f64> = scored.iter().map(|s| s.1).collect();
    let all_labels: Vec<bool> = scored.iter().map(|s| s.2).collect();
    let Some(estimate) = auroc(&all_scores, &all_labels)? else {
        return Ok(None);
    };
    let mut clusters: BTreeMap<&str, (Vec<f64>, Vec<bool>)> = BTreeMap::new();
    for (cluster, score, label) in scored {
        let c = clusters.entry(cluster.as_str()).or_default();
        c.0.push(*score);
        c.1.push(*label);
    }
    let clusters: Vec<_> = clusters.into_values().collect();
    let m = clusters.len();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut values = Vec::with_capacity(config.resamples as usize);
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..config.resamples {
        scores.clear();
        labels.clear();
        for _ in 0..m {
            let (s, l) = &clusters[rng.random_range(0..m)];
            scores.extend_from_slice(s);
            labels.extend_from_slice(l);
        }
        if let Some(v) = auroc(&scores, &labels)? {
            values.push(v);
        }
    }
    percentile_interval(estimate, values, config, what).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Answer::{No, Unknown, Yes};

    fn row(study: &str, v: u32, pol: i8, margin: f64, answer: Answer, truth: Answer) -> DecisionRow {
        DecisionRow { study_id: study.to_owned(), variant_index: v, polarity: pol, margin, answer, truth: Some(truth) }
    }

    #[test]
    fn auroc_counts_ties_as_half_and_needs_both_classes() {
        assert_eq!(auroc(&[1.0, 0.0], &[true, false]).unwrap(), Some(1.0));
        assert_eq!(auroc(&[1.0, 1.0], &[true, false]).unwrap(), Some(0.5));
        assert_eq!(auroc(&[3.0, 1.0, 2.0, 2.0], &[true, true, false, false]).unwrap(), Some(0.5));
        assert_eq!(auroc(&[1.0, 2.0], &[true, true]).unwrap(), None);
        assert!(auroc(&[f64::NAN, 1.0], &[true, false]).is_err());
    }

    #[test]
    fn entropy_is_one_bit_at_a_tie_and_zero_far_away() {
        assert_eq!(answer_entropy_bits(0.0), 1.0);
        assert_eq!(answer_entropy_bits(800.0), 0.0);
        assert_eq!(answer_entropy_bits(-800.0), 0.0);
        assert!((answer_entropy_bits(2.0) - answer_entropy_bits(-2.0)).abs() < 1e-15);
    }

    #[test]
    fn negated_variants_invert_answer_and_margin() {
        let rows = vec![
            row("a", 0, 1, 2.0, Yes, Yes),
            // Negated: "no" to the negated question is "yes" to the base; margin -1.5 -> +1.5.
            row("a", 1, -1, -1.5, No, No),
            row("a", 2, 1, 0.5, Unknown, Yes),
            row("b", 0, 1, -0.2, No, No),
        ];
        let pairs = decision_pairs(&rows, 1.0).unwrap();
        assert_eq!(pairs.len(), 2);
        assert!(!pairs[0].flip && pairs[0].robust);
        assert_eq!(pairs[0].margin_shift, 0.5);
        assert!(pairs[1].flip && !pairs[1].robust);
        let q = decision_quality(&rows, 1.0).unwrap();
        assert_eq!((q.flip_rate, q.robust_flip_rate, q.near_tie_share), (Some(0.5), Some(0.0), Some(0.5)));
        assert_eq!(q.margin_auroc, Some(1.0));
        let none = decision_quality(&rows[3..], 1.0).unwrap();
        assert_eq!((none.flip_rate, none.mean_margin_shift, none.flip_screen_auroc, none.margin_auroc), (None, None, None, None));
    }

    #[test]
    fn bad_rows_are_rejected() {
        assert!(decision_pairs(&[row("a", 0, 2, 1.0, Yes, Yes)], 1.0).is_err());
        assert!(decision_pairs(&[row("a", 0, 1, 1.0, Yes, Yes), row("a", 0, 1, 1.0, Yes, Yes)], 1.0).is_err());
        assert!(decision_pairs(&[row("a", 0, 1, f64::INFINITY, Yes, Yes)], 1.0).is_err());
    }

    #[test]
    fn the_auroc_interval_is_seeded_and_brackets_the_estimate() {
        let rows: Vec<DecisionRow> = (0..30)
            .flat_map(|s| {
                let truth = if s % 2 == 0 { Yes } else { No };
                let base = if s % 2 == 0 { 1.0 } else { -1.0 } * (1 + s % 5) as f64 - 0.7 * (s % 3) as f64;
                [row(&format!("s{s:02}"), 0, 1, base, Yes, truth), row(&format!("s{s:02}"), 1, 1, base + 0.3, Yes, truth)]
            })
            .collect();
        let config = BootstrapConfig { resamples: 300, ..BootstrapConfig::with_seed(4) };
        let a = margin_auroc_interval(&rows, |r| r.study_id.clone(), &config).unwrap().unwrap();
        assert_eq!(Some(a.estimate), margin_auroc(&rows).unwrap());
        assert!(a.lo <= a.estimate && a.estimate <= a.hi);
        assert_eq!(a, margin_auroc_interval(&rows, |r| r.study_id.clone(), &config).unwrap().unwrap());
        let one_class: Vec<DecisionRow> = rows.iter().filter(|r| r.truth == Some(Yes)).cloned().collect();
        assert_eq!(margin_auroc_interval(&one_class, |r| r.study_id.clone(), &config).unwrap(), None);
    }
}
