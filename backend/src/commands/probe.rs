//! `radlens probe`: one question about one image; the answer and where the model looked.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use radlens_shared::AttentionMap;
use radlens_shared::answer::{Answer, parse_answer, yes_no_margin};
use radlens_shared::fusion::{HeadFusion, LayerRange, MapMethod, MapProvenance, QueryMode, term_positions};
use radlens_shared::geometry::{MapGeometry, PixelBox};
use radlens_shared::map::normalize_vec;
use radlens_shared::metrics::MapMetrics;
use radlens_shared::record::{Faithfulness, SinkCheck};
use radlens_shared::trust::{GENERIC_PROMPT, MethodPair, SINK_FACTOR, sink_cells, without_cells};
use serde::Serialize;

use crate::attention_map::fuse_captured;
use crate::cli::ProbeArgs;
use crate::error::InputError;
use crate::models::checkpoint::llava_rad::PartOverrides;
use crate::models::error::ModelError;
use crate::models::generate::{Generation, greedy};
use crate::models::llava::IMAGE_PLACEHOLDER;
use crate::models::loader::load_engine;
use crate::models::probe::{AttentionRecorder, CapturePolicy, NoProbe, RowSelection};
use crate::models::processor::clip_image::load_image;
use crate::trust::{CaseInput, MethodValues, TrustSettings, agreement, faithfulness, fallback_map, generic_map, gradcam_map, relative};

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

fn flag<T, E: std::fmt::Display>(flag: &'static str, r: Result<T, E>) -> Result<T, InputError> {
    r.map_err(|e| InputError::Flag { flag, message: e.to_string() })
}

