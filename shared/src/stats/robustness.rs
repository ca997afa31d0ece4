//! Per-variant rows, their grouping into studies, and the robustness statistics of the spec:
//! accuracy, flip rate (overall and per strategy), full consistency, `cs_k` and image reliance.
//!
//! Each statistic comes in two forms: `*_parts` returns one [`ClusterRatio`] per study (in the
//! order of [`group_studies`], so the parts of different statistics line up), and the plain
//! function returns [`ratio`] of those parts. A study that a statistic does not cover still gets
//! a part with `den == 0`, so the bootstrap resamples the same set of studies for every
//! statistic. A statistic whose denominators sum to zero has no value (`None`), never 0.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::MetricError;
use crate::answer::Answer;

/// One model answer to one question variant of one study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantRow {
    pub study_id: String,
    /// 0 is the base (original) question; 1.. are the rephrasings.
    pub variant_index: u32,
    /// The rephrasing strategy that produced this variant (the base's is not used).
    pub strategy: String,
    /// `+1`: same meaning as the base; `-1`: negated (the correct answer inverts).
    pub polarity: i8,
    /// The parsed model answer to this variant's question as asked.
    pub answer: Answer,
    /// The ground truth of this variant's question as asked, so already inverted for a negated
    /// variant; must be yes or no.
    pub truth: Answer,
    /// The answer of the text-only pass (image replaced by a blank one), when it was run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blank_image_answer: Option<Answer>,
}

impl VariantRow {
    /// The answer mapped back to the base question's meaning, so variants can be compared.
    pub fn adjusted_answer(&self) -> Answer {
        self.answer.with_polarity(self.polarity)
    }

    /// Whether the answer equals the truth; unknown is never correct (truth is yes or no).
    pub fn is_correct(&self) -> bool {
        self.answer == self.truth
    }
}

/// The validated variants of one study, sorted by `variant_index`; the first is the base.
#[derive(Debug, Clone, PartialEq)]
pub struct Study {
    id: String,
    variants: Vec<VariantRow>,
}

impl Study {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// All variants, sorted by `variant_index`, base first.
    pub fn variants(&self) -> &[VariantRow] {
        &self.variants
    }

    /// Variant 0; [`group_studies`] guarantees it exists.
    pub fn base(&self) -> &VariantRow {
        &self.variants[0]
    }

    /// The rephrasings (variants 1..).
    pub fn rephrasings(&self) -> &[VariantRow] {
        &self.variants[1..]
    }

    /// How many variants are answered correctly.
    pub fn correct_count(&self) -> usize {
        self.variants.iter().filter(|r| r.is_correct()).count()
    }
}

/// Groups rows into studies by `study_id`, sorted by id so that every result (and every seeded
/// bootstrap) is independent of the row order.
///
/// Rejects, with [`MetricError::Invalid`]: a polarity other than `+1`/`-1`; an unknown truth;
/// two rows with the same study and variant index; a study without variant 0; and a study whose
/// polarity-adjusted truths disagree (the sign of a negated variant's truth was not inverted),
/// since each of these would silently bias the statistics.
pub fn group_studies(rows: &[VariantRow]) -> Result<Vec<Study>, MetricError> {
    let mut by_id: BTreeMap<&str, Vec<&VariantRow>> = BTreeMap::new();
    for row in rows {
        if row.polarity != 1 && row.polarity != -1 {
            return Err(MetricError::Invalid(format!(
                "study {} variant {}: polarity is {}, must be +1 or -1",
                row.study_id, row.variant_index, row.polarity
            )));
        }
        if row.truth == Answer::Unknown {
            return Err(MetricError::Invalid(format!(
                "study {} variant {}: ground truth must be yes or no, not unknown",
                row.study_id, row.variant_index
            )));
        }
        by_id.entry(row.study_id.as_str()).or_default().push(row);
    }
    let mut studies = Vec::with_capacity(by_id.len());
    for (id, mut variants) in by_id {
        variants.sort_by_key(|r| r.variant_index);
        if let Some(pair) = variants.windows(2).find(|w| w[0].variant_index == w[1].variant_index) {
            return Err(MetricError::Invalid(format!("study {id} has two rows for variant {}", pair[0].variant_index)));
        }
        let base = variants[0];
        if base.variant_index != 0 {
            return Err(MetricError::Invalid(format!("study {id} has no base question (variant_index 0)")));
        }
        let base_truth = base.truth.with_polarity(base.polarity);
        if let Some(bad) = variants.iter().find(|r| r.truth.with_polarity(r.polarity) != base_truth) {
            return Err(MetricError::Invalid(format!(
                "study {id} variant {}: truth {:?} with polarity {} contradicts the base truth {:?}",
                bad.variant_index, bad.truth, bad.polarity, base.truth
            )));
        }
        studies.push(Study { id: id.to_owned(), variants: variants.into_iter().cloned().collect() });
    }
    Ok(studies)
}

