//! `radlens probe`: one question about one image; the answer and where the model looked.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use radlens_shared::AttentionMap;
use radlens_shared::answer::Answer;
use radlens_shared::fusion::MapProvenance;
use radlens_shared::grounding::CaseGrounding;
use radlens_shared::metrics::MapMetrics;
use radlens_shared::record::{Faithfulness, SinkCheck};
use radlens_shared::trust::MethodPair;
use serde::Serialize;

use crate::case::null_edit;
use crate::case::trust::{self, MethodValues};
use crate::case::{Capture, Case, CaseError, CaseImage, CaseOutcome, CasePlan, run_case};
use crate::cli::ProbeArgs;
use crate::error::InputError;
use crate::models::checkpoint::llava_rad::PartOverrides;
use crate::models::error::ModelError;
use crate::models::generate::Generation;
use crate::models::llava::IMAGE_PLACEHOLDER;
use crate::models::loader::load_engine;
use crate::models::probe::AttentionRecorder;
use crate::models::processor::preprocess::load_image;

mod images;

/// What every report starts with: the model, its architecture and the dtype it ran in.
struct Header {
    model: String,
    architecture: &'static str,
    dtype: String,
}

#[derive(Serialize)]
struct ProbeReport {
    model: String,
    architecture: &'static str,
    dtype: String,
    question: String,
    input_ids: Vec<u32>,
    image_token_positions: Vec<usize>,
    generated_ids: Vec<u32>,
    answer: String,
    parsed_answer: Answer,
    yes_no_margin: Option<f64>,
    map: ProbeMap,
    /// `--gradcam`, `--faithfulness`, `--sinks`: other methods' maps and the checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    trust: Option<ProbeTrust>,
    /// `--occlusion` (and `--box`): the grounding figures of every map.
    #[serde(skip_serializing_if = "Option::is_none")]
    grounding: Option<CaseGrounding>,
    /// `--prior` / `--lateral`: every image of the prompt (prompt order), each with its map on
    /// its own grid and its share of the mass.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<images::ProbeImage>,
    timings_ms: Timings,
}

#[derive(Serialize, Default)]
struct ProbeTrust {
    maps: Vec<ProbeMap>,
    faithfulness: Vec<Faithfulness>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sinks: Option<SinkCheck>,
    agreement: Vec<MethodPair>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

#[derive(Serialize)]
struct ProbeMap {
    #[serde(flatten)]
    map: AttentionMap,
    image_share: f64,
    metrics: MapMetrics,
    provenance: MapProvenance,
}

#[derive(Serialize, Default)]
struct Timings {
    load: f64,
    preprocess: f64,
    prefill: f64,
    decode: f64,
    capture: f64,
    /// The trust checks' extra passes.
    trust: f64,
    total: f64,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

pub fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let runtime = args.runtime.resolve()?;
    let (dtype, device) = (runtime.dtype, runtime.device.clone());
    crate::models::loader::check_dtype(dtype, &device)?;
    let mut timings = Timings::default();

    let overrides = PartOverrides { base: args.base.clone(), vision_checkpoint: args.vision_checkpoint.clone() };
    let engine = load_engine(&args.model, &overrides, dtype, &device, runtime.weights)?;
    let summary = engine.model.summary();
    let model_name = args.model.file_name().map_or_else(|| args.model.display().to_string(), |n| n.to_string_lossy().into_owned());
    let spec = args.capture.spec(
        args.max_new_tokens as usize,
        args.trust.settings(),
        args.grounding_args.settings(args.occlusion, args.null_edits),
    );
    let plan = CasePlan::resolve(spec, &model_name, &summary).map_err(|e| InputError::Flag { flag: "--layers", message: e.to_string() })?;
    timings.load = ms(start);
    let header = Header {
        model: model_name.clone(),
        architecture: summary.architecture,
        dtype: format!(
            "{}{}",
            crate::models::dtype_name(dtype),
            match runtime.weights {
                crate::models::linear::WeightFormat::Dense => String::new(),
                q => format!(" + {q} weights"),
            }
        ),
    };
    if args.prior.is_some() || args.lateral.is_some() {
        let report = images::run(args, &engine, &plan, &device, header, timings, start)?;
        print_report(&report, args.json)?;
        return Ok(());
    }

