//! Image conditions (grounding G6) and near ties (G7) in the dashboard: which image each
//! condition showed the model, its answer beside the real one, the study view's `conditions=1`
//! toggle, the occluded thumbnail's fill, the overview's two tables, and the words every badge,
//! filter and column shows on hover. Pure Rust: the browser test recomputes the pages with it.

use radlens_shared::answer::Answer;
use radlens_shared::geometry::PixelBox;
use radlens_shared::record::{Analysis, CaseRecord, DecisionSummary, Pass};
use radlens_shared::stats::bootstrap::Interval;

use crate::api::ApiRecord;

/// The study view's query key of the conditions strip (`conditions=1`: shown).
pub const CONDITIONS_KEY: &str = "conditions";

/// Whether a study view query shows the conditions strip.
pub fn conditions_from_query(query: &str) -> bool {
    crate::url_state::parse_query(query).iter().any(|(k, v)| k == CONDITIONS_KEY && matches!(v.as_str(), "1" | "true"))
}

/// The explorer's "same answer on a blank image" filter, on hover.
pub const BLANK_SAME_MEANING: &str = "Image-pass records whose blank-image record (same sample and model, the question asked with a black image) gave the same parsed answer: the model would have said the same without looking. 'no': the blank answer differs. Records of other passes, and those without a blank answer to compare, match neither.";

/// The explorer's "near tie" filter, on hover.
pub const NEAR_TIE_FILTER_MEANING: &str = "Image-pass records whose yes/no margin (logit yes - logit no at the first answer token) is closer to zero than the run's near-tie threshold eps (the manifest's near_tie_eps, default 1.0): the model barely preferred its answer. 'no': |margin| >= eps. Records without a margin, and of other passes, match neither.";

/// The near-tie badge's hover text under the run's threshold.
pub fn near_tie_meaning(eps: f64) -> String {
    format!(
        "Near tie: |yes/no margin| < {eps} (the run's near-tie threshold). The model barely preferred this answer over the other; a rewording or a small image change may flip it (grounding G7)."
    )
}

/// The study view's conditions toggle, on hover.
pub const CONDITIONS_TOGGLE_MEANING: &str = "Under each card: the same question asked with the image replaced (grounding G6): a blank image, another study's image with the opposite or the same truth, the radiologist box or a control box filled with the image's mean colour, and two null edits. An answer that stays when the image goes was not read from the image.";

/// What the model was shown under a condition, for the thumbnail.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    /// The blank image: a black square.
    Blank,
    /// Another study's image (`swap_opposite`, `swap_same`): its image and its study.
    Partner { study: Option<String>, image_id: String },
    /// The row's image with `fill` (original pixels) filled with the image's per-channel mean.
    Occluded { image_id: String, fill: PixelBox },
    /// The row's image after an edit the thumbnail does not redo (`jpeg90`, `contrast90`).
    Edited { image_id: String },
    /// A multi-image row with its prior replaced (`prior_blank`, `prior_swap`): the blank image
    /// (`partner_study` `None`) or the prior of `partner_study`, beside the row's current image
    /// (`image_id`) and its other images as they were (`kept`: their roles, e.g. `lateral`);
    /// `prior_image_id` is the partner's prior as served (absent in runs before it was recorded).
    Prior { partner_study: Option<String>, prior_image_id: Option<String>, image_id: String, kept: Vec<String> },
}

/// One condition's record of an image-pass record, as the strip shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionCell {
    pub pass: Pass,
    /// The condition record's position in the run.
    pub index: usize,
    /// `None` when the condition was not run for this row (see `not_run`).
    pub shown: Option<Shown>,
    pub not_run: Option<String>,
    pub parsed: Option<Answer>,
    /// The parsed answer equals the real image's (unknown a value of its own); `None` when either
    /// has none.
    pub agrees: Option<bool>,
    /// The condition's truth, where it has one.
    pub truth: Option<Answer>,
    pub margin: Option<f64>,
    pub error: Option<String>,
}

/// The condition records of `real` (an image-pass record): same sample and model, every other
/// pass but the image pass, in [`Pass::ALL`]'s order.
pub fn condition_cells(real: &CaseRecord, all: &[ApiRecord]) -> Vec<ConditionCell> {
    let mut cells: Vec<ConditionCell> = all
        .iter()
        .filter(|c| c.record.pass != Pass::Image && c.record.sample_id == real.sample_id && c.record.model == real.model)
        .map(|c| cell(real, c))
        .collect();
    cells.sort_by_key(|c| Pass::ALL.iter().position(|p| *p == c.pass));
    cells
}