/// One cluster's (study's or subject's) share of a statistic: the statistic is
/// `sum num / sum den` over clusters, which is what the cluster bootstrap recomputes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRatio {
    pub cluster: String,
    pub num: f64,
    pub den: f64,
}

impl ClusterRatio {
    pub fn new(cluster: impl Into<String>, num: f64, den: f64) -> Self {
        Self { cluster: cluster.into(), num, den }
    }
}

/// `sum num / sum den`; `None` when the denominators sum to zero (the statistic has no value).
pub fn ratio(parts: &[ClusterRatio]) -> Option<f64> {
    let (num, den) = parts.iter().fold((0.0, 0.0), |(n, d), p| (n + p.num, d + p.den));
    (den != 0.0).then(|| num / den)
}

/// Sums the parts that share a cluster name, sorted by name. Relabel each part's `cluster`
/// with its subject id first to bootstrap with the subject as the unit: ratios of sums stay
/// the same statistic under merging.
pub fn merge_clusters(parts: &[ClusterRatio]) -> Vec<ClusterRatio> {
    let mut merged: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for p in parts {
        let e = merged.entry(p.cluster.as_str()).or_insert((0.0, 0.0));
        e.0 += p.num;
        e.1 += p.den;
    }
    merged.into_iter().map(|(c, (num, den))| ClusterRatio::new(c, num, den)).collect()
}

/// Accuracy parts: correct rows / rows per study (row-pooled over the data set).
pub fn accuracy_parts(studies: &[Study]) -> Vec<ClusterRatio> {
    studies.iter().map(|s| ClusterRatio::new(&s.id, s.correct_count() as f64, s.variants.len() as f64)).collect()
}

/// Share of rows whose answer equals the truth (unknown is wrong).
pub fn accuracy(studies: &[Study]) -> Option<f64> {
    ratio(&accuracy_parts(studies))
}

/// Flip parts: per study, (base, variant i >= 1) pairs whose polarity-adjusted answers differ /
/// all such pairs. Unknown against yes or no is a flip; unknown against unknown is not.
pub fn flip_parts(studies: &[Study]) -> Vec<ClusterRatio> {
    flip_parts_where(studies, |_| true)
}

/// [`flip_parts`] restricted to the pairs whose variant (not base) used `strategy`.
pub fn flip_parts_for_strategy(studies: &[Study], strategy: &str) -> Vec<ClusterRatio> {
    flip_parts_where(studies, |r| r.strategy == strategy)
}

fn flip_parts_where(studies: &[Study], keep: impl Fn(&VariantRow) -> bool) -> Vec<ClusterRatio> {
    studies
        .iter()
        .map(|s| {
            let base = s.base().adjusted_answer();
            let (mut flips, mut pairs) = (0usize, 0usize);
            for v in s.rephrasings().iter().filter(|r| keep(r)) {
                pairs += 1;
                flips += usize::from(v.adjusted_answer() != base);
            }
            ClusterRatio::new(&s.id, flips as f64, pairs as f64)
        })
        .collect()
}

/// Pair-weighted share of (base, rephrasing) pairs whose polarity-adjusted answers differ.
pub fn flip_rate(studies: &[Study]) -> Option<f64> {
    ratio(&flip_parts(studies))
}

/// The distinct strategies of the rephrasings (variants 1..), sorted.
pub fn strategies(studies: &[Study]) -> Vec<String> {
    let set: BTreeSet<&str> = studies.iter().flat_map(|s| s.rephrasings().iter().map(|r| r.strategy.as_str())).collect();
    set.into_iter().map(str::to_owned).collect()
}