pub fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let layer_range: LayerRange = flag("--layers", args.capture.layers.parse())?;
    let fusion: HeadFusion = flag("--fusion", args.capture.fusion.parse())?;
    let query_mode: QueryMode = flag("--query", args.capture.query.parse())?;
    let runtime = args.runtime.resolve()?;
    let (dtype, device) = (runtime.dtype, runtime.device.clone());
    crate::models::loader::check_dtype(dtype, &device)?;
    let mut timings = Timings::default();

    let overrides = PartOverrides { base: args.base.clone(), vision_checkpoint: args.vision_checkpoint.clone() };
    let engine = load_engine(&args.model, &overrides, dtype, &device, runtime.weights)?;
    let summary = engine.model.summary();
    timings.load = ms(start);

    let t = Instant::now();
    let image = args.image.as_deref().map(load_image).transpose()?;
    let preprocessed = image.as_ref().map(|img| engine.image_processor.preprocess(img)).transpose()?;
    let (pixel_values, geometry) = match &args.pixel_values {
        Some(path) => {
            let pv = read_pixel_values(path)?.to_device(&device)?;
            let side = pv.dim(3)?;
            // Stored pixels: the geometry comes from the image when given, else the input square.
            let geometry = match &preprocessed {
                Some(p) => MapGeometry { h: summary.grid_h, w: summary.grid_w, crop: p.crop, image_w: p.image_w, image_h: p.image_h },
                None => MapGeometry {
                    h: summary.grid_h,
                    w: summary.grid_w,
                    crop: PixelBox::image(side as u32, side as u32)?,
                    image_w: side as u32,
                    image_h: side as u32,
                },
            };
            (pv, geometry)
        }
        None => {
            let p = preprocessed.as_ref().context("an image is required without --pixel-values")?;
            let geometry = MapGeometry { h: summary.grid_h, w: summary.grid_w, crop: p.crop, image_w: p.image_w, image_h: p.image_h };
            (p.to_tensor(&device)?, geometry)
        }
    };
    let prompt = engine.prompter.encode(&args.question, args.system.as_deref())?;
    timings.preprocess = ms(t);

    let l = prompt.input_ids.len();
    let layers = flag("--layers", layer_range.resolve(summary.num_layers))?;
    let term_rows = match &query_mode {
        QueryMode::Term(word) => {
            let pieces = engine.prompter.tokenizer().pieces(&prompt.input_ids);
            let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
            let rows = term_positions(&refs, word);
            if rows.is_empty() {
                return Err(InputError::Flag { flag: "--query", message: format!("the prompt has no token spelling {word:?}") }.into());
            }
            rows
        }
        _ => Vec::new(),
    };
    let policy = CapturePolicy {
        // A dump keeps every layer; otherwise only the layers the map uses.
        layers: if args.dump.is_some() { (0..summary.num_layers).collect() } else { layers.clone() },
        rows: RowSelection {
            prompt_positions: if term_rows.is_empty() { vec![l - 1] } else { [term_rows.clone(), vec![l - 1]].concat() },
            decode_steps: args.dump.is_some() || query_mode == QueryMode::Answer,
        },
        prompt_len: l,
    };
    let mut recorder = AttentionRecorder::new(policy);
    let generation = greedy(engine.model.as_ref(), &prompt.input_ids, &pixel_values, args.max_new_tokens as usize, &mut recorder)?;
    timings.prefill = generation.prefill_ms;
    timings.decode = generation.decode_ms;

    let t = Instant::now();
    let query_positions: Vec<usize> = match &query_mode {
        QueryMode::Query => vec![l - 1],
        // The rows that produced each answer token (EOS excluded): positions L-1 .. L-2+n.
        QueryMode::Answer => (0..generation.answer_ids().len().max(1)).map(|k| l - 1 + k).collect(),
        QueryMode::Term(_) => term_rows,
    };
    let yes = engine.prompter.tokenizer().single_token_spellings("yes");
    let no = engine.prompter.tokenizer().single_token_spellings("no");
    let model_name = args.model.file_name().map_or_else(|| args.model.display().to_string(), |n| n.to_string_lossy().into_owned());
    let case = CaseInput {
        model: engine.model.as_ref(),
        input_ids: &prompt.input_ids,
        pixel_values: &pixel_values,
        geometry,
        yes_ids: &yes,
        no_ids: &no,
    };
    let attention_provenance = |layers_used: Vec<usize>, layers_without_image: Vec<usize>| MapProvenance {
        model: model_name.clone(),
        method: MapMethod::QueryToVisual,
        layer_range: layer_range.clone(),
        layers: layers_used,
        head_fusion: fusion,
        query_mode: query_mode.clone(),
        query_positions: query_positions.clone(),
        layers_without_image,
        geometry,
        site: None,
        fallback_reason: None,
    };
    let (attention, image_share) = match fuse_captured(&recorder, &layers, &query_positions, &prompt.image_positions, fusion) {
        Ok(captured) => {
            let provenance = attention_provenance(captured.layers_used, captured.layers_without_image);
            (
                MethodValues { values: normalize_vec(&captured.fused.values).map_err(ModelError::from)?, provenance },
                captured.fused.image_share,
            )
        }
        // Attention could not be captured: Grad-CAM, else uniform, labelled as such.
        Err(e) => (fallback_map(&case, &attention_provenance(Vec::new(), Vec::new()), &e.to_string()), 0.0),
    };
    let map = AttentionMap::new(geometry.h, geometry.w, attention.values.clone()).map_err(ModelError::from)?;
    let metrics = MapMetrics::of(&map).map_err(ModelError::from)?;
    timings.capture = ms(t);

    let t = Instant::now();
    let trust = match args.trust.settings() {
        Some(settings) => Some(probe_trust(&case, &settings, &attention, &engine, &pixel_values, &layers, fusion)?),
        None => None,
    };
    timings.trust = ms(t);

    let answer = engine.prompter.tokenizer().decode(generation.answer_ids(), true)?;
    let report = ProbeReport {
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
        question: args.question.clone(),
        input_ids: prompt.input_ids.clone(),
        image_token_positions: prompt.image_positions.clone(),
        generated_ids: generation.ids.clone(),
        parsed_answer: parse_answer(&answer),
        answer,
        yes_no_margin: yes_no_margin(generation.prompt_last_logits(), &yes, &no),
        map: ProbeMap { map, image_share, metrics, provenance: attention.provenance },
        trust,
        timings_ms: Timings { total: ms(start), ..timings },
    };
    if let Some(path) = &args.dump {
        // Gemma3's processor also returns token_type_ids (1 at image soft tokens).
        let token_type_ids = (summary.architecture == "gemma3")
            .then(|| (0..l).map(|i| i64::from(prompt.image_positions.contains(&i))).collect::<Vec<i64>>());
        write_dump(path, &prompt.input_ids, token_type_ids, &pixel_values, &generation, &recorder, summary.num_layers, summary.num_heads)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(())
}

