//! The report's "Can the maps be trusted? Grounding" section (spec G1-G5), placed before the
//! other trust checks: does each map point where the decision comes from, does it beat a box
//! that is not the finding, does it stay put when nothing meaningful changed, and does it
//! change when the weights are noise?

use std::fmt::Write as _;
use std::path::Path;

use radlens_shared::grounding::randomization::INSENSITIVE_SPEARMAN;
use radlens_shared::record::Analysis;

use super::{interval, mean_median, num, pct, table};
use crate::study::plots::RANDOMIZATION_PLOT;

/// Plots this section shows itself (the report's figure list leaves them out).
pub(super) fn is_section_plot(p: &str) -> bool {
    Path::new(p).file_name().is_some_and(|n| n == RANDOMIZATION_PLOT)
}

pub(super) fn grounding(o: &mut String, a: &Analysis, plots: &[String]) {
    let has_maps = a.models.iter().any(|m| !m.grounding.is_empty());
    let has_null = a.models.iter().any(|m| !m.null_edits.is_empty());
    let has_random = a.models.iter().any(|m| m.randomization.is_some());
    if !(has_maps || has_null || has_random) {
        return;
    }
    let _ = writeln!(o, "## Can the maps be trusted? Grounding\n");
    let _ = writeln!(
        o,
        "Each map against a causal reference, against boxes that are not the finding, against edits that change nothing, and against noise weights (definitions: `fixtures/spec/grounding.md`, G1-G5). Values are means with 95% study-clustered intervals.\n"
    );
    if has_maps {
        references(o, a);
    }
    if has_null {
        null_edits(o, a);
    }
    if has_random {
        randomization(o, a, plots);
    }
}

/// G1-G3: occlusion agreement, box controls, box score.
fn references(o: &mut String, a: &Analysis) {
    let _ = writeln!(
        o,
        "**Occlusion**: hiding each cell of a g x g grid and measuring how much the model's own yes/no margin weakens gives a causal map (`occlusion`); Spearman, top-10% overlap and the map's mass on cells with positive support say how far a map agrees with it. **Box controls**: the lift is the map's mass in the radiologist box minus its mean mass in same-sized boxes elsewhere in the crop; \"beats controls\" is the share of boxed records whose box mass is at or above the 95th percentile of their controls. **Box score**: F1 of the map's top-decile boxes against the radiologist box.\n"
    );
    let rows: Vec<Vec<String>> = a
        .models
        .iter()
        .flat_map(|m| {
            m.grounding.iter().map(move |g| {
                vec![
                    format!("`{}`", m.model),
                    g.method.to_string(),
                    g.records.to_string(),
                    interval(g.occlusion_spearman.as_ref()),
                    interval(g.occlusion_topk_overlap.as_ref()),
                    interval(g.occlusion_support_mass.as_ref()),
                    g.boxed_records.to_string(),
                    interval(g.roi_lift.as_ref()),
                    pct(g.beats_controls.as_ref()),
                    interval(g.box_f1.as_ref()),
                ]
            })
        })
        .collect();
    table(
        o,
        &[
            "model",
            "map",
            "records",
            "occlusion Spearman",
            "top-10% overlap",
            "support mass",
            "boxed",
            "lift over controls",
            "beats controls",
            "box F1",
        ],
        &rows,
    );
    confound(o, a);
}

/// radlens' own: each map's mass on the rows' confound boxes, where the CSV names them.
fn confound(o: &mut String, a: &Analysis) {
    let rows: Vec<Vec<String>> = a
        .models
        .iter()
        .flat_map(|m| {
            m.grounding.iter().filter(|g| g.confound_records > 0).map(move |g| {
                vec![
                    format!("`{}`", m.model),
                    g.method.to_string(),
                    g.confound_records.to_string(),
                    interval(g.confound_mass.as_ref()),
                    num(g.confound_uniform.as_ref().map(|u| u.mean), 3),
                    interval(g.roi_lift.as_ref()),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "**Confound boxes** (radlens' own check, beyond the spec): the study CSV names a known shortcut region on some rows (`confound_*`: a burned-in marker, a tube). The mass is the map's share on the grid cells that box overlaps (a shortcut mark is often smaller than one cell), next to the share a flat map would put there; a map far above flat on the confound and near 0 in lift on the finding's box looks at the shortcut, not the finding. The image condition `confound_occluded` asks whether hiding it changes the answer.\n"
    );
    table(
        o,
        &["model", "map", "records with a confound box", "mass on the confound", "flat-map mass", "finding box: lift over controls"],
        &rows,
    );
}

/// G4: the null edits.
fn null_edits(o: &mut String, a: &Analysis) {
    let _ = writeln!(
        o,
        "**Null edits**: every record run again on its image re-encoded as JPEG quality 90 (`jpeg90`) and with 10% less contrast (`contrast90`). A trustworthy model keeps its answer and its map. The paraphrase-to-null ratio of a study is how far its maps move between rewordings of the question over how far they move under the edit; a study below 1 is flagged: its maps move more when nothing meaningful changed than when the question did.\n"
    );
    let rows: Vec<Vec<String>> = a
        .models
        .iter()
        .flat_map(|m| {
            m.null_edits.iter().map(move |e| {
                vec![
                    format!("`{}`", m.model),
                    e.edit.to_string(),
                    e.records.to_string(),
                    pct(e.answer_change_rate.as_ref()),
                    mean_median(e.abs_margin_delta.as_ref(), 3),
                    mean_median(e.js_distance.as_ref(), 3),
                    mean_median(e.paraphrase_to_null.as_ref(), 2),
                    format!("{} of {}", e.flagged_studies, e.studies),
                    pct(e.flagged_share.as_ref()),
                ]
            })
        })
        .collect();
    table(
        o,
        &[
            "model",
            "edit",
            "records",
            "answer changed",
            "abs. margin change mean / median",
            "map JS distance mean / median",
            "paraphrase-to-null mean / median",
            "flagged studies",
            "flagged share",
        ],
        &rows,
    );
}

/// G5: the weight-randomisation cascade, as a table and a plot.
fn randomization(o: &mut String, a: &Analysis, plots: &[String]) {
    let _ = writeln!(
        o,
        "**Weight randomisation** (Adebayo et al., 2018): on sampled records, the top language-model layers are re-drawn from noise of the same spread, more at each step, then the vision tower too; each step's map is compared by rank (Spearman) with the original. Maps that still correlate above {INSENSITIVE_SPEARMAN} once every language-model layer is noise are flagged \"insensitive to the weights\": they do not explain what the model learned.\n"
    );
    let rows: Vec<Vec<String>> = a
        .models
        .iter()
        .filter_map(|m| {
            let r = m.randomization.as_ref()?;
            let curve = r.curve.points.iter().map(|p| format!("{}: {}", p.step, num(p.spearman, 2))).collect::<Vec<_>>().join("; ");
            let verdict = match r.insensitive {
                Some(true) => "**insensitive to the weights**".to_owned(),
                Some(false) => "sensitive".to_owned(),
                None => "not judged".to_owned(),
            };
            Some(vec![format!("`{}`", m.model), r.inputs.to_string(), curve, verdict, r.notes.len().to_string()])
        })
        .collect();
    table(o, &["model", "sampled records", "mean Spearman per step", "verdict", "notes"], &rows);
    if let Some(p) = plots.iter().find(|p| is_section_plot(p)) {
        let _ = writeln!(o, "![weight randomisation curve]({p})\n");
    }
}
