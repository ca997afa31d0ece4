//! One case: an (image, question, model) through capture, fusion and the trust checks. Every
//! command that answers a question about an image goes through here: `radlens probe`, the
//! study runner, the server's compare and both benches.
//!
//! Brief overview:
//! - [`plan`]: [`CaseSpec`] (the user's typed choice) resolved once per model into a
//!   [`CasePlan`]: the only place where layer ranges become capture sites, query rows become
//!   positions, capture policies are built and provenance is written.
//! - [`image`]: [`CaseImage`], an image preprocessed and encoded once for a model.
//! - [`run`]: [`run_case`], generation with the plan's probe, the answer and margin, the fused
//!   map (or the labelled fallback), the trust checks.
//! - [`capture`]: captured rows -> one map (the shared crate's fusion).
//! - [`gradcam`], [`trust`]: Grad-CAM, deletion tests, the generic-prompt map behind sinks and
//!   the relative map, method agreement.
//! - [`multi_image`]: Grad-CAM, the generic map and occlusion over a prompt with several
//!   images, and the split of a map into one per image with its share (issue 21).
//! - [`occlusion`], [`grounding`]: the occlusion reference map (grounding spec G1) and every
//!   map's agreement with it, box controls and box score (G2, G3).
//! - [`null_edit`]: the null edits (G4): the case re-run on its image re-encoded as JPEG and
//!   with less contrast, compared with the unedited case.
//! - [`randomization`]: the weight-randomisation cascade (G5) over sampled cases.

pub mod capture;
pub mod gradcam;
pub mod grounding;
pub mod image;
pub mod multi_image;
pub mod null_edit;
pub mod occlusion;
pub mod plan;
pub mod randomization;
pub mod run;
pub mod trust;

pub use image::CaseImage;
pub use plan::{Capture, CasePlan, CaseSpec, QueryRows};
pub use run::{AttentionCapture, Case, CaseMap, CaseOutcome, fused_map, generate_captured, run_case};

use radlens_shared::record::ErrorStage;
use thiserror::Error;

use crate::models::error::ModelError;

/// Why a case produced no answer.
#[derive(Debug, Error)]
pub enum CaseError {
    /// The spec does not fit the model (e.g. a layer it does not have).
    #[error("{0}")]
    Plan(String),
    /// A `term:` query whose word the prompt does not spell.
    #[error("the prompt has no token spelling {0:?}")]
    TermNotFound(String),
    #[error("{0}")]
    Inference(ModelError),
}

impl CaseError {
    /// The stage a study's error record names.
    pub fn stage(&self) -> ErrorStage {
        match self {
            Self::Plan(_) | Self::TermNotFound(_) => ErrorStage::Capture,
            Self::Inference(_) => ErrorStage::Inference,
        }
    }
}