    let t = Instant::now();
    let image = args.image.as_deref().map(load_image).transpose()?;
    let preprocessed = image.as_ref().map(|img| engine.image_processor.preprocess(img)).transpose()?;
    let case_image = match &args.pixel_values {
        Some(path) => {
            // A model without a fixed grid (Qwen2.5-VL, summary grid 0) takes any H x W.
            let pv = read_pixel_values(path, summary.grid_h == 0)?.to_device(&device)?;
            // Stored pixels: the geometry comes from the image when given, else the input itself.
            let geometry = match &preprocessed {
                Some(p) => {
                    let (h, w) = engine.model.image_grid(&pv)?;
                    radlens_shared::geometry::MapGeometry { h, w, crop: p.crop, image_w: p.image_w, image_h: p.image_h }
                }
                None => CaseImage::input_geometry(&engine, &pv)?,
            };
            CaseImage::from_pixels(&engine, pv, geometry)?
        }
        None => {
            let img = image.as_ref().context("an image is required without --pixel-values")?;
            CaseImage::encode(&engine, img, &device).map_err(|e| match e {
                crate::case::image::EncodeError::Preprocess(e) | crate::case::image::EncodeError::Encode(e) => e,
            })?
        }
    };
    let prompt = engine.prompter.encode_for_image(&args.question, args.system.as_deref(), case_image.image_tokens())?;
    timings.preprocess = ms(t);

    // A box must lie on the image (its pixels, not the model's input).
    let roi = args.roi.map(|b| b.0);
    if let Some(b) = roi {
        let g = case_image.geometry;
        if !b.inside_image(g.image_w, g.image_h) {
            return Err(InputError::Flag {
                flag: "--box",
                message: format!("({}, {})-({}, {}) is not inside the {}x{} image", b.x0, b.y0, b.x1, b.y1, g.image_w, g.image_h),
            }
            .into());
        }
    }
    if let Some(g) = plan.spec.grounding.filter(|g| g.occlusion) {
        let side = case_image.pixels.dim(2)?.min(case_image.pixels.dim(3)?);
        if g.occlusion_grid > side {
            return Err(InputError::Flag {
                flag: "--occlusion-grid",
                message: format!("{} is larger than the model's input side {side}", g.occlusion_grid),
            }
            .into());
        }
    }
    // The generic prompt's map (sinks and the relative map), over the same features.
    let t = Instant::now();
    let sinks = plan.spec.trust.as_ref().is_some_and(|s| s.sinks);
    let generic = sinks.then(|| trust::generic_map(&engine, &plan, &case_image.features).map_err(|e| format!("generic-prompt map: {e}")));
    let generic_ms = ms(t);

    // A dump keeps every layer (and every decode step); otherwise only what the map uses.
    let capture = if args.dump.is_some() { Capture::EveryLayer } else { Capture::Map };
    // The null edits are made on the original image (clap refuses them with --pixel-values).
    let edits = match (&image, args.null_edits) {
        (Some(img), true) => Some(null_edit::encode_edits(&engine, img, &device)),
        _ => None,
    };
    let case = Case {
        engine: &engine,
        plan: &plan,
        image: &case_image,
        prompt: &prompt,
        prefix: None,
        capture,
        generic: generic.as_ref(),
        seed: 0,
        roi,
        confound: None,
        occluded: None,
        null_edits: edits.as_deref(),
    };
    let outcome = run_case(case).map_err(case_error)?;
    let CaseOutcome { generation, answer_text, parsed, margin, map, trust: checks, grounding, recorder, capture_ms, trust_ms, .. } =
        outcome;
    let map = map.context("the probe captures a map")?;
    timings.prefill = generation.prefill_ms;
    timings.decode = generation.decode_ms;
    timings.capture = capture_ms;
    timings.trust = trust_ms + generic_ms;