/// Flip rate per strategy of the variant. Every listed strategy has at least one pair, so each
/// has a value.
pub fn flip_rate_by_strategy(studies: &[Study]) -> BTreeMap<String, f64> {
    strategies(studies).into_iter().filter_map(|st| ratio(&flip_parts_for_strategy(studies, &st)).map(|r| (st, r))).collect()
}

/// Full-consistency parts: 1/1 for a study with >= 2 variants whose polarity-adjusted answers
/// are all equal, 0/1 when they are not, 0/0 for a single-variant study (not covered).
pub fn full_consistency_parts(studies: &[Study]) -> Vec<ClusterRatio> {
    studies
        .iter()
        .map(|s| {
            if s.variants.len() < 2 {
                return ClusterRatio::new(&s.id, 0.0, 0.0);
            }
            let base = s.base().adjusted_answer();
            let all_equal = s.rephrasings().iter().all(|r| r.adjusted_answer() == base);
            ClusterRatio::new(&s.id, f64::from(u8::from(all_equal)), 1.0)
        })
        .collect()
}

/// Share of studies (with >= 2 variants) whose polarity-adjusted answers are all equal.
pub fn full_consistency(studies: &[Study]) -> Option<f64> {
    ratio(&full_consistency_parts(studies))
}

/// The VQA-Rephrasings consensus score of one study with `n` variants of which `correct` are
/// correct: `C(correct, k) / C(n, k)`, the chance that `k` variants drawn without replacement
/// are all correct. `None` when `n < k` (the study cannot be scored) or `correct > n`.
pub fn consensus_score(n: usize, correct: usize, k: usize) -> Option<f64> {
    if n < k || correct > n {
        return None;
    }
    // prod_{i<k} (c - i) / (n - i) equals C(c,k)/C(n,k) without overflowing factorials.
    Some((0..k).map(|i| correct.saturating_sub(i) as f64 / (n - i) as f64).product())
}

/// `cs_k` parts: `C(c,k)/C(n,k)` over 1 for each study with `n >= k` variants, 0/0 otherwise.
/// `k` must be at least 1.
pub fn cs_k_parts(studies: &[Study], k: u32) -> Result<Vec<ClusterRatio>, MetricError> {
    if k == 0 {
        return Err(MetricError::Invalid("cs_k needs k >= 1".to_owned()));
    }
    let k = k as usize;
    Ok(studies
        .iter()
        .map(|s| match consensus_score(s.variants.len(), s.correct_count(), k) {
            Some(score) => ClusterRatio::new(&s.id, score, 1.0),
            None => ClusterRatio::new(&s.id, 0.0, 0.0),
        })
        .collect())
}

/// Mean consensus score over studies with at least `k` variants; `cs_1` is the study-weighted
/// accuracy (which differs from the row-pooled [`accuracy`] when studies differ in size).
pub fn cs_k(studies: &[Study], k: u32) -> Result<Option<f64>, MetricError> {
    Ok(ratio(&cs_k_parts(studies, k)?))
}

/// Image-reliance parts: per study, rows whose answer differs from the blank-image (text-only)
/// answer / rows that have a blank-image answer.
pub fn image_reliance_parts(studies: &[Study]) -> Vec<ClusterRatio> {
    studies
        .iter()
        .map(|s| {
            let (mut changed, mut with_blank) = (0usize, 0usize);
            for r in &s.variants {
                if let Some(blank) = r.blank_image_answer {
                    with_blank += 1;
                    changed += usize::from(r.answer != blank);
                }
            }
            ClusterRatio::new(&s.id, changed as f64, with_blank as f64)
        })
        .collect()
}

