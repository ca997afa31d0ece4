//! One case through the whole path: generation with the plan's probe, the answer and its
//! margin, the fused map (or the labelled fallback that stands in for it), and the trust checks
//! the plan asks for. `probe`, the study runner, the server's compare and the benches all call
//! [`run_case`]; none of them builds a capture policy or a provenance of its own.

use std::time::Instant;

use candle_core::Tensor;
use radlens_shared::answer::{Answer, parse_answer, yes_no_margin};
use radlens_shared::geometry::{MapGeometry, PixelBox};
use radlens_shared::map::normalize_vec;

use super::CaseError;
use super::capture::fuse_captured;
use super::grounding::{self, GroundingOutcome};
use super::image::{CaseImage, ms};
use super::null_edit::{self, EditedImage, Unedited};
use super::occlusion::OccludedImages;
use super::plan::{Capture, CasePlan, QueryRows};
use super::trust::{self, CaseInput, MethodValues, TrustChecks};
use crate::models::VisionLanguageModel;
use crate::models::generate::{Generation, Prefix, greedy_from};
use crate::models::loader::Engine;
use crate::models::probe::AttentionRecorder;
use crate::models::processor::EncodedPrompt;

/// One (image, question, model) case, ready to run.
pub struct Case<'a> {
    pub engine: &'a Engine,
    pub plan: &'a CasePlan,
    pub image: &'a CaseImage,
    pub prompt: &'a EncodedPrompt,
    /// A prompt prefix already run on this image (a study's variants share it); used only where
    /// the plan's rows are not inside it.
    pub prefix: Option<Prefix<'a>>,
    pub capture: Capture,
    /// The generic prompt's map over this image, when the plan's trust checks want sinks (made
    /// once per image by the caller, see [`trust::generic_map`]).
    pub generic: Option<&'a Result<Vec<f64>, String>>,
    /// Seeds the deletion tests' random cells (stable per sample, so a resume draws the same).
    pub seed: u64,
    /// The radiologist box, for the box controls and box score.
    pub roi: Option<PixelBox>,
    /// The row's confound box (a known shortcut region), for the map's mass on it.
    pub confound: Option<PixelBox>,
    /// The image's occluded encodings, when the caller shares them between questions.
    pub occluded: Option<&'a OccludedImages>,
    /// The image's null edits (G4), encoded; run when the plan's grounding asks for them.
    pub null_edits: Option<&'a [EditedImage]>,
}

impl<'a> Case<'a> {
    /// A case with nothing shared and no extras: no prefix, no generic map, no box, no
    /// occluded or edited images (compare's conditions, the randomisation cascade).
    pub fn plain(engine: &'a Engine, plan: &'a CasePlan, image: &'a CaseImage, prompt: &'a EncodedPrompt, capture: Capture) -> Self {
        Self {
            engine,
            plan,
            image,
            prompt,
            prefix: None,
            capture,
            generic: None,
            seed: 0,
            roi: None,
            confound: None,
            occluded: None,
            null_edits: None,
        }
    }
}

/// The raw attention behind a map.
#[derive(Debug, Clone)]
pub struct AttentionCapture {
    /// The fused map as computed (what the run directory stores).
    pub fused: Vec<f64>,
    /// The attention mass the rows put on the image.
    pub image_share: f64,
    /// `[rows, layers, heads, image tokens]` f32: the captured probabilities over the image, for
    /// re-fusing later with other heads or layers.
    pub head_rows: Vec<f32>,
    pub head_rows_shape: [usize; 4],
}

/// A case's own map: attention, or the labelled fallback standing in for it.
#[derive(Debug, Clone)]
pub struct CaseMap {
    /// Normalised, with its provenance (method, layers, rows, geometry, any fallback reason).
    pub own: MethodValues,
    /// Present when `own` is attention.
    pub attention: Option<AttentionCapture>,
}

/// Everything one case produced.
pub struct CaseOutcome {
    pub generation: Generation,
    pub answer_text: String,
    pub parsed: Answer,
    /// `logit(yes) - logit(no)` at the last prompt position.
    pub margin: Option<f64>,
    pub rows: QueryRows,
    /// None when the case captured nothing.
    pub map: Option<CaseMap>,
    /// The plan's trust checks, when it asks for any and there is a map.
    pub trust: Option<TrustChecks>,
    /// The grounding figures, when the plan asks for them and there is a map.
    pub grounding: Option<GroundingOutcome>,
    /// What the probe kept (`probe --dump` writes it).
    pub recorder: AttentionRecorder,
    /// Fusion (and a fallback's extra pass), and the trust checks' and grounding's passes.
    pub capture_ms: f64,
    pub trust_ms: f64,
}