    let image_share = map.attention.as_ref().map_or(0.0, |a| a.image_share);
    let sink_check = match (&generic, &map.attention) {
        (Some(Ok(g)), Some(_)) => trust::sink_checks(&[Some(&map.own.values)], g).pop().flatten(),
        _ => None,
    };
    let occlusion_map = grounding.as_ref().and_then(|g| g.occlusion_map.clone());
    let trust = checks.map(|c| -> anyhow::Result<ProbeTrust> {
        Ok(ProbeTrust {
            maps: c.maps.into_iter().chain(occlusion_map.clone()).map(probe_map).collect::<Result<_, _>>()?,
            faithfulness: c.faithfulness,
            sinks: sink_check,
            agreement: c.agreement,
            notes: c.notes,
        })
    });
    let report = ProbeReport {
        model: header.model,
        architecture: header.architecture,
        dtype: header.dtype,
        question: args.question.clone(),
        input_ids: prompt.input_ids.clone(),
        image_token_positions: prompt.image_positions.clone(),
        generated_ids: generation.ids.clone(),
        parsed_answer: parsed,
        answer: answer_text,
        yes_no_margin: margin,
        map: ProbeMap { image_share, ..probe_map(map.own)? },
        trust: match trust.transpose()? {
            // Grounding alone: the occlusion map is shown with the other methods' maps.
            None if occlusion_map.is_some() => {
                Some(ProbeTrust { maps: occlusion_map.into_iter().map(probe_map).collect::<Result<_, _>>()?, ..ProbeTrust::default() })
            }
            t => t,
        },
        grounding: grounding.map(|g| g.record),
        images: Vec::new(),
        timings_ms: Timings { total: ms(start), ..timings },
    };
    if let Some(path) = &args.dump {
        let l = prompt.input_ids.len();
        // Gemma3's processor also returns token_type_ids (1 at image soft tokens).
        let token_type_ids = (summary.architecture == "gemma3")
            .then(|| (0..l).map(|i| i64::from(prompt.image_positions.contains(&i))).collect::<Vec<i64>>());
        write_dump(
            path,
            &prompt.input_ids,
            token_type_ids,
            &case_image.pixels,
            &generation,
            &recorder,
            summary.num_layers,
            summary.num_heads,
        )?;
    }
    print_report(&report, args.json)
}

fn print_report(report: &ProbeReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print_human(report);
    }
    Ok(())
}

/// A case's error as the probe reports it: a bad `--query` term is the user's to fix.
fn case_error(e: CaseError) -> anyhow::Error {
    match e {
        CaseError::TermNotFound(_) | CaseError::Plan(_) => InputError::Flag { flag: "--query", message: e.to_string() }.into(),
        CaseError::Inference(e) => e.into(),
    }
}

/// A normalised map as the probe prints it, with its metrics.
fn probe_map(m: MethodValues) -> Result<ProbeMap, ModelError> {
    let g = m.provenance.geometry;
    let map = AttentionMap::new(g.h, g.w, m.values)?;
    let metrics = MapMetrics::of(&map)?;
    Ok(ProbeMap { map, image_share: 0.0, metrics, provenance: m.provenance })
}

fn read_pixel_values(path: &Path, any_shape: bool) -> Result<Tensor, ModelError> {
    if !path.exists() {
        return Err(ModelError::MissingFile { path: path.to_path_buf(), hint: String::new() });
    }
    let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| ModelError::Checkpoint { path: path.to_path_buf(), message: e.to_string() })?;
    let pv = tensors
        .get("pixel_values")
        .ok_or_else(|| ModelError::Checkpoint { path: path.to_path_buf(), message: "no tensor named pixel_values".into() })?;
    match pv.dims() {
        [1, 3, h, w] if h == w || any_shape => Ok(pv.to_dtype(DType::F32)?),
        dims => Err(ModelError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("pixel_values has shape {dims:?}, expected {}", if any_shape { "[1, 3, H, W]" } else { "[1, 3, S, S]" }),
        }),
    }
}