/// Share of rows (among those with a text-only answer) whose answer changes when the image is
/// replaced by a blank one. Consistent rows that are not image-reliant are the "dangerous"
/// quadrant: stable answers that ignore the image.
pub fn image_reliance(studies: &[Study]) -> Option<f64> {
    ratio(&image_reliance_parts(studies))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use Answer::{No, Unknown, Yes};

    const GOLDEN: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/metrics-golden.json"));

    pub(crate) fn row(study: &str, idx: u32, strategy: &str, pol: i8, ans: Answer, truth: Answer) -> VariantRow {
        VariantRow {
            study_id: study.to_owned(),
            variant_index: idx,
            strategy: strategy.to_owned(),
            polarity: pol,
            answer: ans,
            truth,
            blank_image_answer: None,
        }
    }

    fn with_blank(mut r: VariantRow, blank: Answer) -> VariantRow {
        r.blank_image_answer = Some(blank);
        r
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// The "stats" object of the golden file.
    pub(crate) fn golden_stats() -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(GOLDEN).expect("golden file parses");
        v["stats"].clone()
    }

    /// Rows of one model in the golden table: truth yes, answer yes where correct, no where not.
    fn golden_rows(stats: &serde_json::Value, key: &str) -> Vec<VariantRow> {
        let mut rows = Vec::new();
        for st in stats["studies"].as_array().expect("studies array") {
            let id = st["study_id"].as_str().expect("study id");
            for (i, c) in st[key].as_array().expect("flags").iter().enumerate() {
                let ans = if c.as_i64() == Some(1) { Yes } else { No };
                rows.push(row(id, i as u32, "golden", 1, ans, Yes));
            }
        }
        rows
    }

    #[test]
    fn accuracy_is_the_row_share_of_answers_equal_to_truth_and_unknown_is_wrong() {
        let rows = [
            row("a", 0, "original", 1, Yes, Yes),
            row("a", 1, "synonym", 1, Unknown, Yes),
            row("a", 2, "negation", -1, No, No),
            row("b", 0, "original", 1, No, Yes),
            row("b", 1, "synonym", 1, Yes, Yes),
        ];
        let studies = group_studies(&rows).unwrap();
        assert_eq!(accuracy(&studies), Some(3.0 / 5.0));
        let parts = accuracy_parts(&studies);
        assert_eq!(parts, vec![ClusterRatio::new("a", 2.0, 3.0), ClusterRatio::new("b", 1.0, 2.0)]);
    }

    #[test]
    fn a_negated_variant_answered_with_the_inverted_answer_is_not_a_flip() {
        // Base "is there an effusion?" -> yes; negated "is there no effusion?" -> no: consistent.
        let rows = [row("s", 0, "original", 1, Yes, Yes), row("s", 1, "negation", -1, No, No)];
        let studies = group_studies(&rows).unwrap();
        assert_eq!(flip_rate(&studies), Some(0.0));
        assert_eq!(full_consistency(&studies), Some(1.0));
    }

    #[test]
    fn a_negated_variant_answered_with_the_same_raw_answer_is_a_flip() {
        let rows = [row("s", 0, "original", 1, Yes, Yes), row("s", 1, "negation", -1, Yes, No)];
        let studies = group_studies(&rows).unwrap();
        assert_eq!(flip_rate(&studies), Some(1.0));
        assert_eq!(full_consistency(&studies), Some(0.0));
    }

    #[test]
    fn unknown_stays_unknown_under_negation_and_flips_against_a_yes_no_base() {
        assert_eq!(Unknown.with_polarity(-1), Unknown);
        assert_eq!(Yes.with_polarity(-1), No);
        assert_eq!(No.with_polarity(1), No);
        let rows = [
            row("s", 0, "original", 1, No, No),
            row("s", 1, "negation", -1, Unknown, Yes),
            row("s", 2, "synonym", 1, Unknown, No),
            // Both unknown: the answers agree, so no flip.
            row("t", 0, "original", 1, Unknown, No),
            row("t", 1, "negation", -1, Unknown, Yes),
        ];
        let studies = group_studies(&rows).unwrap();
        let parts = flip_parts(&studies);
        assert_eq!(parts, vec![ClusterRatio::new("s", 2.0, 2.0), ClusterRatio::new("t", 0.0, 1.0)]);
        assert_eq!(flip_rate(&studies), Some(2.0 / 3.0));
    }

    #[test]
    fn flip_rate_is_pair_weighted_and_split_by_the_variant_strategy() {
        let rows = [
            // Study a: 3 pairs, 1 flip (synonym).
            row("a", 0, "original", 1, Yes, Yes),
            row("a", 1, "synonym", 1, No, Yes),
            row("a", 2, "negation", -1, No, No),
            row("a", 3, "synonym", 1, Yes, Yes),
            // Study b: 1 pair, 1 flip (negation).
            row("b", 0, "original", 1, No, No),
            row("b", 1, "negation", -1, No, Yes),
        ];
        let studies = group_studies(&rows).unwrap();
        // Pair-weighted: 2 flips / 4 pairs, not the study mean (1/3 + 1) / 2.
        assert_eq!(flip_rate(&studies), Some(0.5));
        assert_eq!(strategies(&studies), vec!["negation".to_owned(), "synonym".to_owned()]);
        let by = flip_rate_by_strategy(&studies);
        assert_eq!(by.get("synonym"), Some(&0.5));
        assert_eq!(by.get("negation"), Some(&0.5));
        assert_eq!(by.get("original"), None, "the base's strategy is not a variant strategy");
        assert_eq!(flip_parts_for_strategy(&studies, "negation"), vec![ClusterRatio::new("a", 0.0, 1.0), ClusterRatio::new("b", 1.0, 1.0)]);
    }

    #[test]
    fn full_consistency_counts_studies_with_two_or_more_variants_only() {
        let rows = [
            row("a", 0, "original", 1, Yes, Yes),
            row("a", 1, "synonym", 1, Yes, Yes),
            row("a", 2, "negation", -1, No, No),
            row("b", 0, "original", 1, Yes, Yes),
            row("b", 1, "synonym", 1, Unknown, Yes),
            row("c", 0, "original", 1, No, Yes),
        ];
        let studies = group_studies(&rows).unwrap();
        assert_eq!(
            full_consistency_parts(&studies),
            vec![ClusterRatio::new("a", 1.0, 1.0), ClusterRatio::new("b", 0.0, 1.0), ClusterRatio::new("c", 0.0, 0.0),]
        );
        assert_eq!(full_consistency(&studies), Some(0.5));
    }

    #[test]
    fn statistics_without_a_denominator_have_no_value_rather_than_zero() {
        let studies = group_studies(&[row("only", 0, "original", 1, Yes, Yes)]).unwrap();
        assert_eq!(flip_rate(&studies), None);
        assert_eq!(full_consistency(&studies), None);
        assert_eq!(image_reliance(&studies), None);
        assert_eq!(cs_k(&studies, 2).unwrap(), None);
        assert!(flip_rate_by_strategy(&studies).is_empty());
        assert_eq!(accuracy(&[]), None);
        assert_eq!(ratio(&[]), None);
    }

    #[test]
    fn consensus_score_is_the_chance_that_k_drawn_variants_are_all_correct() {
        assert_eq!(consensus_score(3, 2, 1), Some(2.0 / 3.0));
        assert_eq!(consensus_score(3, 2, 2), Some(1.0 / 3.0)); // C(2,2)/C(3,2)
        assert_eq!(consensus_score(3, 2, 3), Some(0.0));
        assert!(close(consensus_score(6, 4, 3).unwrap(), 4.0 / 20.0, 1e-15)); // C(4,3)/C(6,3)
        assert_eq!(consensus_score(2, 2, 3), None);
        assert_eq!(consensus_score(2, 3, 1), None);
    }

    #[test]
    fn cs_k_averages_over_studies_with_at_least_k_variants() {
        let rows = [
            // n = 3, c = 2
            row("a", 0, "original", 1, Yes, Yes),
            row("a", 1, "synonym", 1, Yes, Yes),
            row("a", 2, "synonym", 1, No, Yes),
            // n = 2, c = 2
            row("b", 0, "original", 1, No, No),
            row("b", 1, "negation", -1, Yes, Yes),
        ];
        let studies = group_studies(&rows).unwrap();
        assert!(close(cs_k(&studies, 1).unwrap().unwrap(), (2.0 / 3.0 + 1.0) / 2.0, 1e-15));
        assert!(close(cs_k(&studies, 2).unwrap().unwrap(), (1.0 / 3.0 + 1.0) / 2.0, 1e-15));
        // Only study a has 3 variants.
        assert_eq!(cs_k(&studies, 3).unwrap(), Some(0.0));
        assert_eq!(cs_k(&studies, 4).unwrap(), None);
        // cs_1 is study-weighted, accuracy is row-pooled.
        assert_eq!(accuracy(&studies), Some(4.0 / 5.0));
        assert!(matches!(cs_k(&studies, 0), Err(MetricError::Invalid(_))));
    }

    #[test]
    fn image_reliance_is_the_share_of_rows_whose_answer_changes_without_the_image() {
        let rows = [
            with_blank(row("a", 0, "original", 1, Yes, Yes), Yes),
            with_blank(row("a", 1, "synonym", 1, Yes, Yes), No),
            row("a", 2, "synonym", 1, No, Yes), // no text-only pass: not counted
            with_blank(row("b", 0, "original", 1, Unknown, No), No),
            // Compared raw: both passes saw the same negated question.
            with_blank(row("b", 1, "negation", -1, Yes, Yes), Yes),
        ];
        let studies = group_studies(&rows).unwrap();
        assert_eq!(image_reliance_parts(&studies), vec![ClusterRatio::new("a", 1.0, 2.0), ClusterRatio::new("b", 1.0, 2.0)]);
        assert_eq!(image_reliance(&studies), Some(0.5));
    }

    #[test]
    fn studies_are_sorted_by_id_and_variants_by_index_whatever_the_row_order() {
        let rows = [row("z", 1, "synonym", 1, No, Yes), row("a", 0, "original", 1, Yes, Yes), row("z", 0, "original", 1, Yes, Yes)];
        let studies = group_studies(&rows).unwrap();
        assert_eq!(studies.iter().map(Study::id).collect::<Vec<_>>(), ["a", "z"]);
        assert_eq!(studies[1].base().variant_index, 0);
        assert_eq!(studies[1].rephrasings().len(), 1);
        let mut reversed = rows.to_vec();
        reversed.reverse();
        assert_eq!(group_studies(&reversed).unwrap(), studies);
    }

    #[test]
    fn malformed_studies_are_rejected() {
        let invalid = |rows: &[VariantRow]| matches!(group_studies(rows), Err(MetricError::Invalid(_)));
        assert!(invalid(&[row("s", 1, "synonym", 1, Yes, Yes)]), "no base");
        assert!(invalid(&[row("s", 0, "original", 1, Yes, Yes), row("s", 0, "original", 1, No, Yes)]));
        assert!(invalid(&[row("s", 0, "original", 0, Yes, Yes)]), "polarity 0");
        assert!(invalid(&[row("s", 0, "original", 2, Yes, Yes)]), "polarity 2");
        assert!(invalid(&[row("s", 0, "original", 1, Yes, Unknown)]), "unknown truth");
        // A negated variant whose truth was not inverted.
        assert!(invalid(&[row("s", 0, "original", 1, Yes, Yes), row("s", 1, "negation", -1, No, Yes)]));
        assert_eq!(group_studies(&[]).unwrap(), vec![]);
    }

    #[test]
    fn parts_of_all_statistics_line_up_one_per_study() {
        let rows = [row("a", 0, "original", 1, Yes, Yes), row("b", 0, "original", 1, Yes, Yes), row("b", 1, "synonym", 1, Yes, Yes)];
        let studies = group_studies(&rows).unwrap();
        let ids = |p: Vec<ClusterRatio>| p.into_iter().map(|c| c.cluster).collect::<Vec<_>>();
        let want = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(ids(accuracy_parts(&studies)), want);
        assert_eq!(ids(flip_parts(&studies)), want);
        assert_eq!(ids(full_consistency_parts(&studies)), want);
        assert_eq!(ids(cs_k_parts(&studies, 3).unwrap()), want);
        assert_eq!(ids(image_reliance_parts(&studies)), want);
    }

    #[test]
    fn merging_clusters_sums_parts_and_keeps_the_ratio() {
        let parts = [ClusterRatio::new("s2", 1.0, 2.0), ClusterRatio::new("s1", 0.0, 1.0), ClusterRatio::new("s2", 2.0, 2.0)];
        let merged = merge_clusters(&parts);
        assert_eq!(merged, vec![ClusterRatio::new("s1", 0.0, 1.0), ClusterRatio::new("s2", 3.0, 4.0)]);
        assert_eq!(ratio(&merged), ratio(&parts));
    }

    #[test]
    fn golden_cs_k_and_row_pooled_accuracy_of_model_a() {
        let stats = golden_stats();
        let studies = group_studies(&golden_rows(&stats, "a_correct")).unwrap();
        assert_eq!(studies.len(), 30);
        let want_acc = stats["accuracy_model_a"].as_f64().unwrap();
        assert!(close(accuracy(&studies).unwrap(), want_acc, 1e-9));
        for k in 1..=3u32 {
            let want = stats["cs_k_model_a"][k.to_string()].as_f64().unwrap();
            let got = cs_k(&studies, k).unwrap().unwrap();
            assert!(close(got, want, 1e-9), "cs_{k}: {got} vs {want}");
        }
    }
}