fn cell(real: &CaseRecord, c: &ApiRecord) -> ConditionCell {
    let r = &c.record;
    let cond = r.condition.as_ref();
    let not_run = cond.and_then(|k| k.not_run.clone());
    let shown = if not_run.is_some() {
        None
    } else {
        match r.pass {
            Pass::Image => None,
            Pass::BlankImage => Some(Shown::Blank),
            Pass::SwapOpposite | Pass::SwapSame => {
                Some(Shown::Partner { study: cond.and_then(|k| k.partner_study.clone()), image_id: c.image_id.clone() })
            }
            Pass::RoiOccluded | Pass::ControlOccluded | Pass::ConfoundOccluded => {
                cond.and_then(|k| k.occluded_box).map(|fill| Shown::Occluded { image_id: c.image_id.clone(), fill })
            }
            Pass::Jpeg90 | Pass::Contrast90 => Some(Shown::Edited { image_id: c.image_id.clone() }),
            Pass::PriorBlank | Pass::PriorSwap => Some(Shown::Prior {
                partner_study: if r.pass == Pass::PriorSwap { cond.and_then(|k| k.partner_study.clone()) } else { None },
                prior_image_id: c.prior_image_id.clone(),
                image_id: c.image_id.clone(),
                kept: real.images.iter().map(|i| i.role.clone()).filter(|role| role != "prior" && role != "current").collect(),
            }),
        }
    };
    let agrees = match (r.parsed_answer, real.parsed_answer) {
        (Some(a), Some(b)) => Some(a == b),
        _ => None,
    };
    ConditionCell {
        pass: r.pass,
        index: c.index,
        shown,
        not_run,
        parsed: r.parsed_answer,
        agrees,
        truth: r.ground_truth,
        margin: r.yes_no_margin,
        error: r.error.as_ref().map(|e| e.message.clone()),
    }
}

/// `fill` (original pixels) on an image served at `served_w x served_h` whose original is
/// `original_w x original_h` (the server downscales by one factor, keeping the aspect).
pub fn scale_box(fill: &PixelBox, original_w: f64, original_h: f64, served_w: f64, served_h: f64) -> PixelBox {
    let (sx, sy) = (served_w / original_w.max(1.0), served_h / original_h.max(1.0));
    PixelBox { x0: fill.x0 * sx, y0: fill.y0 * sy, x1: fill.x1 * sx, y1: fill.y1 * sy }
}

/// The original size of the image `real` was shown: its map's geometry (the original pixels the
/// boxes are in), else the served size when the server cannot have downscaled it (both sides
/// under [`SERVED_MAX_SIDE`]); `None` when it cannot be known.
pub fn original_size(real: &CaseRecord, served_w: u32, served_h: u32) -> Option<(f64, f64)> {
    if let Some(g) = real.map.as_ref().map(|m| &m.provenance.geometry) {
        return Some((g.image_w as f64, g.image_h as f64));
    }
    (served_w.max(served_h) < SERVED_MAX_SIDE).then_some((served_w as f64, served_h as f64))
}

/// The longest side the server (and an export) sends an image at.
pub const SERVED_MAX_SIDE: u32 = 512;

/// An answer, or a dash.
pub fn answer_text(a: Option<Answer>) -> &'static str {
    a.map(|a| a.as_str()).unwrap_or("—")
}

