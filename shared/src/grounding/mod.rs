//! How far to trust a map: the math of `fixtures/spec/grounding.md` (G1-G7), checked against
//! numpy/scipy values in `tests/grounding_golden.rs`.
//!
//! Brief overview:
//! - [`occlusion`] (G1): occlusion cells of the model input, the signed support map `O`, and a
//!   map's Spearman, top-k overlap and support mass against it.
//! - [`controls`] (G2): the radiologist box against its mirror and same-size control boxes.
//! - [`box_score`] (G3): the MedGround-Bench box score on the grid.
//! - [`confound`] (radlens' own): a map's mass on a known shortcut region of the image.
//! - [`null_edits`] (G4): `contrast90` and the paraphrase-to-null ratio of a study.
//! - [`conditions`] (G6): answer agreement, accuracy and the image-reliance shares per image
//!   condition.
//! - [`randomization`] (G5): the cascading weight-randomisation curve and its flag.
//! - [`decision`] (G7): margin AUROC, answer entropy, near ties and the flip screen.
//! - [`rank`]: average ranks and Spearman's rho, shared by G1 and G5.
//!
//! Every function takes plain values (maps, boxes, margins, answers) and returns typed errors
//! or `None` where the spec says null; the backend runs the models, and [`GroundingRecord`] is
//! what it stores per record.

pub mod box_score;
pub mod conditions;
pub mod confound;
pub mod controls;
pub mod decision;
pub mod null_edits;
pub mod occlusion;
pub mod randomization;
pub mod rank;

use serde::{Deserialize, Serialize};

pub use box_score::{BoxScore, box_score, predicted_boxes, score_boxes, union_area};
pub use conditions::{ConditionFigures, ConditionRow, ImageCondition, ImageConditionSummary, fill_box, image_condition_summary};
pub use confound::{ConfoundMass, confound_mass};
pub use controls::{
    BoxControls, ControlParts, box_controls, control_boxes, control_parts, mean_roi_lift, mirror_box, share_beating_controls,
};
pub use decision::{
    DEFAULT_NEAR_TIE_EPS, DecisionPair, DecisionParts, DecisionQuality, DecisionRow, answer_entropy_bits, auroc, decision_pairs,
    decision_parts, decision_quality, flip_screen_auroc_interval, margin_auroc, margin_auroc_interval,
};
pub use null_edits::{
    NullEdit, NullEditRecord, NullEditStudy, contrast, contrast90, null_edit_record, null_edit_study, null_edit_study_from_distances,
};
pub use occlusion::{
    CellSpan, DEFAULT_OCCLUSION_GRID, OcclusionAgreement, answer_direction, occlusion_agreement, occlusion_cells, occlusion_spearman,
    occlusion_support, occlusion_support_mass, occlusion_topk_overlap, resample_to_occlusion_grid,
};
pub use randomization::{
    CascadePoint, CascadeStep, CascadeStepValues, ModelRandomization, RandomizationCurve, RandomizationSettings, cascade_steps,
    map_spearman,
};
pub use rank::{average_ranks, spearman};

/// A record's grounding figures, each present when the run computed it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroundingRecord {
    /// G1, when the run occluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occlusion: Option<OcclusionAgreement>,
    /// G2, for rows with a box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_controls: Option<BoxControls>,
    /// G3, for rows with a box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_score: Option<BoxScore>,
    /// The map's mass on the row's confound box (radlens' check beyond the spec), for rows with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confound: Option<ConfoundMass>,
    /// G4, one per null edit run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub null_edits: Vec<NullEditRecord>,
    /// G7's per-row entropy of the yes/no decision, when the margin is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_entropy_bits: Option<f64>,
}

/// The occlusion support of one case (G1), stored with its record: `support_c = s (m - m_c)`
/// on a `grid x grid` grid over the model's `input_side` input, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcclusionSupport {
    pub grid: usize,
    /// The input's side `S`; for a non-square input its shorter side, which bounds `grid`.
    pub input_side: usize,
    /// `(H, W)` of a non-square input (dynamic resolution: Qwen2.5-VL), whose cells are
    /// `H/g x W/g` pixels; absent for square inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_hw: Option<(usize, usize)>,
    /// `m`, the unperturbed yes-minus-no margin, and `s`, the sign of the model's answer.
    pub margin: f64,
    pub sign: f64,
    pub support: Vec<f64>,
}

/// One map's grounding figures (the record's own map, Grad-CAM, relative, occlusion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodGrounding {
    pub method: crate::fusion::MapMethod,
    #[serde(flatten)]
    pub figures: GroundingRecord,
}

/// A record's grounding (`radlens study --grounding`, `radlens probe --occlusion`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaseGrounding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occlusion: Option<OcclusionSupport>,
    /// Per map method, in the record's map order.
    #[serde(default)]
    pub maps: Vec<MethodGrounding>,
    /// A figure that could not be computed, and why (the others are kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl CaseGrounding {
    /// Whether an occlusion map exists for this record: some cell weakens the answer.
    pub fn occlusion_map_expected(&self) -> bool {
        self.occlusion.as_ref().is_some_and(|o| o.support.iter().any(|v| *v > 0.0))
    }

    pub fn of(&self, method: crate::fusion::MapMethod) -> Option<&GroundingRecord> {
        self.maps.iter().find(|m| m.method == method).map(|m| &m.figures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_record_round_trips_as_an_empty_object() {
        let r = GroundingRecord::default();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "{}");
        assert_eq!(serde_json::from_str::<GroundingRecord>(&json).unwrap(), r);
    }
}
