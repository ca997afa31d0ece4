//! Decision quality (spec G7), per model and per rephrasing strategy: does the yes-minus-no
//! margin separate yes from no (margin AUROC), would a near tie or a high answer entropy have
//! warned of a flip (near-tie share, robust flip rate, flip screen AUROC), and how accuracy
//! grows with `|m|` (reliability). Only rows that pass the yes/no filter count: a closed yes/no
//! question ([`is_yes_no_question`]) with a yes/no truth; the others are counted.

use radlens_shared::answer::{Answer, is_yes_no_question};
use radlens_shared::grounding::{
    DecisionRow, answer_entropy_bits, decision_pairs, decision_parts, flip_screen_auroc_interval, margin_auroc_interval,
};
use radlens_shared::record::{CaseRecord, DecisionSummary, ReliabilityBin};
use radlens_shared::stats::{ClusterRatio, merge_clusters};

use super::{AnalysisError, Boot, ModelData, Result, answer_of, summarize};

/// Lower edges of the reliability bins on `|m|` (the last has no upper edge).
pub const RELIABILITY_EDGES: [f64; 6] = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0];

/// `strategy`: only the base rows and the variants of that strategy. `None` when no row has a
/// margin.
pub(super) fn decision_summary(data: &ModelData, boot: &Boot, eps: f64, strategy: Option<&str>) -> Result<Option<DecisionSummary>> {
    let mut rows = Vec::new();
    let mut not_yes_no = 0;
    for r in data.image.iter().filter(|r| r.error.is_none()) {
        if strategy.is_some_and(|st| r.variant_index != 0 && r.strategy != st) {
            continue;
        }
        let (Some(margin), Some(answer)) = (r.yes_no_margin.filter(|m| m.is_finite()), answer_of(r)) else { continue };
        let truth = r.ground_truth.filter(|t| *t != Answer::Unknown);
        if truth.is_none() || !is_yes_no_question(&r.question) || !(r.polarity == 1 || r.polarity == -1) {
            not_yes_no += 1;
            continue;
        }
        rows.push((
            *r,
            DecisionRow { study_id: r.study_id.clone(), variant_index: r.variant_index, polarity: r.polarity, margin, answer, truth },
        ));
    }
    if rows.is_empty() {
        return Ok(None);
    }
    let bad = |e: radlens_shared::MetricError| AnalysisError::records(format!("model {}: decision quality: {e}", data.name));
    let decision: Vec<DecisionRow> = rows.iter().map(|(_, d)| d.clone()).collect();
    let parts = decision_parts(&decision, eps).map_err(bad)?;
    let pairs = decision_pairs(&decision, eps).map_err(bad)?;
    let cluster = |study: &str| boot.cluster_of(study);
    Ok(Some(DecisionSummary {
        eps,
        rows: decision.len(),
        pairs: pairs.len(),
        not_yes_no,
        margin_auroc: margin_auroc_interval(&decision, |r| cluster(&r.study_id), &boot.config).map_err(bad)?,
        flip_screen_auroc: flip_screen_auroc_interval(&pairs, |p| cluster(&p.study_id), &boot.config).map_err(bad)?,
        mean_margin_shift: boot.interval(parts.mean_margin_shift)?,
        near_tie_share: boot.interval(parts.near_tie_share)?,
        robust_flip_rate: boot.interval(parts.robust_flip_rate)?,
        flip_rate: boot.interval(parts.flip_rate)?,
        answer_entropy_bits: summarize(&decision.iter().map(|d| answer_entropy_bits(d.margin)).collect::<Vec<_>>()),
        reliability: reliability(&rows, boot)?,
    }))
}

fn reliability(rows: &[(&CaseRecord, DecisionRow)], boot: &Boot) -> Result<Vec<ReliabilityBin>> {
    let mut out = Vec::new();
    for (i, &lo) in RELIABILITY_EDGES.iter().enumerate() {
        let hi = RELIABILITY_EDGES.get(i + 1).copied();
        let inside = |m: f64| m.abs() >= lo && hi.is_none_or(|h| m.abs() < h);
        let members: Vec<&DecisionRow> = rows.iter().map(|(_, d)| d).filter(|d| inside(d.margin)).collect();
        let parts: Vec<ClusterRatio> =
            members.iter().map(|d| ClusterRatio::new(&d.study_id, f64::from(u8::from(Some(d.answer) == d.truth)), 1.0)).collect();
        out.push(ReliabilityBin { lo, hi, rows: members.len(), accuracy: boot.interval(merge_clusters(&parts))? });
    }
    Ok(out)
}
