//! Comparisons: two models on the rows both answered (clustered and exact McNemar, the paired
//! accuracy difference with its interval), a model's maps of flipped versus stable variants,
//! and the studies ranked by how much the models disagree (flips, answers, map distance).

use std::collections::{BTreeMap, BTreeSet};

use radlens_shared::answer::Answer;
use radlens_shared::record::{CaseRecord, CrossModelMaps, FlipMaps, MapGroup, ModelComparison, Pass, StudyDisagreement, StudySummary};
use radlens_shared::stats::{ClusterRatio, VariantRow, mcnemar, pair_rows};

use super::{AnalysisError, Boot, Maps, ModelData, Result, summarize};

/// Clustered and exact McNemar on the rows (study, variant) that both models answered, and the
/// accuracy difference with its interval.
pub(super) fn compare_models(a: &str, b: &str, rows_a: &[VariantRow], rows_b: &[VariantRow], boot: &Boot) -> Result<ModelComparison> {
    let key = |r: &VariantRow| (r.study_id.clone(), r.variant_index);
    let keys_a: BTreeSet<_> = rows_a.iter().map(key).collect();
    let keys_b: BTreeSet<_> = rows_b.iter().map(key).collect();
    let both: BTreeSet<_> = keys_a.intersection(&keys_b).collect();
    let pa: Vec<VariantRow> = rows_a.iter().filter(|r| both.contains(&key(r))).cloned().collect();
    let pb: Vec<VariantRow> = rows_b.iter().filter(|r| both.contains(&key(r))).cloned().collect();
    let paired = pair_rows(&pa, &pb).map_err(|e| AnalysisError::records(format!("models {a} and {b}: {e}")))?;
    let test = mcnemar(&paired).map_err(|e| AnalysisError::records(format!("models {a} and {b}: {e}")))?;
    let mut per_study: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for p in &paired {
        let e = per_study.entry(&p.study_id).or_default();
        e.0 += f64::from(u8::from(p.a_correct)) - f64::from(u8::from(p.b_correct));
        e.1 += 1.0;
    }
    let n = paired.len() as f64;
    let share = |f: fn(&radlens_shared::stats::PairedRow) -> bool| (n > 0.0).then(|| paired.iter().filter(|p| f(p)).count() as f64 / n);
    Ok(ModelComparison {
        model_a: a.to_owned(),
        model_b: b.to_owned(),
        rows: paired.len(),
        studies: per_study.len(),
        accuracy_a: share(|p| p.a_correct),
        accuracy_b: share(|p| p.b_correct),
        accuracy_difference: boot.interval(per_study.into_iter().map(|(s, (n, d))| ClusterRatio::new(s, n, d)).collect())?,
        mcnemar: test,
    })
}

pub(super) fn flipped_vs_stable(data: &ModelData, maps: &Maps) -> Option<FlipMaps> {
    let (mut flipped, mut stable) = (Vec::new(), Vec::new());
    for s in &data.studies {
        let Some(study) = &s.study else { continue };
        let base = study.base().adjusted_answer();
        for (row, r) in s.rows.iter().zip(&s.records).filter(|(row, _)| row.variant_index > 0) {
            if maps.attention(&data.name, &r.sample_id).is_none() {
                continue;
            }
            let Some(m) = r.map.as_ref().map(|m| m.metrics) else {
                continue;
            };
            if row.adjusted_answer() != base { flipped.push(m) } else { stable.push(m) }
        }
    }
    if flipped.is_empty() && stable.is_empty() {
        return None;
    }
    let group = |ms: &[radlens_shared::metrics::MapMetrics]| MapGroup {
        rows: ms.len(),
        focus: summarize(&ms.iter().map(|m| m.focus).collect::<Vec<_>>()),
        gini: summarize(&ms.iter().map(|m| m.gini).collect::<Vec<_>>()),
        top10_mass: summarize(&ms.iter().map(|m| m.top10_mass).collect::<Vec<_>>()),
    };
    Some(FlipMaps { flipped: group(&flipped), stable: group(&stable) })
}

pub(super) fn disagreements(
    records: &[CaseRecord],
    studies: &[StudySummary],
    rows: &BTreeMap<String, Vec<VariantRow>>,
    cross: &[CrossModelMaps],
) -> Vec<StudyDisagreement> {
    let mut info: BTreeMap<&str, (Option<String>, String)> = BTreeMap::new();
    for r in records.iter().filter(|r| r.pass == Pass::Image) {
        let e = info.entry(&r.study_id).or_insert_with(|| (r.finding.clone(), r.image.clone()));
        if r.variant_index == 0 {
            *e = (r.finding.clone(), r.image.clone());
        }
    }
    let mut answers: BTreeMap<(&str, u32), BTreeSet<Answer>> = BTreeMap::new();
    for r in rows.values().flatten() {
        answers.entry((&r.study_id, r.variant_index)).or_default().insert(r.answer);
    }
    let mut js: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for row in cross.iter().flat_map(|c| &c.per_row) {
        js.entry(&row.study_id).or_default().push(row.js_distance);
    }
    let mut out: Vec<StudyDisagreement> = info
        .into_iter()
        .map(|(id, (finding, image))| StudyDisagreement {
            study_id: id.to_owned(),
            finding,
            image,
            flips: studies.iter().filter(|s| s.study_id == id).map(|s| s.flips).sum(),
            answer_disagreements: answers.range((id, 0)..=(id, u32::MAX)).filter(|(_, set)| set.len() > 1).count(),
            mean_js_distance: js.get(id).map(|v| v.iter().sum::<f64>() / v.len() as f64),
        })
        .collect();
    out.sort_by(|a, b| {
        (b.flips + b.answer_disagreements)
            .cmp(&(a.flips + a.answer_disagreements))
            .then(b.mean_js_distance.unwrap_or(-1.0).total_cmp(&a.mean_js_distance.unwrap_or(-1.0)))
            .then(a.study_id.cmp(&b.study_id))
    });
    out
}
