//! The null edits (spec G4), summarised per model and edit: how often the answer changes under
//! an edit that means nothing, how far the margin and the map move, and per study whether the
//! maps move more under the edit than under rewording the question (paraphrase-to-null < 1).

use std::collections::BTreeMap;

use radlens_shared::grounding::{NullEdit, NullEditRecord, null_edit_study_from_distances};
use radlens_shared::metrics::js_divergence_maps;
use radlens_shared::record::{CaseRecord, NullEditSummary};
use radlens_shared::stats::ClusterRatio;

use super::{Boot, Maps, ModelData, Result, summarize};

/// The record's figures under `edit`, on its own map.
fn edit_of(r: &CaseRecord, edit: NullEdit) -> Option<&NullEditRecord> {
    let own = r.map.as_ref()?.provenance.method;
    r.grounding.as_ref()?.of(own)?.null_edits.iter().find(|e| e.edit == edit)
}

/// One row per edit that some record has, in [`NullEdit::ALL`] order.
pub(super) fn null_edit_summaries(data: &ModelData, maps: &Maps, boot: &Boot, notes: &mut Vec<String>) -> Result<Vec<NullEditSummary>> {
    let ok: Vec<&CaseRecord> = data.image.iter().copied().filter(|r| r.error.is_none()).collect();
    let mut out = Vec::new();
    for edit in NullEdit::ALL {
        let rows: Vec<(&CaseRecord, &NullEditRecord)> = ok.iter().filter_map(|r| Some((*r, edit_of(r, edit)?))).collect();
        if rows.is_empty() {
            continue;
        }
        let mut by_study: BTreeMap<&str, Vec<(&CaseRecord, &NullEditRecord)>> = BTreeMap::new();
        for (r, e) in &rows {
            by_study.entry(r.study_id.as_str()).or_default().push((r, e));
        }
        let changed: Vec<ClusterRatio> = by_study
            .iter()
            .map(|(id, list)| ClusterRatio::new(*id, list.iter().filter(|(_, e)| !e.answer_equal).count() as f64, list.len() as f64))
            .collect();
        // Per study: the paraphrase distances (base map to each other variant's) against the
        // null distances, both over the records whose map is attention, so like meets like.
        let mut ratios = Vec::new();
        let mut flagged = Vec::new();
        for (id, list) in &by_study {
            let with_maps: Vec<(&CaseRecord, &NullEditRecord)> =
                list.iter().copied().filter(|(r, _)| maps.attention(&data.name, &r.sample_id).is_some()).collect();
            let null: Vec<f64> = with_maps.iter().map(|(_, e)| e.js_distance).collect();
            let Some(base) = data.image.iter().find(|r| r.study_id == *id && r.variant_index == 0 && r.error.is_none()) else {
                continue;
            };
            let Some(base_map) = maps.attention(&data.name, &base.sample_id) else { continue };
            let mut paraphrase = Vec::new();
            for (r, _) in &with_maps {
                if r.variant_index == 0 {
                    continue;
                }
                let m = maps.attention(&data.name, &r.sample_id).expect("filtered on having a map");
                match js_divergence_maps(base_map, m) {
                    Ok(d) => paraphrase.push(d.sqrt()),
                    Err(e) => notes.push(format!("model {}, study {id}: {edit} paraphrase distance: {e}", data.name)),
                }
            }
            if null.is_empty() {
                continue;
            }
            match null_edit_study_from_distances(edit, &paraphrase, &null) {
                Ok(s) => {
                    if let Some(ratio) = s.paraphrase_to_null {
                        ratios.push(ratio);
                        flagged.push(ClusterRatio::new(*id, f64::from(u8::from(s.flagged)), 1.0));
                    }
                }
                Err(e) => notes.push(format!("model {}, study {id}: {edit}: {e}", data.name)),
            }
        }
        out.push(NullEditSummary {
            edit,
            records: rows.len(),
            answer_change_rate: boot.interval(changed)?,
            abs_margin_delta: summarize(&rows.iter().filter_map(|(_, e)| e.margin_delta.map(f64::abs)).collect::<Vec<_>>()),
            js_distance: summarize(&rows.iter().map(|(_, e)| e.js_distance).collect::<Vec<_>>()),
            studies: ratios.len(),
            flagged_studies: flagged.iter().filter(|p| p.num > 0.0).count(),
            flagged_share: boot.interval(flagged)?,
            paraphrase_to_null: summarize(&ratios),
        });
    }
    Ok(out)
}