/// Runs `case`. A map that cannot be fused from attention is replaced by the labelled fallback
/// (Grad-CAM, else uniform), never an error; a trust check that fails is a note.
pub fn run_case(case: Case<'_>) -> Result<CaseOutcome, CaseError> {
    let Case { engine, plan, image, prompt, prefix, capture, generic, seed, roi, confound, occluded, null_edits } = case;
    let tokenizer = engine.prompter.tokenizer();
    let rows = plan.query_rows(prompt, tokenizer)?;
    let (generation, recorder) =
        generate_captured(engine.model.as_ref(), plan, &image.features, prompt, &rows, prefix, capture).map_err(CaseError::Inference)?;
    let answer_text = tokenizer.decode(generation.answer_ids(), true).map_err(CaseError::Inference)?;
    let yes = tokenizer.single_token_spellings("yes");
    let no = tokenizer.single_token_spellings("no");
    let margin = yes_no_margin(generation.prompt_last_logits(), &yes, &no);
    let input = CaseInput {
        model: engine.model.as_ref(),
        input_ids: &prompt.input_ids,
        pixel_values: &image.pixels,
        geometry: image.geometry,
        yes_ids: &yes,
        no_ids: &no,
    };

    let t = Instant::now();
    let map = (capture != Capture::Nothing).then(|| {
        let query_positions = plan.query_positions(&rows, generation.answer_ids().len());
        fused_map(plan, &recorder, &query_positions, prompt, image.geometry).unwrap_or_else(|reason| {
            let like = plan.provenance(image.geometry, &query_positions, Vec::new(), Vec::new());
            CaseMap { own: trust::fallback_map(&input, &like, &reason), attention: None }
        })
    });
    let capture_ms = ms(t);

    let t = Instant::now();
    let trust = match (&plan.spec.trust, &map) {
        (Some(settings), Some(map)) => Some(trust::checks(&input, settings, &map.own, generic, seed)),
        _ => None,
    };
    // Grounding holds every map the case made against the occlusion reference and the box.
    let mut grounding = match (plan.spec.grounding, &map) {
        (Some(settings), Some(map)) => {
            let maps: Vec<&MethodValues> = std::iter::once(&map.own).chain(trust.iter().flat_map(|t| t.maps.iter())).collect();
            Some(grounding::ground(&input, image, settings, occluded, &maps, grounding::Boxes { roi, confound }))
        }
        _ => None,
    };
    // The null edits re-run the case on edited images and compare the record's own map.
    if let (Some(g), Some(map), Some(edits)) =
        (grounding.as_mut(), &map, null_edits.filter(|_| plan.spec.grounding.is_some_and(|s| s.null_edits)))
    {
        let unedited = Unedited { answer: parse_answer(&answer_text), margin, map };
        let (records, notes) = null_edit::rerun(&input, plan, prompt, &rows, tokenizer, unedited, edits);
        g.record.notes.extend(notes);
        match g.record.maps.iter_mut().find(|m| m.method == map.own.provenance.method) {
            Some(own) => own.figures.null_edits = records,
            None => g.record.notes.push("null edits: the record's own map has no grounding entry".into()),
        }
    }
    let trust_ms = ms(t);

    Ok(CaseOutcome {
        parsed: parse_answer(&answer_text),
        answer_text,
        margin,
        rows,
        map,
        trust,
        grounding,
        recorder,
        generation,
        capture_ms,
        trust_ms,
    })
}

/// The model-level core of a case: greedy generation under the plan's probe, continuing from
/// `prefix` where the plan's rows are not inside it. Needs no tokenizer, so the benches run it
/// on random-weight models with synthetic prompts.
pub fn generate_captured(
    model: &dyn VisionLanguageModel,
    plan: &CasePlan,
    features: &Tensor,
    prompt: &EncodedPrompt,
    rows: &QueryRows,
    prefix: Option<Prefix<'_>>,
    capture: Capture,
) -> crate::models::error::Result<(Generation, AttentionRecorder)> {
    let prefix = prefix.filter(|p| plan.prefix_usable(rows, p.len));
    let mut recorder = AttentionRecorder::new(plan.policy(rows, capture));
    let generation = greedy_from(model, &prompt.input_ids, features, prefix, plan.spec.max_new_tokens, &mut recorder)?;
    Ok((generation, recorder))
}

/// The map fused from the captured rows, with the raw image rows behind it; the reason when
/// attention cannot make one (e.g. no captured layer sees the image).
pub fn fused_map(
    plan: &CasePlan,
    recorder: &AttentionRecorder,
    query_positions: &[usize],
    prompt: &EncodedPrompt,
    geometry: MapGeometry,
) -> Result<CaseMap, String> {
    let captured = fuse_captured(recorder, &plan.layers, query_positions, &prompt.image_positions, plan.spec.head_fusion)
        .map_err(|e| e.to_string())?;
    let values = normalize_vec(&captured.fused.values).map_err(|e| e.to_string())?;
    let n = prompt.image_positions.len();
    let mut head_rows = Vec::with_capacity(query_positions.len() * plan.layers.len() * plan.num_heads * n);
    for &pos in query_positions {
        for &layer in &plan.layers {
            let r = recorder.row(layer, pos).ok_or_else(|| format!("row {pos} of layer {layer} was not captured"))?;
            for h in 0..r.heads {
                let head = r.head(h);
                head_rows.extend(prompt.image_positions.iter().map(|&k| head[k]));
            }
        }
    }
    let provenance = plan.provenance(geometry, query_positions, captured.layers_used, captured.layers_without_image);
    Ok(CaseMap {
        own: MethodValues { values, provenance },
        attention: Some(AttentionCapture {
            fused: captured.fused.values,
            image_share: captured.fused.image_share,
            head_rows,
            head_rows_shape: [query_positions.len(), plan.layers.len(), plan.num_heads, n],
        }),
    })
}