/// The trust checks of one question: Grad-CAM, the relative map and sinks against the generic
/// prompt (the question's map and the generic one are the "variants" here), deletion tests and
/// agreement. A check that fails is a note; the others are kept.
fn probe_trust(
    case: &CaseInput<'_>,
    settings: &TrustSettings,
    attention: &MethodValues,
    engine: &crate::models::loader::Engine,
    pixel_values: &Tensor,
    layers: &[usize],
    fusion: HeadFusion,
) -> anyhow::Result<ProbeTrust> {
    let mut out = ProbeTrust::default();
    let is_attention = attention.provenance.method == MapMethod::QueryToVisual;
    let mut methods = vec![attention.clone()];
    if settings.gradcam && attention.provenance.method != MapMethod::Gradcam {
        match gradcam_map(case, &attention.provenance) {
            Ok(m) => methods.push(m),
            Err(e) => out.notes.push(format!("gradcam: {e}")),
        }
    }
    if settings.sinks && is_attention {
        let features = engine.model.encode_image(pixel_values, &mut NoProbe)?;
        match generic_map(engine.model.as_ref(), engine.prompter.as_ref(), &features, layers, fusion) {
            Ok(generic) => {
                let cells = sink_cells(&[&attention.values, &generic], SINK_FACTOR);
                out.sinks = Some(SinkCheck {
                    factor: SINK_FACTOR,
                    generic_prompt: GENERIC_PROMPT.to_string(),
                    mass: cells.iter().fold(0.0, |acc, &c| acc + attention.values[c]),
                    metrics_without: without_cells(&attention.values, &cells).ok().map(|q| MapMetrics::of_probs(&q)),
                    cells,
                });
                match relative(attention, &generic) {
                    Ok(m) => methods.push(m),
                    Err(e) => out.notes.push(format!("relative map: {e}")),
                }
            }
            Err(e) => out.notes.push(format!("generic-prompt map: {e}")),
        }
    }
    if settings.faithfulness {
        let refs: Vec<&MethodValues> = methods.iter().collect();
        match faithfulness(case, &refs, &settings.k_percents, settings.random_draws, 0) {
            Ok(f) => out.faithfulness = f,
            Err(e) => out.notes.push(format!("faithfulness: {e}")),
        }
    }
    out.agreement = agreement(&methods.iter().collect::<Vec<_>>());
    for m in methods.into_iter().skip(1) {
        let map = AttentionMap::new(case.geometry.h, case.geometry.w, m.values).map_err(ModelError::from)?;
        let metrics = MapMetrics::of(&map).map_err(ModelError::from)?;
        out.maps.push(ProbeMap { map, image_share: 0.0, metrics, provenance: m.provenance });
    }
    Ok(out)
}

fn read_pixel_values(path: &Path) -> Result<Tensor, ModelError> {
    if !path.exists() {
        return Err(ModelError::MissingFile { path: path.to_path_buf(), hint: String::new() });
    }
    let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| ModelError::Checkpoint { path: path.to_path_buf(), message: e.to_string() })?;
    let pv = tensors
        .get("pixel_values")
        .ok_or_else(|| ModelError::Checkpoint { path: path.to_path_buf(), message: "no tensor named pixel_values".into() })?;
    match pv.dims() {
        [1, 3, h, w] if h == w => Ok(pv.to_dtype(DType::F32)?),
        dims => Err(ModelError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("pixel_values has shape {dims:?}, expected [1, 3, S, S]"),
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
    if let Some(trust) = &r.trust {
        for m in &trust.maps {
            let site = m.provenance.site.as_deref().map(|s| format!(" at {s}")).unwrap_or_default();
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
    let t = &r.timings_ms;
    println!(
        "timings    load {:.0} ms, preprocess {:.0} ms, prefill {:.0} ms, decode {:.0} ms, capture {:.1} ms, trust checks {:.0} ms, total {:.0} ms",
        t.load, t.preprocess, t.prefill, t.decode, t.capture, t.trust, t.total
    );
}
