//! The report's "Does the answer come from the image?" (spec G6: the image conditions) and
//! "Would the model have warned us?" (G7: decision quality) sections.

use std::fmt::Write as _;
use std::path::Path;

use radlens_shared::record::{Analysis, DecisionSummary};

use super::{interval, mean_median, pct, table};
use crate::study::plots::{CONDITIONS_PLOT, RELIABILITY_PLOT};

/// Plots these sections show themselves (the report's figure list leaves them out).
pub(super) fn is_section_plot(p: &str) -> bool {
    Path::new(p).file_name().is_some_and(|n| n == CONDITIONS_PLOT || n == RELIABILITY_PLOT)
}

fn embed(o: &mut String, plots: &[String], name: &str, alt: &str) {
    if let Some(p) = plots.iter().find(|p| Path::new(p).file_name().is_some_and(|n| n == name)) {
        let _ = writeln!(o, "![{alt}]({p})\n");
    }
}

pub(super) fn image_conditions(o: &mut String, a: &Analysis, plots: &[String]) {
    let models: Vec<_> = a.models.iter().filter_map(|m| Some((m.model.as_str(), m.conditions.as_ref()?))).collect();
    if models.is_empty() {
        return;
    }
    let _ = writeln!(o, "## Does the answer come from the image?\n");
    let _ = writeln!(
        o,
        "Every row run again with its image replaced (definitions: `fixtures/spec/grounding.md` G6): `blank` (no image), `swap_opposite` / `swap_same` (the image of the next study with the same finding and the opposite / the same truth, another subject where subject ids exist), `roi_occluded` / `control_occluded` (the radiologist's box, or the first same-sized control box, filled with the image's mean), `jpeg90`, `contrast90`, and radlens' own `confound_occluded` (the row's confound box, a known shortcut region the CSV names, filled the same way). **Agreement** is how often the answer equals the one on the real image; a model that answers from the image should change its answer under `blank` and `swap_opposite` and follow the swapped image's truth. Rows a condition has no image for (no partner, no box) are counted as not run.\n"
    );
    let rows: Vec<Vec<String>> = models
        .iter()
        .flat_map(|(name, c)| {
            c.conditions.iter().map(move |s| {
                vec![
                    format!("`{name}`"),
                    s.condition.to_string(),
                    s.rows.to_string(),
                    s.not_run.to_string(),
                    pct(s.answer_agreement.as_ref()),
                    pct(s.accuracy.as_ref()),
                ]
            })
        })
        .collect();
    table(o, &["model", "condition", "rows", "not run", "answer agreement", "accuracy"], &rows);
    // The confound column only where the CSV named confound boxes.
    let has_confound = models.iter().any(|(_, c)| c.confound_change_rate.is_some());
    // Likewise the prior columns only where rows had a prior image and the condition ran.
    let has_prior_blank = models.iter().any(|(_, c)| c.prior_blank_change_rate.is_some());
    let has_prior_swap = models.iter().any(|(_, c)| c.prior_swap_change_rate.is_some());
    let rates: Vec<Vec<String>> = models
        .iter()
        .map(|(name, c)| {
            let mut row = vec![
                format!("`{name}`"),
                pct(c.image_sensitivity.as_ref()),
                interval(c.visual_reliance.as_ref()),
                pct(c.swap_following.as_ref()),
                pct(c.causal_grounding_rate.as_ref()),
                pct(c.control_change_rate.as_ref()),
                format!("{} ({} flipping pairs)", pct(c.image_invariant_flips.as_ref()), c.flipping_pairs),
            ];
            if has_confound {
                row.push(pct(c.confound_change_rate.as_ref()));
            }
            if has_prior_blank {
                row.push(pct(c.prior_blank_change_rate.as_ref()));
            }
            if has_prior_swap {
                row.push(pct(c.prior_swap_change_rate.as_ref()));
            }
            row
        })
        .collect();
    let mut rate_columns = vec![
        "model",
        "image sensitivity",
        "visual reliance",
        "swap following",
        "causal grounding",
        "control change",
        "image-invariant flips",
    ];
    if has_confound {
        rate_columns.push("confound change");
    }
    if has_prior_blank {
        rate_columns.push("prior blank change");
    }
    if has_prior_swap {
        rate_columns.push("prior swap change");
    }
    let _ = writeln!(
        o,
        "**Image sensitivity**: answers that change without the image. **Visual reliance**: accuracy on the real image minus the share of blank answers that match its truth (near 0: the image adds nothing). **Swap following**: accuracy against the swapped image's truth. **Causal grounding**: boxed rows whose answer changes when the box is hidden but not when a control box is; **control change**: when a control box is. **Image-invariant flips** (PSF-Med's split): flipping pairs whose base answer is the same without the image. **Confound change** (radlens' own, where the CSV names a confound box: a known shortcut region such as a burned-in marker): rows whose answer changes when that box is filled (`confound_occluded`).\n"
    );
    table(o, &rate_columns, &rates);
    embed(o, plots, CONDITIONS_PLOT, "answer agreement per image condition");
}

pub(super) fn decision_quality(o: &mut String, a: &Analysis, plots: &[String]) {
    let models: Vec<_> = a.models.iter().filter_map(|m| Some((m.model.as_str(), m.decision.as_ref()?))).collect();
    if models.is_empty() {
        return;
    }
    let eps = models[0].1.eps;
    let _ = writeln!(o, "## Would the model have warned us?\n");
    let _ = writeln!(
        o,
        "Decision quality from the yes-minus-no margin `m` (G7). **Margin AUROC**: how well `m` separates yes from no truths (0.5 = chance). **Near ties**: rows with `|m| < {eps}`. **Robust flip rate**: flips where both margins are at least {eps}. **Flip screen AUROC**: how well the variant's answer entropy picks out the pairs that flip. Only closed yes/no questions with a yes/no truth count (radlens' rule: the question, or the clause after its first comma, opens with an auxiliary or modal verb or with \"any\", and offers no \"or\"); the others are counted as left out.\n"
    );
    let row = |name: String, d: &DecisionSummary| {
        vec![
            name,
            d.rows.to_string(),
            d.not_yes_no.to_string(),
            interval(d.margin_auroc.as_ref()),
            interval(d.flip_screen_auroc.as_ref()),
            pct(d.flip_rate.as_ref()),
            pct(d.robust_flip_rate.as_ref()),
            pct(d.near_tie_share.as_ref()),
            interval(d.mean_margin_shift.as_ref()),
            mean_median(d.answer_entropy_bits.as_ref(), 3),
        ]
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (name, d) in &models {
        rows.push(row(format!("`{name}`"), d));
        if let Some(m) = a.models.iter().find(|m| m.model == *name) {
            for (strategy, d) in &m.decision_by_strategy {
                rows.push(row(format!("`{name}`: {strategy}"), d));
            }
        }
    }
    table(
        o,
        &[
            "model / strategy",
            "rows",
            "not yes/no",
            "margin AUROC",
            "flip screen AUROC",
            "flip rate",
            "robust flip rate",
            "near ties",
            "mean margin shift",
            "answer entropy (bits) mean / median",
        ],
        &rows,
    );
    embed(o, plots, RELIABILITY_PLOT, "reliability: accuracy by margin bin");
}
