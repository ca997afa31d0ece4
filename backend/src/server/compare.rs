//! `POST /api/compare` (multipart: `image` + `question`, optionally `conditions` and `box`): every
//! model of the serve `--model` list answers the question about the image, with its map, metrics
//! and the cross-model Jensen-Shannon divergence on a common grid over the whole image, and, for
//! each image condition asked for (blank, jpeg90, contrast90, roi_occluded), its answer and
//! margin on the changed image. The upload is checked
//! before any model sees it: size cap, PNG/JPEG magic bytes, a pixel cap read from the header
//! before decoding, an allocation cap while decoding.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device};
use radlens_shared::AttentionMap;
use radlens_shared::api::{
    COMPARE_CONDITIONS, CompareResponse, ConditionAnswer, CrossModel, GridPayload, ImageSize, MapPayload, ModelAnswer,
};
use radlens_shared::geometry::PixelBox;
use radlens_shared::geometry::{DEFAULT_COMMON_GRID, resample};
use radlens_shared::grounding::{ImageCondition, NullEdit};
use radlens_shared::metrics::{MapMetrics, js_divergence};

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::auth::require_full;
use super::error::ApiError;
use super::images::{MAX_PIXELS, decode_limited};
use super::multipart;
use crate::case::image::EncodeError;
use crate::case::null_edit::edit_image;
use crate::case::{Capture, Case, CaseImage, CasePlan, CaseSpec, run_case};
use crate::models::checkpoint::llava_rad::PartOverrides;
use crate::models::linear::WeightFormat;
use crate::models::loader::{Engine, load_engine};
use crate::study::conditions::{blank_image, occlude};

/// Largest upload (image + question).
pub const UPLOAD_LIMIT: usize = 20 * 1024 * 1024;
/// Longest question.
pub const MAX_QUESTION: usize = 2000;

/// Requests waiting for the compare worker at once (beyond: 429).
const MAX_WAITING: usize = 4;
/// Tokens generated per answer.
const MAX_NEW_TOKENS: usize = 8;

type Reply = tokio::sync::oneshot::Sender<Result<serde_json::Value, ApiError>>;

/// The models compare may use, loaded lazily, on first use, by one worker thread that owns
/// them (requests queue for it: one inference at a time, the CPU's whole attention).
pub struct Models {
    pub specs: Vec<(String, PathBuf)>,
    worker: OnceLock<std::sync::mpsc::SyncSender<(CompareInput, Reply)>>,
}

impl Models {
    pub fn new(specs: Vec<(String, PathBuf)>) -> Self {
        Self { specs, worker: OnceLock::new() }
    }

    fn sender(&self) -> &std::sync::mpsc::SyncSender<(CompareInput, Reply)> {
        self.worker.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(CompareInput, Reply)>(MAX_WAITING);
            let specs = self.specs.clone();
            std::thread::Builder::new()
                .name("radlens-compare".into())
                .spawn(move || {
                    let mut engines: HashMap<String, Engine> = HashMap::new();
                    while let Ok((input, reply)) = rx.recv() {
                        let out = run_all(&specs, &mut engines, &input);
                        let _ = reply.send(out);
                    }
                })
                .expect("spawn the compare worker");
            tx
        })
    }

    /// Runs every model on the input (queued behind earlier requests).
    pub async fn run(&self, input: CompareInput) -> Result<serde_json::Value, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sender().try_send((input, tx)).map_err(|e| match e {
            std::sync::mpsc::TrySendError::Full(_) => ApiError::TooManyRequests("the models are busy: try again shortly".into()),
            std::sync::mpsc::TrySendError::Disconnected(_) => ApiError::internal("the compare worker has stopped"),
        })?;
        rx.await.map_err(|_| ApiError::internal("the compare worker dropped a request"))?
    }
}

struct ModelOutput {
    answer: ModelAnswer,
    /// The map on the common grid over the whole image.
    common: Vec<f64>,
}

