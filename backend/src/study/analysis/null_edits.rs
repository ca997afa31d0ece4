//! The null edits (spec G4): per study and edit whether the maps move more under an edit that
//! means nothing than under rewording the question (paraphrase-to-null < 1), and per model and
//! edit how often the answer changes and how far the margin and the map move.

use std::collections::BTreeMap;

use radlens_shared::grounding::{NullEdit, NullEditRecord, NullEditStudy, null_edit_study_from_distances};
use radlens_shared::metrics::js_divergence_maps;
use radlens_shared::record::{CaseRecord, NullEditSummary, StudySummary};
use radlens_shared::stats::ClusterRatio;

use super::{Boot, Maps, ModelData, Result, summarize};

/// The record's figures under `edit`, on its own map.
fn edit_of(r: &CaseRecord, edit: NullEdit) -> Option<&NullEditRecord> {
    let own = r.map.as_ref()?.provenance.method;
    r.grounding.as_ref()?.of(own)?.null_edits.iter().find(|e| e.edit == edit)
}

/// The study's G4 figures per edit its records have. Both distances are taken over the records
/// whose map is attention (not a fallback), so like meets like: the paraphrase distances from the
/// base variant's map to each other variant's, the null distances as the records keep them.
pub(super) fn study_null_edits(data: &ModelData, study_id: &str, maps: &Maps, notes: &mut Vec<String>) -> Vec<NullEditStudy> {
    let records: Vec<&CaseRecord> = data
        .image
        .iter()
        .copied()
        .filter(|r| r.study_id == study_id && r.error.is_none() && maps.attention(&data.name, &r.sample_id).is_some())
        .collect();
    let Some(base) = records.iter().find(|r| r.variant_index == 0) else { return Vec::new() };
    let base_map = maps.attention(&data.name, &base.sample_id).expect("filtered on having a map");
    let mut paraphrase = Vec::new();
    for r in records.iter().filter(|r| r.variant_index != 0) {
        let m = maps.attention(&data.name, &r.sample_id).expect("filtered on having a map");
        match js_divergence_maps(base_map, m) {
            Ok(d) => paraphrase.push(d.sqrt()),
            Err(e) => notes.push(format!("model {}, study {study_id}: paraphrase distance of {}: {e}", data.name, r.sample_id)),
        }
    }
    let mut out = Vec::new();
    for edit in NullEdit::ALL {
        let null: Vec<f64> = records.iter().filter_map(|r| edit_of(r, edit)).map(|e| e.js_distance).collect();
        if null.is_empty() {
            continue;
        }
        match null_edit_study_from_distances(edit, &paraphrase, &null) {
            Ok(s) => out.push(s),
            Err(e) => notes.push(format!("model {}, study {study_id}: {edit}: {e}", data.name)),
        }
    }
    out
}

/// One row per edit that some record has, in [`NullEdit::ALL`] order; the study figures come
/// from `summaries` (this model's [`study_null_edits`]).
pub(super) fn null_edit_summaries(data: &ModelData, summaries: &[StudySummary], boot: &Boot) -> Result<Vec<NullEditSummary>> {
    let mut out = Vec::new();
    for edit in NullEdit::ALL {
        let rows: Vec<(&CaseRecord, &NullEditRecord)> =
            data.image.iter().filter(|r| r.error.is_none()).filter_map(|r| Some((*r, edit_of(r, edit)?))).collect();
        if rows.is_empty() {
            continue;
        }
        let mut by_study: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for (r, e) in &rows {
            let part = by_study.entry(r.study_id.as_str()).or_default();
            part.0 += f64::from(u8::from(!e.answer_equal));
            part.1 += 1.0;
        }
        let changed: Vec<ClusterRatio> = by_study.into_iter().map(|(id, (num, den))| ClusterRatio::new(id, num, den)).collect();
        let studies: Vec<(&str, &NullEditStudy)> = summaries
            .iter()
            .filter_map(|s| Some((s.study_id.as_str(), s.null_edits.iter().find(|n| n.edit == edit && n.paraphrase_to_null.is_some())?)))
            .collect();
        let flagged: Vec<ClusterRatio> =
            studies.iter().map(|(id, n)| ClusterRatio::new(*id, f64::from(u8::from(n.flagged)), 1.0)).collect();
        out.push(NullEditSummary {
            edit,
            records: rows.len(),
            answer_change_rate: boot.interval(changed)?,
            abs_margin_delta: summarize(&rows.iter().filter_map(|(_, e)| e.margin_delta.map(f64::abs)).collect::<Vec<_>>()),
            js_distance: summarize(&rows.iter().map(|(_, e)| e.js_distance).collect::<Vec<_>>()),
            studies: studies.len(),
            flagged_studies: studies.iter().filter(|(_, n)| n.flagged).count(),
            flagged_share: boot.interval(flagged)?,
            paraphrase_to_null: summarize(&studies.iter().filter_map(|(_, n)| n.paraphrase_to_null).collect::<Vec<_>>()),
        });
    }
    Ok(out)
}
