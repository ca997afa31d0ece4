//! The analysis' summaries of the grounding checks (spec G1-G5), the image conditions (G6) and
//! decision quality (G7), per model, as `analysis.json` holds them.

use serde::{Deserialize, Serialize};

use super::Summary;
use crate::stats::bootstrap::Interval;

/// One model's image conditions (spec G6); every share with its study-clustered interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionAnalysis {
    /// The real image first, then each condition run, in the spec's order.
    pub conditions: Vec<ConditionStats>,
    /// `1 - answer_agreement` under `blank`.
    pub image_sensitivity: Option<Interval>,
    /// Accuracy on the real image minus the share of rows whose blank answer equals the real
    /// truth, over the rows answered both ways with a yes/no truth.
    pub visual_reliance: Option<Interval>,
    /// Accuracy under `swap_opposite`: how often the answer follows the shown image.
    pub swap_following: Option<Interval>,
    /// Boxed rows whose answer changes under `roi_occluded` but not under `control_occluded`.
    pub causal_grounding_rate: Option<Interval>,
    /// Boxed rows whose answer changes under `control_occluded`.
    pub control_change_rate: Option<Interval>,
    /// Rows with a confound box whose answer changes under `confound_occluded` (absent in older
    /// runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confound_change_rate: Option<Interval>,
    /// Rows with a prior image whose answer changes when the prior is blank (`prior_blank`;
    /// absent where the run has none): does the model read the prior at all?
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_blank_change_rate: Option<Interval>,
    /// Rows with a prior image whose answer changes when another study's prior stands in
    /// (`prior_swap`; absent where the run has none): does the answer about change follow
    /// the prior?
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_swap_change_rate: Option<Interval>,
    /// PSF-Med's split: flipping (base, variant) pairs whose base answer equals the base's blank
    /// answer (the flip happens with an image the model does not use), over the flipping pairs
    /// with a blank answer.
    pub image_invariant_flips: Option<Interval>,
    pub flipping_pairs: usize,
}

/// One condition's records of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionStats {
    pub condition: crate::grounding::ImageCondition,
    /// Records with an answer under the condition.
    pub rows: usize,
    /// Rows the condition has no image for (no partner, no box), and error records.
    pub not_run: usize,
    pub errors: usize,
    /// Parsed answer equals the real image's (unknown is a value of its own).
    pub answer_agreement: Option<Interval>,
    /// Where the condition has a truth.
    pub accuracy: Option<Interval>,
}

/// One model's decision quality (spec G7) over its image-pass rows with a margin that pass the
/// yes/no filter ([`crate::answer::is_yes_no_question`] and a yes/no truth).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionSummary {
    /// The near-tie threshold on `|m|`.
    pub eps: f64,
    pub rows: usize,
    pub pairs: usize,
    /// Rows left out by the yes/no filter (kept in the run, counted here).
    pub not_yes_no: usize,
    pub margin_auroc: Option<Interval>,
    pub flip_screen_auroc: Option<Interval>,
    pub mean_margin_shift: Option<Interval>,
    pub near_tie_share: Option<Interval>,
    pub robust_flip_rate: Option<Interval>,
    pub flip_rate: Option<Interval>,
    /// Per row.
    pub answer_entropy_bits: Option<Summary>,
    /// Accuracy by `|m|` bin: does a larger margin mean a right answer more often?
    pub reliability: Vec<ReliabilityBin>,
}

/// Rows whose `|m|` lies in `[lo, hi)` (`hi` = `None`: no upper end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub lo: f64,
    pub hi: Option<f64>,
    pub rows: usize,
    pub accuracy: Option<Interval>,
}

/// One model's records under one null edit (spec G4): how often the answer changes, how far the
/// margin and the map move, and per study the paraphrase-to-null ratio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NullEditSummary {
    pub edit: crate::grounding::NullEdit,
    /// Records with this edit's figures.
    pub records: usize,
    /// Share of records whose parsed answer changed under the edit.
    pub answer_change_rate: Option<Interval>,
    /// `|m_edit - m|` over the records with both margins.
    pub abs_margin_delta: Option<Summary>,
    /// The JS distance between each record's map and its edited map.
    pub js_distance: Option<Summary>,
    /// Studies with a paraphrase-to-null ratio (two or more variants, a non-zero null
    /// distance), and those flagged (ratio < 1: the maps move more under the edit than under
    /// rewording) with the flagged share's interval.
    pub studies: usize,
    pub flagged_studies: usize,
    pub flagged_share: Option<Interval>,
    /// The ratio over the studies that have one.
    pub paraphrase_to_null: Option<Summary>,
}

/// One model's randomisation check (spec G5), from the run's `randomization.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomizationSummary {
    /// Sampled records.
    pub inputs: usize,
    pub curve: crate::grounding::RandomizationCurve,
    /// "Maps insensitive to the weights" (`None`: not judged).
    pub insensitive: Option<bool>,
    pub notes: Vec<String>,
}

/// One model's grounding figures for one map method (spec G1-G3), over its image-pass records;
/// each mean with its study-clustered interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundingSummary {
    pub method: crate::fusion::MapMethod,
    /// Records with this map's grounding figures, and those with a box.
    pub records: usize,
    pub boxed_records: usize,
    /// G1: Spearman with the occlusion support, top-10% overlap, support mass.
    pub occlusion_spearman: Option<Interval>,
    pub occlusion_topk_overlap: Option<Interval>,
    pub occlusion_support_mass: Option<Interval>,
    /// G2: mean lift over the control boxes, and the share of boxed records whose box mass is
    /// at or above the 95th percentile of their controls ("beats the controls").
    pub roi_lift: Option<Interval>,
    pub beats_controls: Option<Interval>,
    /// G2: mirror-box mass and the chance pointing game over the controls, for context.
    pub mirror_mass: Option<Summary>,
    pub control_pointing: Option<Summary>,
    /// G3: the box score against the radiologist box.
    pub box_iou: Option<Interval>,
    pub box_f1: Option<Interval>,
    /// radlens' own: over the records with a confound box, the map's mean mass on the cells the
    /// box overlaps, and what a flat map would put there (absent in older runs).
    #[serde(default)]
    pub confound_records: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confound_mass: Option<Interval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confound_uniform: Option<Summary>,
}