fn run_all(
    specs: &[(String, PathBuf)],
    engines: &mut HashMap<String, Engine>,
    input: &CompareInput,
) -> Result<serde_json::Value, ApiError> {
    let mut results = Vec::new();
    let mut commons: Vec<(String, Vec<f64>)> = Vec::new();
    for (name, dir) in specs {
        if !engines.contains_key(name) {
            match load_engine(dir, &PartOverrides { base: None, vision_checkpoint: None }, DType::F32, &Device::Cpu, WeightFormat::Dense) {
                Ok(e) => {
                    engines.insert(name.clone(), e);
                }
                Err(e) => {
                    eprintln!("radlens serve: compare: cannot load model {name}: {e}");
                    results.push(ModelAnswer::failed(name, "the model could not be loaded (see the server log)"));
                    continue;
                }
            }
        }
        let engine = &engines[name];
        match run_one(name, engine, input) {
            Ok(out) => {
                commons.push((name.clone(), out.common));
                results.push(out.answer);
            }
            Err(e) => {
                eprintln!("radlens serve: compare: model {name}: {e:#}");
                results.push(ModelAnswer::failed(name, "the model failed on this input (see the server log)"));
            }
        }
    }
    let mut cross = Vec::new();
    for i in 0..commons.len() {
        for j in i + 1..commons.len() {
            let (a, pa) = &commons[i];
            let (b, pb) = &commons[j];
            if let Ok(d) = js_divergence(pa, pb) {
                cross.push(CrossModel {
                    model_a: a.clone(),
                    model_b: b.clone(),
                    grid: COMMON_GRID,
                    js_divergence: d,
                    js_distance: d.sqrt(),
                });
            }
        }
    }
    let response = CompareResponse {
        question: input.question.clone(),
        image: ImageSize { width: input.image.width(), height: input.image.height() },
        models: results,
        cross_model: cross,
    };
    serde_json::to_value(response).map_err(ApiError::internal)
}

const COMMON_GRID: usize = DEFAULT_COMMON_GRID;

fn run_one(name: &str, engine: &Engine, input: &CompareInput) -> anyhow::Result<ModelOutput> {
    let t = Instant::now();
    let summary = engine.model.summary();
    // Compare's fixed settings: the standard map (last quarter, mean over heads, last prompt row).
    let plan = CasePlan::resolve(CaseSpec::standard(MAX_NEW_TOKENS), name, &summary)?;
    let image = CaseImage::encode(engine, &input.image, &Device::Cpu).map_err(|e| match e {
        EncodeError::Preprocess(e) | EncodeError::Encode(e) => e,
    })?;
    let prompt = engine.prompter.encode_for_image(&input.question, None, image.image_tokens())?;
    let case = Case::plain(engine, &plan, &image, &prompt, Capture::Map);
    let outcome = run_case(case)?;
    let case_map = outcome.map.context("compare captures a map")?;
    // Compare shows attention only: a fallback map is an error here, not a silent stand-in.
    let attention = case_map
        .attention
        .as_ref()
        .with_context(|| format!("no attention map: {}", case_map.own.provenance.fallback_reason.clone().unwrap_or_default()))?;
    let geometry = image.geometry;
    let map = AttentionMap::new(geometry.h, geometry.w, attention.fused.clone())?;
    let metrics = MapMetrics::of(&map)?;
    let common = resample(&map.values, map.h, map.w, &geometry.crop, geometry.image_w, geometry.image_h, COMMON_GRID)?;
    let provenance = case_map.own.provenance;
    let conditions = input.conditions.iter().map(|&c| condition_answer(engine, &plan, &prompt, input, c, outcome.parsed)).collect();
    let answer = ModelAnswer {
        model: name.to_string(),
        error: None,
        architecture: Some(summary.architecture.to_string()),
        parsed_answer: Some(outcome.parsed),
        yes_no_margin: outcome.margin,
        map: Some(MapPayload { h: map.h, w: map.w, values: map.values, provenance, image_share: attention.image_share, metrics }),
        common_map: Some(GridPayload { h: COMMON_GRID, w: COMMON_GRID, values: common.clone() }),
        latency_ms: Some(t.elapsed().as_secs_f64() * 1e3),
        answer: Some(outcome.answer_text),
        conditions,
    };
    Ok(ModelOutput { answer, common })
}

/// The question on the upload under `condition` (G6's image, no map), against `real`, the
/// answer on the upload as it is.
fn condition_answer(
    engine: &Engine,
    plan: &CasePlan,
    prompt: &crate::models::processor::EncodedPrompt,
    input: &CompareInput,
    condition: ImageCondition,
    real: radlens_shared::answer::Answer,
) -> ConditionAnswer {
    let run = || -> anyhow::Result<ConditionAnswer> {
        let shown = match condition {
            ImageCondition::Blank => blank_image(),
            ImageCondition::Jpeg90 => edit_image(&input.image, NullEdit::Jpeg90).map_err(anyhow::Error::msg)?,
            ImageCondition::Contrast90 => edit_image(&input.image, NullEdit::Contrast90).map_err(anyhow::Error::msg)?,
            ImageCondition::RoiOccluded => {
                occlude(&input.image, &input.roi.context("roi_occluded needs a box")?).map_err(anyhow::Error::msg)?
            }
            other => anyhow::bail!("{other} is not run on an upload"),
        };
        let image = CaseImage::encode(engine, &shown, &Device::Cpu).map_err(|e| match e {
            EncodeError::Preprocess(e) | EncodeError::Encode(e) => e,
        })?;
        // A dynamic-resolution model's prompt follows the shown image's grid.
        let own;
        let prompt = if image.image_tokens() == prompt.image_positions.len() {
            prompt
        } else {
            own = engine.prompter.encode_for_image(&input.question, None, image.image_tokens())?;
            &own
        };
        let case = Case::plain(engine, plan, &image, prompt, Capture::Nothing);
        let outcome = run_case(case)?;
        Ok(ConditionAnswer {
            condition,
            answer: Some(outcome.answer_text),
            parsed_answer: Some(outcome.parsed),
            yes_no_margin: outcome.margin,
            same_as_real: Some(outcome.parsed == real),
            error: None,
        })
    };
    run().unwrap_or_else(|e| {
        eprintln!("radlens serve: compare: {condition}: {e:#}");
        ConditionAnswer {
            condition,
            answer: None,
            parsed_answer: None,
            yes_no_margin: None,
            same_as_real: None,
            error: Some("the model failed on this condition (see the server log)".into()),
        }
    })
}