/// The rates of the conditions table, their column labels and meaning on hover.
pub const CONDITION_RATES: [(&str, &str, &str); 9] = [
    (
        "image_sensitivity",
        "Image sensitivity",
        "1 - answer agreement under the blank image: how often the answer changes when the image goes.",
    ),
    (
        "visual_reliance",
        "Visual reliance",
        "Accuracy on the real image minus the share of rows whose blank-image answer equals the real truth (rows answered both ways).",
    ),
    (
        "swap_following",
        "Swap following",
        "Accuracy under swap_opposite: how often the answer follows another study's image with the opposite truth.",
    ),
    (
        "causal_grounding_rate",
        "Causal grounding",
        "Boxed rows whose answer changes when the radiologist box is filled but not when a control box is.",
    ),
    ("control_change_rate", "Control change", "Boxed rows whose answer changes when a control box (away from the finding) is filled."),
    (
        "confound_change_rate",
        "Confound change",
        "Rows whose answer changes when their confound box (a known shortcut region the CSV names, e.g. a burned-in marker) is filled: a model answering from the shortcut changes here.",
    ),
    (
        "prior_blank_change_rate",
        "Prior blank change",
        "Rows with a prior image whose answer changes when the prior is replaced by a blank image (the current image kept): how much the answer leans on the prior.",
    ),
    (
        "prior_swap_change_rate",
        "Prior swap change",
        "Rows with a prior image whose answer changes when the prior is replaced by another study's prior (the current image kept): an answer that follows the prior of another patient compares the wrong images.",
    ),
    (
        "image_invariant_flips",
        "Image-invariant flips",
        "Flipping (base, variant) pairs whose base answer equals the base's blank-image answer: the flip happens with an image the model does not use.",
    ),
];

/// The rate `key` of one model's conditions.
pub fn condition_rate<'a>(c: &'a radlens_shared::record::ConditionAnalysis, key: &str) -> Option<&'a Interval> {
    match key {
        "image_sensitivity" => c.image_sensitivity.as_ref(),
        "visual_reliance" => c.visual_reliance.as_ref(),
        "swap_following" => c.swap_following.as_ref(),
        "causal_grounding_rate" => c.causal_grounding_rate.as_ref(),
        "control_change_rate" => c.control_change_rate.as_ref(),
        "confound_change_rate" => c.confound_change_rate.as_ref(),
        "prior_blank_change_rate" => c.prior_blank_change_rate.as_ref(),
        "prior_swap_change_rate" => c.prior_swap_change_rate.as_ref(),
        "image_invariant_flips" => c.image_invariant_flips.as_ref(),
        _ => None,
    }
}

/// Whether the overview lists rate `key` for a model: the confound and prior rates only where the
/// run has them (a CSV with confound boxes, rows with a prior run under `prior_blank` /
/// `prior_swap`), the others always (a missing estimate is shown as such).
pub fn rate_listed(c: &radlens_shared::record::ConditionAnalysis, key: &str) -> bool {
    match key {
        "confound_change_rate" | "prior_blank_change_rate" | "prior_swap_change_rate" => condition_rate(c, key).is_some(),
        _ => true,
    }
}

/// The models with image conditions in `analysis.json`, each with its conditions.
pub fn conditions_of(a: &Analysis) -> Vec<(&str, &radlens_shared::record::ConditionAnalysis)> {
    a.models.iter().filter_map(|m| m.conditions.as_ref().map(|c| (m.model.as_str(), c))).collect()
}

/// The decision-quality columns of the "Would the model have warned us?" table: key, label,
/// meaning on hover.
pub const DECISION_COLUMNS: [(&str, &str, &str); 4] = [
    ("margin_auroc", "Margin AUROC", "How well the yes/no margin ranks truly-yes rows above truly-no rows (0.5: no better than chance)."),
    (
        "flip_screen_auroc",
        "Flip screen AUROC",
        "How well a rewording's answer entropy picks out the (base, rewording) pairs that flip (0.5: no warning).",
    ),
    ("near_tie_share", "Near ties", "Share of rows whose |margin| is below the run's near-tie threshold eps."),
    (
        "robust_flip_rate",
        "Robust flip rate",
        "Share of (base, rewording) pairs that flip although both margins are at least eps from zero: confident flips.",
    ),
];

/// The decision column `key` of one model's summary.
pub fn decision_value<'a>(d: &'a DecisionSummary, key: &str) -> Option<&'a Interval> {
    match key {
        "margin_auroc" => d.margin_auroc.as_ref(),
        "flip_screen_auroc" => d.flip_screen_auroc.as_ref(),
        "near_tie_share" => d.near_tie_share.as_ref(),
        "robust_flip_rate" => d.robust_flip_rate.as_ref(),
        _ => None,
    }
}

