//! Robustness of the answers, per model: each study's part of accuracy, flip rate and full
//! consistency (the shared crate's definitions), the same rates by rephrasing strategy and by
//! finding, text-only (blank-image) accuracy and image reliance with its four quadrants, and
//! the answer margins and latencies. Every rate is a ratio of per-study sums whose interval
//! comes from `Boot::interval`.

use std::collections::{BTreeMap, BTreeSet};

use radlens_shared::record::{CaseRecord, GroupStats, ImageReliance, LatencySummary, MarginSummary, QuadrantShare};
use radlens_shared::stats::{ClusterRatio, Interval, Study, VariantRow, flip_parts, flip_parts_for_strategy, full_consistency_parts};

use super::{Boot, ModelData, NO_FINDING, Result, StudyRows, scorable, summarize};

/// The shared crate's per-study part of a statistic of a validated study; `(0, 0)` for a study
/// without a base, which that statistic does not cover.
fn study_part(s: &StudyRows, f: impl Fn(&[Study]) -> Vec<ClusterRatio>) -> (f64, f64) {
    match &s.study {
        Some(study) => f(std::slice::from_ref(study)).first().map_or((0.0, 0.0), |p| (p.num, p.den)),
        None => (0.0, 0.0),
    }
}

pub(super) fn accuracy_part(s: &StudyRows) -> (f64, f64) {
    (s.correct() as f64, s.rows.len() as f64)
}

pub(super) fn flip_part(s: &StudyRows) -> (f64, f64) {
    study_part(s, flip_parts)
}

pub(super) fn consistency_part(s: &StudyRows) -> (f64, f64) {
    study_part(s, full_consistency_parts)
}

/// Whether the study is fully consistent (`None` when not covered: no base or < 2 variants).
pub(super) fn fully_consistent(s: &StudyRows) -> Option<bool> {
    let (num, den) = consistency_part(s);
    (den > 0.0).then_some(num > 0.0)
}

/// At least one row changed its answer without the image (`None` without text-only answers).
pub(super) fn image_reliant(s: &StudyRows) -> Option<bool> {
    let with_blank: Vec<&VariantRow> = s.rows.iter().filter(|r| r.blank_image_answer.is_some()).collect();
    (!with_blank.is_empty()).then(|| with_blank.iter().any(|r| Some(r.answer) != r.blank_image_answer))
}

/// Accuracy of each strategy's rows (the base's strategy included) and the flip rate of the
/// pairs whose variant used it. Every study is a cluster (a study without that strategy has a
/// 0/0 part), as the shared statistics do, so the strategies' intervals resample the same
/// studies.
pub(super) fn by_strategy(data: &ModelData, boot: &Boot) -> Result<BTreeMap<String, GroupStats>> {
    let strategies: BTreeSet<&str> = data.rows.iter().map(|r| r.strategy.as_str()).collect();
    let mut out = BTreeMap::new();
    for st in strategies {
        let of = |s: &StudyRows| s.rows.iter().filter(|r| r.strategy == st).count();
        let accuracy = boot.interval(data.parts(|s| {
            let rows: Vec<&VariantRow> = s.rows.iter().filter(|r| r.strategy == st).collect();
            (rows.iter().filter(|r| r.is_correct()).count() as f64, rows.len() as f64)
        }))?;
        let flip_rate = boot.interval(data.parts(|s| study_part(s, |x| flip_parts_for_strategy(x, st))))?;
        out.insert(
            st.to_owned(),
            GroupStats {
                rows: data.studies.iter().map(of).sum(),
                studies: data.studies.iter().filter(|s| of(s) > 0).count(),
                accuracy,
                flip_rate,
                full_consistency: None,
            },
        );
    }
    Ok(out)
}

