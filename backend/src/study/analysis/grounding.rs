//! The grounding figures (spec G1-G3), summarised per model and map method: agreement with the
//! occlusion reference, lift over control boxes and the share of records that beat them, and
//! the box score. Means get study-clustered intervals like every rate.

use std::collections::BTreeMap;

use radlens_shared::fusion::MapMethod;
use radlens_shared::grounding::GroundingRecord;
use radlens_shared::grounding::controls::BEATS_CONTROLS_PERCENTILE;
use radlens_shared::record::{CaseRecord, GroundingSummary};
use radlens_shared::stats::ClusterRatio;

use super::{Boot, ModelData, Result, summarize};

/// One row per map method that has grounding figures, in first-seen order.
pub(super) fn grounding_summary(data: &ModelData, boot: &Boot) -> Result<Vec<GroundingSummary>> {
    let grounded: Vec<&CaseRecord> = data.image.iter().copied().filter(|r| r.error.is_none() && r.grounding.is_some()).collect();
    let mut methods: Vec<MapMethod> = Vec::new();
    for r in &grounded {
        for m in &r.grounding.as_ref().expect("filtered").maps {
            if !methods.contains(&m.method) {
                methods.push(m.method);
            }
        }
    }
    let mut out = Vec::new();
    for method in methods {
        let rows: Vec<(&CaseRecord, &GroundingRecord)> =
            grounded.iter().filter_map(|r| Some((*r, r.grounding.as_ref()?.of(method)?))).collect();
        // Per-study (sum, count) of a per-record figure, for the bootstrap.
        let parts = |f: &dyn Fn(&GroundingRecord) -> Option<f64>| -> Vec<ClusterRatio> {
            let mut by_study: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
            for (r, g) in &rows {
                let e = by_study.entry(r.study_id.as_str()).or_default();
                if let Some(v) = f(g) {
                    e.0 += v;
                    e.1 += 1.0;
                }
            }
            by_study.into_iter().map(|(id, (num, den))| ClusterRatio::new(id, num, den)).collect()
        };
        let occl = |f: fn(&radlens_shared::grounding::OcclusionAgreement) -> Option<f64>| {
            move |g: &GroundingRecord| g.occlusion.as_ref().and_then(f)
        };
        let values = |f: &dyn Fn(&GroundingRecord) -> Option<f64>| -> Vec<f64> { rows.iter().filter_map(|(_, g)| f(g)).collect() };
        out.push(GroundingSummary {
            method,
            records: rows.len(),
            boxed_records: rows.iter().filter(|(r, _)| r.roi.is_some()).count(),
            occlusion_spearman: boot.interval(parts(&occl(|a| a.occlusion_spearman)))?,
            occlusion_topk_overlap: boot.interval(parts(&occl(|a| Some(a.occlusion_topk_overlap))))?,
            occlusion_support_mass: boot.interval(parts(&occl(|a| a.occlusion_support_mass)))?,
            roi_lift: boot.interval(parts(&|g| g.box_controls.as_ref()?.roi_lift))?,
            beats_controls: boot.interval(parts(&|g| {
                g.box_controls.as_ref()?.roi_percentile.map(|p| f64::from(u8::from(p >= BEATS_CONTROLS_PERCENTILE)))
            }))?,
            mirror_mass: summarize(&values(&|g| g.box_controls.as_ref()?.mirror_mass)),
            control_pointing: summarize(&values(&|g| g.box_controls.as_ref()?.control_pointing_mean)),
            box_iou: boot.interval(parts(&|g| g.box_score.as_ref().map(|b| b.box_iou)))?,
            box_f1: boot.interval(parts(&|g| g.box_score.as_ref().map(|b| b.box_f1)))?,
            confound_records: rows.iter().filter(|(_, g)| g.confound.is_some()).count(),
            confound_mass: boot.interval(parts(&|g| g.confound.map(|c| c.mass)))?,
            confound_uniform: summarize(&values(&|g| g.confound.map(|c| c.uniform))),
        });
    }
    Ok(out)
}
