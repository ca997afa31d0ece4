//! The model-randomisation sanity check (grounding spec G5, Adebayo et al., NeurIPS 2018) for one
//! model: the same cases run on copies of the checkpoint whose top language-model layers are
//! re-drawn in cascade (top 1, 2, 4, ... all), then also the vision tower; each step's map is
//! compared by rank with the original. Maps that barely change when the weights are noise do
//! not explain the weights. The re-draw is `models::checkpoint::redraw`; the curve and its flag
//! are `radlens_shared::grounding::randomization`.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Device;
use image::DynamicImage;
use radlens_shared::AttentionMap;
use radlens_shared::grounding::{CascadeStep, CascadeStepValues, ModelRandomization, RandomizationSettings, cascade_steps, map_spearman};

use super::image::{CaseImage, EncodeError};
use super::plan::{Capture, CasePlan};
use super::run::{Case, run_case};
use crate::models::checkpoint::redraw::Redraw;
use crate::models::error::ModelError;
use crate::models::loader::Engine;

/// One sampled case: the image as read from disk and the question.
pub struct CascadeCase {
    pub sample_id: String,
    pub image: DynamicImage,
    pub question: String,
}

/// How to run the check for one model.
pub struct Cascade<'a> {
    pub model: &'a str,
    /// The checkpoint as it is.
    pub engine: &'a Engine,
    /// The same checkpoint with the weights a step covers re-drawn.
    pub load_redrawn: &'a dyn Fn(&Redraw) -> Result<Engine, ModelError>,
    /// The study's map plan; its trust checks and grounding are not run here.
    pub plan: &'a CasePlan,
    pub device: &'a Device,
    pub settings: RandomizationSettings,
    /// Checked between steps: a stopped check is not recorded (a rerun makes it whole).
    pub stop: &'a AtomicBool,
}

/// A case ready to run again under each step: its encoding by the original tower, its prompt and
/// its original map.
struct Prepared<'a> {
    case: &'a CascadeCase,
    image: CaseImage,
    prompt: crate::models::processor::EncodedPrompt,
    map: AttentionMap,
}

/// The attention map of `image` + `question` under `engine` (a labelled fallback is no
/// attention map: the check is about attention).
fn attention_map(
    engine: &Engine,
    plan: &CasePlan,
    image: &CaseImage,
    prompt: &crate::models::processor::EncodedPrompt,
) -> Result<AttentionMap, String> {
    let case = Case::plain(engine, plan, image, prompt, Capture::Map);
    let outcome = run_case(case).map_err(|e| e.to_string())?;
    let map = outcome.map.ok_or("no map was captured")?;
    if map.attention.is_none() {
        return Err(format!("no attention map ({})", map.own.provenance.fallback_reason.unwrap_or_default()));
    }
    let g = map.own.provenance.geometry;
    AttentionMap::new(g.h, g.w, map.own.values).map_err(|e| e.to_string())
}

/// Runs the cascade on `cases`; `None` when stopped. A case or step that cannot be run is a
/// note, and its values are `None`.
pub fn run_cascade(c: &Cascade<'_>, cases: &[CascadeCase]) -> Option<ModelRandomization> {
    let plan = c.plan;
    let mut notes = Vec::new();
    let mut prepared = Vec::new();
    let mut sample_ids = Vec::new();
    for case in cases {
        let ready = CaseImage::encode(c.engine, &case.image, c.device)
            .map_err(|e| match e {
                EncodeError::Preprocess(e) | EncodeError::Encode(e) => e.to_string(),
            })
            .and_then(|image| {
                let prompt = c.engine.prompter.encode_for_image(&case.question, None, image.image_tokens()).map_err(|e| e.to_string())?;
                let map = attention_map(c.engine, plan, &image, &prompt)?;
                Ok(Prepared { case, image, prompt, map })
            });
        match ready {
            Ok(p) => {
                sample_ids.push(case.sample_id.clone());
                prepared.push(p);
            }
            Err(e) => notes.push(format!("{}: left out: {e}", case.sample_id)),
        }
    }
    let lm_layers = plan.num_layers;
    let mut steps = Vec::new();
    for step in cascade_steps(lm_layers as u32) {
        if c.stop.load(Ordering::SeqCst) {
            return None;
        }
        let redraw = Redraw {
            top_lm_layers: match step {
                CascadeStep::Layers(k) => k as usize,
                CascadeStep::Vision => lm_layers,
            },
            lm_layers,
            vision: step == CascadeStep::Vision,
            seed: c.settings.seed,
        };
        let values = match (c.load_redrawn)(&redraw) {
            Ok(engine) => prepared.iter().map(|p| step_value(&engine, plan, p, step, c.device, &mut notes)).collect(),
            Err(e) => {
                notes.push(format!("step {step}: the re-drawn model could not be built: {e}"));
                vec![None; prepared.len()]
            }
        };
        steps.push(CascadeStepValues { step, spearman: values });
    }
    Some(ModelRandomization::new(c.model.to_string(), c.settings, lm_layers as u32, sample_ids, steps, notes))
}

/// One case's Spearman under one step. The LM steps keep the original image features (the tower
/// is untouched); the vision step encodes the image with the re-drawn tower.
fn step_value(
    engine: &Engine,
    plan: &CasePlan,
    p: &Prepared<'_>,
    step: CascadeStep,
    device: &Device,
    notes: &mut Vec<String>,
) -> Option<f64> {
    let result = match step {
        CascadeStep::Layers(_) => attention_map(engine, plan, &p.image, &p.prompt),
        CascadeStep::Vision => CaseImage::encode(engine, &p.case.image, device)
            .map_err(|e| match e {
                EncodeError::Preprocess(e) | EncodeError::Encode(e) => e.to_string(),
            })
            .and_then(|image| attention_map(engine, plan, &image, &p.prompt)),
    }
    .and_then(|m| map_spearman(&p.map, &m).map_err(|e| e.to_string()));
    match result {
        Ok(v) => v,
        Err(e) => {
            notes.push(format!("{} at step {step}: {e}", p.case.sample_id));
            None
        }
    }
}