/// The checked inputs of a compare request.
pub struct CompareInput {
    pub image: image::DynamicImage,
    pub question: String,
    /// The image conditions to run as well (`conditions` field), each once, in the order asked.
    pub conditions: Vec<ImageCondition>,
    /// The box `roi_occluded` fills (`box` field: x,y,w,h in the image's pixels).
    pub roi: Option<PixelBox>,
}

/// The `conditions` field: comma-separated names from [`COMPARE_CONDITIONS`].
fn parse_conditions(text: &str) -> Result<Vec<ImageCondition>, ApiError> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let c: ImageCondition = name.parse().map_err(ApiError::BadRequest)?;
        if !COMPARE_CONDITIONS.contains(&c) {
            let names: Vec<&str> = COMPARE_CONDITIONS.iter().map(|c| c.name()).collect();
            return Err(ApiError::BadRequest(format!("condition {name} needs a study, not an upload (compare runs {})", names.join(", "))));
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// The `box` field: `x,y,w,h` with a positive width and height.
fn parse_box(text: &str) -> Result<PixelBox, ApiError> {
    let bad = || ApiError::BadRequest(format!("box {text:?}: expected x,y,w,h with a positive width and height"));
    let v: Vec<f64> = text.split(',').map(|x| x.trim().parse::<f64>()).collect::<Result<_, _>>().map_err(|_| bad())?;
    match v.as_slice() {
        &[x, y, w, h] => PixelBox::from_xywh(x, y, w, h).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// Reads and checks the multipart upload.
pub async fn read_input(req: &HttpRequest, payload: web::Payload) -> Result<CompareInput, ApiError> {
    let parts = multipart::read(req, payload, UPLOAD_LIMIT, 8).await?;
    let mut image = None;
    let mut question = None;
    let mut conditions = Vec::new();
    let mut roi = None;
    let text = |data: Vec<u8>, what: &str| String::from_utf8(data).map_err(|_| ApiError::BadRequest(format!("the {what} is not UTF-8")));
    for p in parts {
        match p.name.as_str() {
            "image" => image = Some(p.data),
            "question" => question = Some(text(p.data, "question")?),
            "conditions" => conditions = parse_conditions(&text(p.data, "conditions field")?)?,
            "box" => roi = Some(parse_box(&text(p.data, "box field")?)?),
            other => return Err(ApiError::BadRequest(format!("unknown field {other:?}"))),
        }
    }
    if conditions.contains(&ImageCondition::RoiOccluded) && roi.is_none() {
        return Err(ApiError::BadRequest("roi_occluded needs the box to fill (field box: x,y,w,h)".into()));
    }
    let bytes = image.ok_or_else(|| ApiError::BadRequest("the image (field image) is missing".into()))?;
    let question = question
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty())
        .ok_or_else(|| ApiError::BadRequest("the question (field question) is missing".into()))?;
    if question.len() > MAX_QUESTION {
        return Err(ApiError::PayloadTooLarge(format!("the question is over {MAX_QUESTION} bytes")));
    }
    let image = web::block(move || decode_limited(&bytes, MAX_PIXELS)).await.map_err(ApiError::internal)??;
    if let Some(b) = roi
        && !b.inside_image(image.width(), image.height())
    {
        return Err(ApiError::BadRequest(format!("the box is not inside the {}x{} image", image.width(), image.height())));
    }
    Ok(CompareInput { image, question, conditions, roi })
}

/// POST /api/compare
pub async fn compare(req: HttpRequest, state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    require_full(&req)?;
    let input = read_input(&req, payload).await?;
    if state.compare.specs.is_empty() {
        return Err(ApiError::Unavailable("this server was started without --model NAME=DIR: nothing to compare".into()));
    }
    let out = state.compare.run(input).await?;
    Ok(HttpResponse::Ok().json(out))
}