/// The reference fixtures' tensor names and meanings (fixtures/reference-v1/README.md).
#[allow(clippy::too_many_arguments)]
fn write_dump(
    path: &Path,
    input_ids: &[u32],
    token_type_ids: Option<Vec<i64>>,
    pixel_values: &Tensor,
    generation: &Generation,
    recorder: &AttentionRecorder,
    num_layers: usize,
    num_heads: usize,
) -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let l = input_ids.len();
    let t = generation.ids.len();
    // LLaVA-Rad's image span is written as -200, as its reference files (and its code) mark it.
    let ids_i64 =
        |ids: &[u32]| Tensor::new(ids.iter().map(|&x| if x == IMAGE_PLACEHOLDER { -200 } else { i64::from(x) }).collect::<Vec<_>>(), &dev);
    let mut prompt_last = Vec::with_capacity(num_layers * num_heads * l);
    for layer in 0..num_layers {
        prompt_last.extend_from_slice(&recorder.row(layer, l - 1).context("prompt row not captured")?.probs);
    }
    // gen_attn [T, NL, H, L+T-1]: step k is the row at position L-1+k over L+k keys, zero beyond.
    let width = l + t - 1;
    let mut gen_attn = vec![0f32; t * num_layers * num_heads * width];
    for k in 0..t {
        for layer in 0..num_layers {
            let row = recorder.row(layer, l - 1 + k).with_context(|| format!("step {k} layer {layer} not captured"))?;
            for h in 0..num_heads {
                let dst = ((k * num_layers + layer) * num_heads + h) * width;
                gen_attn[dst..dst + row.keys].copy_from_slice(row.head(h));
            }
        }
    }
    let mut tensors: HashMap<String, Tensor> = [
        ("input_ids", ids_i64(input_ids)?),
        ("pixel_values", pixel_values.to_dtype(DType::F32)?),
        ("prompt_last_logits", Tensor::new(generation.prompt_last_logits(), &dev)?),
        ("prompt_last_attn", Tensor::from_vec(prompt_last, (num_layers, num_heads, l), &dev)?),
        ("generated_ids", ids_i64(&generation.ids)?),
        ("gen_attn", Tensor::from_vec(gen_attn, (t, num_layers, num_heads, width), &dev)?),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(tt) = token_type_ids {
        tensors.insert("token_type_ids".into(), Tensor::new(tt, &dev)?);
    }
    candle_core::safetensors::save(&tensors, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn print_human(r: &ProbeReport) {
    let m = &r.map;
    println!("model      {} ({}, {})", r.model, r.architecture, r.dtype);
    println!("question   {}", r.question);
    println!("answer     {:?} -> {}", r.answer, r.parsed_answer);
    match r.yes_no_margin {
        Some(margin) => println!("margin     logit(yes) - logit(no) = {margin:.4}"),
        None => println!("margin     n/a (no single-token yes/no in the vocabulary)"),
    }
    println!(
        "map        {}x{} over crop ({:.0}, {:.0})-({:.0}, {:.0}) of a {}x{} image; layers {} ({}), {} fusion, {} rows",
        m.map.h,
        m.map.w,
        m.provenance.geometry.crop.x0,
        m.provenance.geometry.crop.y0,
        m.provenance.geometry.crop.x1,
        m.provenance.geometry.crop.y1,
        m.provenance.geometry.image_w,
        m.provenance.geometry.image_h,
        m.provenance.layer_range,
        m.provenance.layers.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
        m.provenance.head_fusion,
        m.provenance.query_mode,
    );
    if let Some(reason) = &m.provenance.fallback_reason {
        println!("FALLBACK   this map is {}, not attention: {reason}", m.provenance.method);
    }
    if !m.provenance.layers_without_image.is_empty() {
        println!(
            "note       layers {:?} left out: their rows put no attention on the image (sliding window)",
            m.provenance.layers_without_image
        );
    }
    println!(
        "metrics    focus {:.4}  gini {:.4}  entropy {:.4} nats  top10 {:.4}  image share {:.4}",
        m.metrics.focus, m.metrics.gini, m.metrics.entropy_nats, m.metrics.top10_mass, m.image_share
    );
    if !r.images.is_empty() {
        println!(
            "images     {:<8} {:<28} {:>7} {:>8} {:>8} {:>8}  (the map above is the current image's)",
            "role", "file", "grid", "share", "focus", "entropy"
        );
        for image in &r.images {
            image.print_row();
        }
    }
    if let Some(trust) = &r.trust {
        for m in &trust.maps {
            let site = m.provenance.site.map(|s| format!(" at {s}")).unwrap_or_default();
            println!(
                "{:<10} focus {:.4}  gini {:.4}  top10 {:.4}{site}",
                m.provenance.method.to_string(),
                m.metrics.focus,
                m.metrics.gini,
                m.metrics.top10_mass
            );
        }
        for p in &trust.agreement {
            println!("agreement  JS distance {} vs {}: {:.4}", p.a, p.b, p.js_distance);
        }
        for f in &trust.faithfulness {
            let flag = if f.flagged { "  FLAGGED: no better than random cells" } else { "" };
            println!(
                "deletion   {} top {}% ({} cells): margin {:+.4}, random {:+.4}{flag}",
                f.method, f.k_percent, f.cells, f.delta_top, f.delta_random
            );
        }
        if let Some(s) = &trust.sinks {
            println!(
                "sinks      {} cells above {}x uniform in this map and {:?}'s: {:?} ({:.1}% of the mass)",
                s.cells.len(),
                s.factor,
                s.generic_prompt,
                s.cells,
                100.0 * s.mass
            );
        }
        for n in &trust.notes {
            println!("note       {n}");
        }
    }
    if let Some(g) = &r.grounding {
        print_grounding(g);
    }
    let t = &r.timings_ms;
    println!(
        "timings    load {:.0} ms, preprocess {:.0} ms, prefill {:.0} ms, decode {:.0} ms, capture {:.1} ms, trust checks {:.0} ms, total {:.0} ms",
        t.load, t.preprocess, t.prefill, t.decode, t.capture, t.trust, t.total
    );
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.4}"))
}

/// The grounding lines: the occlusion support, then per map its agreement with it, its lift
/// over control boxes, its box score and its null edits.
fn print_grounding(g: &CaseGrounding) {
    if let Some(o) = &g.occlusion {
        let positive = o.support.iter().filter(|v| **v > 0.0).count();
        let (h, w) = o.input_hw.unwrap_or((o.input_side, o.input_side));
        println!(
            "occlusion  {g}x{g} cells over the {h}x{w} input: margin {m:+.4}; {positive} cells weaken the answer when hidden",
            g = o.grid,
            m = o.margin
        );
    }
    for m in &g.maps {
        let f = &m.figures;
        if let Some(a) = &f.occlusion {
            println!(
                "grounding  {:<16} vs occlusion: spearman {}, top-10% overlap {:.4}, support mass {}",
                m.method.to_string(),
                opt(a.occlusion_spearman),
                a.occlusion_topk_overlap,
                opt(a.occlusion_support_mass)
            );
        }
        if let Some(c) = &f.box_controls {
            println!(
                "box        {:<16} mass {} vs {} control boxes {} (lift {}, percentile {}); mirror {}",
                m.method.to_string(),
                opt(c.mass),
                c.n_controls,
                opt(c.control_mass_mean),
                opt(c.roi_lift),
                opt(c.roi_percentile),
                opt(c.mirror_mass)
            );
        }
        if let Some(b) = &f.box_score {
            println!(
                "box score  {:<16} IoU {:.4}, precision {:.4}, recall {:.4}, F1 {:.4} ({} boxes)",
                m.method.to_string(),
                b.box_iou,
                b.box_precision,
                b.box_recall,
                b.box_f1,
                b.boxes.len()
            );
        }
        for e in &f.null_edits {
            println!(
                "null edit  {:<16} {:<10} answer {}, margin change {}, map JS distance {:.4}",
                m.method.to_string(),
                e.edit.to_string(),
                if e.answer_equal { "unchanged" } else { "CHANGED" },
                e.margin_delta.map_or_else(|| "n/a".into(), |d| format!("{d:+.4}")),
                e.js_distance
            );
        }
    }
    for n in &g.notes {
        println!("note       {n}");
    }
}