/// Rates of the studies of each finding (the base row's finding). Only that finding's studies
/// are resampled: the interval is conditional on the finding.
pub(super) fn by_finding(data: &ModelData, boot: &Boot) -> Result<BTreeMap<String, GroupStats>> {
    let mut groups: BTreeMap<String, Vec<&StudyRows>> = BTreeMap::new();
    for s in &data.studies {
        groups.entry(s.finding.clone().unwrap_or_else(|| NO_FINDING.to_owned())).or_default().push(s);
    }
    let mut out = BTreeMap::new();
    for (finding, studies) in groups {
        let parts = |f: fn(&StudyRows) -> (f64, f64)| -> Vec<ClusterRatio> {
            studies
                .iter()
                .map(|s| {
                    let (n, d) = f(s);
                    ClusterRatio::new(&s.id, n, d)
                })
                .collect()
        };
        out.insert(
            finding,
            GroupStats {
                rows: studies.iter().map(|s| s.rows.len()).sum(),
                studies: studies.len(),
                accuracy: boot.interval(parts(accuracy_part))?,
                flip_rate: boot.interval(parts(flip_part))?,
                full_consistency: boot.interval(parts(consistency_part))?,
            },
        );
    }
    Ok(out)
}

pub(super) fn blank_image_accuracy(data: &ModelData, boot: &Boot) -> Result<Option<Interval>> {
    let mut per_study: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for r in &data.blank {
        if let Some((answer, truth)) = scorable(r) {
            let e = per_study.entry(&r.study_id).or_default();
            e.0 += f64::from(u8::from(answer == truth));
            e.1 += 1.0;
        }
    }
    boot.interval(per_study.into_iter().map(|(id, (n, d))| ClusterRatio::new(id, n, d)).collect())
}

/// See [`ImageReliance`] for the definitions. `None` when the model has no text-only records.
pub(super) fn image_reliance(data: &ModelData, boot: &Boot) -> Result<Option<ImageReliance>> {
    if data.blank.is_empty() {
        return Ok(None);
    }
    let rate = boot.interval(data.parts(|s| {
        let with_blank: Vec<&VariantRow> = s.rows.iter().filter(|r| r.blank_image_answer.is_some()).collect();
        let changed = with_blank.iter().filter(|r| Some(r.answer) != r.blank_image_answer).count();
        (changed as f64, with_blank.len() as f64)
    }))?;
    let quadrant = |s: &StudyRows| -> Option<(bool, bool)> { Some((fully_consistent(s)?, image_reliant(s)?)) };
    let share = |want: (bool, bool)| -> Result<QuadrantShare> {
        let parts = data.parts(|s| match quadrant(s) {
            Some(q) => (f64::from(u8::from(q == want)), 1.0),
            None => (0.0, 0.0),
        });
        Ok(QuadrantShare { studies: data.studies.iter().filter(|s| quadrant(s) == Some(want)).count(), share: boot.interval(parts)? })
    };
    Ok(Some(ImageReliance {
        rows: data.rows.iter().filter(|r| r.blank_image_answer.is_some()).count(),
        rate,
        studies: data.studies.iter().filter(|s| quadrant(s).is_some()).count(),
        consistent_reliant: share((true, true))?,
        consistent_not_reliant: share((true, false))?,
        inconsistent_reliant: share((false, true))?,
        inconsistent_not_reliant: share((false, false))?,
    }))
}

pub(super) fn margins(data: &ModelData) -> Option<MarginSummary> {
    let mut all = Vec::new();
    let (mut correct, mut wrong) = (Vec::new(), Vec::new());
    for s in &data.studies {
        for (row, r) in s.rows.iter().zip(&s.records) {
            let Some(m) = r.yes_no_margin.filter(|m| m.is_finite()) else {
                continue;
            };
            all.push(m);
            if row.is_correct() { correct.push(m) } else { wrong.push(m) }
        }
    }
    Some(MarginSummary { all: summarize(&all)?, correct: summarize(&correct), wrong: summarize(&wrong) })
}

pub(super) fn latency(image: &[&CaseRecord]) -> LatencySummary {
    let ok: Vec<_> = image.iter().filter(|r| r.error.is_none()).map(|r| r.latency).collect();
    let of = |f: fn(&radlens_shared::record::Latency) -> f64| summarize(&ok.iter().map(f).collect::<Vec<_>>());
    LatencySummary {
        preprocess_ms: of(|l| l.preprocess_ms),
        image_encode_ms: of(|l| l.image_encode_ms),
        prefill_ms: of(|l| l.prefill_ms),
        decode_ms: of(|l| l.decode_ms),
        capture_ms: of(|l| l.capture_ms),
        total_ms: of(|l| l.total_ms),
    }
}
