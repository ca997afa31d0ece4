//! The image conditions (spec G6), per model: for each condition run, how often the answer
//! agrees with the real image's and how often it is right; whether the answer needs the image
//! at all (blank), follows another study's image (swap), and changes when the radiologist's box
//! is hidden but not when a control box is (causal grounding); and PSF-Med's split of the flips
//! into those the image plays no part in. The shares are the shared crate's, with intervals.

use std::collections::BTreeMap;

use radlens_shared::answer::Answer;
use radlens_shared::grounding::conditions::{
    accuracy_parts, answer_agreement_parts, causal_grounding_parts, change_parts, confound_change_parts, control_change_parts,
    image_sensitivity_parts,
};
use radlens_shared::grounding::{ConditionRow, ImageCondition};
use radlens_shared::record::{CaseRecord, ConditionAnalysis, ConditionStats, Pass};
use radlens_shared::stats::{ClusterRatio, merge_clusters};

use super::{AnalysisError, Boot, ModelData, Result, answer_of};

/// `None` when the model has no condition pass.
pub(super) fn condition_analysis(data: &ModelData, boot: &Boot) -> Result<Option<ConditionAnalysis>> {
    if data.blank.is_empty() && data.conditions.is_empty() {
        return Ok(None);
    }
    let real: BTreeMap<&str, (&CaseRecord, Answer)> =
        data.image.iter().filter(|r| r.error.is_none()).filter_map(|r| Some((r.sample_id.as_str(), (*r, answer_of(r)?)))).collect();
    let mut rows: Vec<ConditionRow> = real
        .values()
        .map(|(r, a)| ConditionRow {
            row_id: r.sample_id.clone(),
            study_id: r.study_id.clone(),
            condition: ImageCondition::Real,
            answer: *a,
            real_answer: *a,
            truth: r.ground_truth,
            real_truth: r.ground_truth,
        })
        .collect();
    for r in data.blank.iter().chain(&data.conditions) {
        let ran = r.error.is_none() && r.condition.as_ref().is_none_or(|c| c.not_run.is_none());
        let (Some((real_record, real_answer)), Some(answer), true) = (real.get(r.sample_id.as_str()), answer_of(r), ran) else {
            continue;
        };
        let condition = r.pass.condition();
        rows.push(ConditionRow {
            row_id: r.sample_id.clone(),
            study_id: r.study_id.clone(),
            condition,
            answer,
            real_answer: *real_answer,
            // The blank image has no truth (its records keep the row's, for image reliance).
            truth: if condition == ImageCondition::Blank { None } else { r.ground_truth },
            real_truth: real_record.ground_truth,
        });
    }
    let bad = |e: radlens_shared::MetricError| AnalysisError::records(format!("model {}: image conditions: {e}", data.name));
    let mut conditions = Vec::new();
    for c in ImageCondition::ALL {
        let records: Vec<&CaseRecord> = match c {
            ImageCondition::Real => data.image.clone(),
            ImageCondition::Blank => data.blank.clone(),
            _ => data.conditions.iter().copied().filter(|r| r.pass == Pass::of(c)).collect(),
        };
        if records.is_empty() {
            continue;
        }
        conditions.push(ConditionStats {
            condition: c,
            rows: rows.iter().filter(|r| r.condition == c).count(),
            not_run: records.iter().filter(|r| r.condition.as_ref().is_some_and(|x| x.not_run.is_some())).count(),
            errors: records.iter().filter(|r| r.error.is_some()).count(),
            answer_agreement: boot.interval(answer_agreement_parts(&rows, c))?,
            accuracy: boot.interval(accuracy_parts(&rows, c))?,
        });
    }
    let has = |c: ImageCondition| rows.iter().any(|r| r.condition == c);
    let (flipping, invariant) = image_invariant_flips(data);
    Ok(Some(ConditionAnalysis {
        conditions,
        image_sensitivity: if has(ImageCondition::Blank) { boot.interval(image_sensitivity_parts(&rows))? } else { None },
        visual_reliance: boot.interval(visual_reliance_parts(&rows))?,
        swap_following: boot.interval(accuracy_parts(&rows, ImageCondition::SwapOpposite))?,
        causal_grounding_rate: boot.interval(causal_grounding_parts(&rows).map_err(bad)?)?,
        control_change_rate: boot.interval(control_change_parts(&rows).map_err(bad)?)?,
        confound_change_rate: boot.interval(confound_change_parts(&rows))?,
        prior_blank_change_rate: boot.interval(change_parts(&rows, ImageCondition::PriorBlank))?,
        prior_swap_change_rate: boot.interval(change_parts(&rows, ImageCondition::PriorSwap))?,
        image_invariant_flips: boot.interval(invariant)?,
        flipping_pairs: flipping,
    }))
}

/// Per study: `sum over rows of (real correct - blank answer equals the real truth)` over the
/// rows answered both ways with a yes/no truth, so the difference of the two shares is one
/// ratio and its interval resamples both sides together.
fn visual_reliance_parts(rows: &[ConditionRow]) -> Vec<ClusterRatio> {
    let blank: BTreeMap<&str, Answer> =
        rows.iter().filter(|r| r.condition == ImageCondition::Blank).map(|r| (r.row_id.as_str(), r.answer)).collect();
    let parts: Vec<ClusterRatio> = rows
        .iter()
        .filter(|r| r.condition == ImageCondition::Real)
        .filter_map(|r| {
            let truth = r.truth.filter(|t| *t != Answer::Unknown)?;
            let b = blank.get(r.row_id.as_str())?;
            Some(ClusterRatio::new(&r.study_id, f64::from(u8::from(r.answer == truth)) - f64::from(u8::from(*b == truth)), 1.0))
        })
        .collect();
    merge_clusters(&parts)
}

/// The flipping (base, variant) pairs and, per study, how many of those whose base has a blank
/// answer keep that answer without the image.
fn image_invariant_flips(data: &ModelData) -> (usize, Vec<ClusterRatio>) {
    let mut flipping = 0;
    let mut parts = Vec::new();
    for s in &data.studies {
        let Some(study) = &s.study else { continue };
        let base = study.base();
        let (mut num, mut den) = (0.0, 0.0);
        for v in study.rephrasings() {
            if v.adjusted_answer() == base.adjusted_answer() {
                continue;
            }
            flipping += 1;
            if let Some(blank) = base.blank_image_answer {
                den += 1.0;
                num += f64::from(u8::from(blank == base.answer));
            }
        }
        parts.push(ClusterRatio::new(&s.id, num, den));
    }
    (flipping, parts)
}