/// The models with a decision summary in `analysis.json`.
pub fn decisions_of(a: &Analysis) -> Vec<(&str, &DecisionSummary)> {
    a.models.iter().filter_map(|m| m.decision.as_ref().map(|d| (m.model.as_str(), d))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(index: usize, sample: &str, model: &str, pass: Pass, parsed: Option<&str>, condition: serde_json::Value) -> ApiRecord {
        let mut v = serde_json::json!({
            "schema_version": 1, "sample_id": sample, "study_id": "s1", "csv_line": 2, "variant_index": 0, "strategy": "baseline",
            "polarity": 1, "finding": null, "model": model, "pass": pass.name(), "image": "x.png", "question": "q?",
            "ground_truth": "yes", "parsed_answer": parsed, "correct": null, "yes_no_margin": 0.5,
            "latency": { "preprocess_ms": 0.0, "image_encode_ms": 0.0, "prefill_ms": 0.0, "decode_ms": 0.0, "capture_ms": 0.0, "total_ms": 0.0 },
        });
        if !condition.is_null() {
            v["condition"] = condition;
        }
        ApiRecord { index, image_id: format!("img{index}"), prior_image_id: None, record: serde_json::from_value(v).expect("a record") }
    }

    #[test]
    fn a_real_answer_gets_its_own_conditions_in_spec_order_each_with_what_was_shown() {
        let all = vec![
            rec(0, "s1#0", "a", Pass::Image, Some("yes"), serde_json::Value::Null),
            rec(1, "s1#0", "a", Pass::Contrast90, Some("yes"), serde_json::json!({})),
            rec(2, "s1#0", "a", Pass::SwapOpposite, Some("no"), serde_json::json!({"partner_study": "s2"})),
            rec(3, "s1#0", "a", Pass::RoiOccluded, None, serde_json::json!({"not_run": "no radiologist box"})),
            rec(4, "s1#0", "a", Pass::BlankImage, Some("unknown"), serde_json::Value::Null),
            rec(5, "s1#0", "b", Pass::BlankImage, Some("yes"), serde_json::Value::Null), // another model
            rec(6, "s1#1", "a", Pass::BlankImage, Some("yes"), serde_json::Value::Null), // another sample
            rec(
                7,
                "s1#0",
                "a",
                Pass::ControlOccluded,
                Some("yes"),
                serde_json::json!({"occluded_box": {"x0": 1.0, "y0": 2.0, "x1": 3.0, "y1": 4.0}}),
            ),
        ];
        let cells = condition_cells(&all[0].record, &all);
        let passes: Vec<Pass> = cells.iter().map(|c| c.pass).collect();
        assert_eq!(passes, vec![Pass::BlankImage, Pass::SwapOpposite, Pass::RoiOccluded, Pass::ControlOccluded, Pass::Contrast90]);
        assert_eq!(cells.iter().map(|c| c.index).collect::<Vec<_>>(), vec![4, 2, 3, 7, 1]);
        assert_eq!(cells[0].shown, Some(Shown::Blank));
        assert_eq!(cells[0].agrees, Some(false), "unknown is a value of its own");
        assert_eq!(cells[1].shown, Some(Shown::Partner { study: Some("s2".into()), image_id: "img2".into() }));
        assert_eq!(cells[1].agrees, Some(false));
        assert_eq!((cells[2].shown.clone(), cells[2].not_run.as_deref(), cells[2].agrees), (None, Some("no radiologist box"), None));
        assert_eq!(
            cells[3].shown,
            Some(Shown::Occluded { image_id: "img7".into(), fill: PixelBox { x0: 1.0, y0: 2.0, x1: 3.0, y1: 4.0 } })
        );
        assert_eq!((cells[4].shown.clone(), cells[4].agrees), (Some(Shown::Edited { image_id: "img1".into() }), Some(true)));
        assert!(condition_cells(&all[5].record, &all).iter().all(|c| c.index == 5 || c.pass != Pass::BlankImage));
    }

    /// `prior_blank` and `prior_swap` say which prior the model saw with the current image;
    /// `prior_swap` has no truth, and its answer is compared with the real one all the same.
    #[test]
    fn prior_conditions_name_the_prior_shown_beside_the_current_image() {
        let mut real = rec(0, "s1#0", "a", Pass::Image, Some("yes"), serde_json::Value::Null);
        let mut blank = rec(1, "s1#0", "a", Pass::PriorBlank, Some("yes"), serde_json::json!({}));
        let mut swap = rec(2, "s1#0", "a", Pass::PriorSwap, Some("no"), serde_json::json!({"partner_study": "s9"}));
        swap.record.ground_truth = None;
        swap.prior_image_id = Some("p9".into());
        blank.record.image = "cur.png".into();
        let image = |role: &str| {
            let mut v = serde_json::json!({
                "role": role, "image": format!("{role}.png"), "image_mass_share": 0.5,
                "provenance": {"model": "a", "method": "query_to_visual", "layer_range": "last-quarter", "layers": [1], "head_fusion": "mean",
                    "query_mode": "query", "query_positions": [3],
                    "geometry": {"h": 1, "w": 1, "crop": {"x0": 0.0, "y0": 0.0, "x1": 1.0, "y1": 1.0}, "image_w": 1, "image_h": 1}},
                "metrics": {"entropy_nats": 0.0, "gini": 0.0, "top10_mass": 1.0, "focus": 1.0},
                "values": {"file": "attention.bin", "offset": 0, "shape": [1, 1]},
            });
            v["role"] = serde_json::json!(role);
            serde_json::from_value::<radlens_shared::record::ImageMapRecord>(v).expect("an image")
        };
        real.record.images = vec![image("prior"), image("current"), image("lateral")];
        let all = vec![real.clone(), swap, blank];
        let cells = condition_cells(&real.record, &all);
        assert_eq!(cells.iter().map(|c| c.pass).collect::<Vec<_>>(), vec![Pass::PriorBlank, Pass::PriorSwap]);
        let kept = vec!["lateral".to_owned()];
        assert_eq!(
            cells[0].shown,
            Some(Shown::Prior { partner_study: None, prior_image_id: None, image_id: "img1".into(), kept: kept.clone() })
        );
        assert_eq!((cells[0].agrees, cells[0].truth), (Some(true), Some(Answer::Yes)));
        assert_eq!(
            cells[1].shown,
            Some(Shown::Prior { partner_study: Some("s9".into()), prior_image_id: Some("p9".into()), image_id: "img2".into(), kept })
        );
        assert_eq!((cells[1].agrees, cells[1].truth), (Some(false), None));
    }

    /// Every rate key reads its own field; the prior rates are listed only where the run has them.
    #[test]
    fn prior_rates_are_listed_only_where_the_run_has_them() {
        let mut c: radlens_shared::record::ConditionAnalysis = serde_json::from_value(serde_json::json!({
            "conditions": [], "image_sensitivity": null, "visual_reliance": null, "swap_following": null,
            "causal_grounding_rate": null, "control_change_rate": null, "image_invariant_flips": null, "flipping_pairs": 0
        }))
        .expect("a condition analysis");
        assert!(!rate_listed(&c, "prior_blank_change_rate") && !rate_listed(&c, "prior_swap_change_rate"));
        assert!(rate_listed(&c, "image_sensitivity"), "a core rate is listed without an estimate");
        let iv = |e: f64| -> Interval {
            serde_json::from_value(serde_json::json!({"estimate": e, "lo": 0.0, "hi": 1.0, "level": 0.95, "resamples": 50, "valid_resamples": 50, "seed": 1, "unit": "study"}))
                .expect("an interval")
        };
        c.prior_blank_change_rate = Some(iv(0.25));
        c.prior_swap_change_rate = Some(iv(0.5));
        assert!(rate_listed(&c, "prior_blank_change_rate") && rate_listed(&c, "prior_swap_change_rate"));
        assert_eq!(condition_rate(&c, "prior_blank_change_rate").map(|i| i.estimate), Some(0.25));
        assert_eq!(condition_rate(&c, "prior_swap_change_rate").map(|i| i.estimate), Some(0.5));
        let keys: std::collections::BTreeSet<&str> = CONDITION_RATES.iter().map(|r| r.0).collect();
        assert_eq!(keys.len(), CONDITION_RATES.len());
    }

    #[test]
    fn boxes_scale_with_the_served_image_and_the_toggle_reads_from_the_query() {
        let b = PixelBox { x0: 60.0, y0: 300.0, x1: 210.0, y1: 430.0 };
        assert_eq!(scale_box(&b, 512.0, 512.0, 512.0, 512.0), b);
        assert_eq!(scale_box(&b, 1024.0, 1024.0, 512.0, 512.0), PixelBox { x0: 30.0, y0: 150.0, x1: 105.0, y1: 215.0 });
        assert!(conditions_from_query("?opacity=0.5&conditions=1"));
        assert!(!conditions_from_query("conditions=0") && !conditions_from_query(""));
        assert!(near_tie_meaning(0.5).contains("< 0.5"));
    }
}
