//! `radlens bench --arch llava-1.5-7b|medgemma-4b|llava-rad --random-weights`: a full-size
//! model with random weights (speed does not depend on the values), timed on the study's
//! protocol, and `--agreement-with DTYPE`: the same model in two precisions, compared.
//!
//! One study is one image and six question variants, as the study runner does it: encode the
//! image once, prefill the shared prompt prefix once, then per variant prefill its question
//! from that cache and generate `--new-tokens` tokens, capturing the last quarter of the layers
//! at the query row and every generated row.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use radlens_shared::fusion::QueryMode;
use radlens_shared::geometry::{MapGeometry, PixelBox};
use radlens_shared::metrics::js_distance;
use serde::Serialize;

use crate::case::{Capture, CasePlan, CaseSpec, QueryRows, fused_map, generate_captured};
use crate::cli::BenchArgs;
use crate::device_memory::MemorySampler;
use crate::models::checkpoint::random::{RandomWeights, ShapeOnly, normal_values};
use crate::models::gemma3::Gemma3;
use crate::models::generate::Prefix;
use crate::models::linear::WeightFormat;
use crate::models::llava::Llava;
use crate::models::presets::{Preset, PresetConfig};
use crate::models::probe::NoProbe;
use crate::models::processor::EncodedPrompt;
use crate::models::qwen25vl::Qwen25Vl;
use crate::models::{VisionLanguageModel, dtype_name};

pub const VARIANTS: usize = 6;
const QUESTION_TOKENS: usize = 24;
pub(crate) const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

pub(crate) fn build(
    cfg: &PresetConfig,
    vb: candle_nn::VarBuilder,
    format: WeightFormat,
) -> candle_core::Result<Box<dyn VisionLanguageModel>> {
    Ok(match cfg {
        PresetConfig::Llava(c) => Box::new(Llava::from_var_builder_as(c.clone(), vb, format)?),
        PresetConfig::Gemma3(c) => Box::new(Gemma3::from_var_builder_as(c.clone(), vb, format)?),
        PresetConfig::Qwen25Vl(c, _) => Box::new(Qwen25Vl::from_var_builder_as(c.clone(), vb, format)?),
    })
}

/// Parameters of the preset as built here (every tensor the model loads).
pub fn count_parameters(cfg: &PresetConfig) -> anyhow::Result<usize> {
    let shapes = ShapeOnly::default();
    build(cfg, shapes.var_builder(DType::F32), WeightFormat::Dense)?;
    Ok(shapes.elements())
}

/// Six question variants of `QUESTION_TOKENS` ids each, inside every vocabulary.
fn questions() -> Vec<Vec<u32>> {
    (0..VARIANTS).map(|v| (0..QUESTION_TOKENS as u32).map(|i| 400 + 37 * i + 11 * v as u32).collect()).collect()
}

/// What the study protocol measured, medians over the timed repetitions.
#[derive(Debug, Serialize)]
pub struct ArchReport {
    pub arch: String,
    pub device: String,
    pub dtype: String,
    pub quantization: String,
    /// "full size", "mid-size benchmark model", or how the layers were cut for a smoke run
    /// (the figures are then not the full model's).
    pub scale: String,
    pub parameters: usize,
    /// Bytes of weights a decode step reads (the bandwidth floor's numerator).
    pub weight_bytes: f64,
    pub prompt_tokens: usize,
    pub shared_prefix_tokens: usize,
    pub variants: usize,
    pub new_tokens: usize,
    pub reps: usize,
    pub load_s: f64,
    /// One study with last-quarter capture, and its stages.
    pub study_ms: f64,
    pub image_encode_ms: f64,
    pub shared_prefill_ms: f64,
    /// Summed over the variants.
    pub variant_prefill_ms: f64,
    pub decode_ms: f64,
    /// The same study without capture, and the difference.
    pub study_no_capture_ms: f64,
    pub capture_overhead_ms: f64,
    pub decode_ms_per_token: f64,
    pub captured_mib: f64,
    /// Device memory above the idle level before loading (sampled; GPU only).
    pub peak_device_gib: Option<f64>,
    pub weights_device_gib: Option<f64>,
    pub ids_same_with_and_without_capture: bool,
}

struct StudyTiming {
    total_ms: f64,
    encode_ms: f64,
    shared_ms: f64,
    prefill_ms: f64,
    decode_ms: f64,
    step_ms: Vec<f64>,
    ids: Vec<Vec<u32>>,
    captured_values: usize,
    maps: Vec<Vec<f64>>,
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What the bench captures: the study's plan (its last quarter of the layers, as `--layers
/// last-quarter` resolves it), at the query row and the answer rows.
pub(crate) fn capture_plan(summary: &crate::models::ModelSummary, new_tokens: usize) -> anyhow::Result<CasePlan> {
    let spec = CaseSpec { query: QueryMode::Answer, ..CaseSpec::standard(new_tokens) };
    Ok(CasePlan::resolve(spec, "bench", summary)?)
}

/// Runs one study; `capture` adds the last-quarter probe on every variant.
fn run_study(
    model: &dyn VisionLanguageModel,
    cfg: &PresetConfig,
    pixels: &Tensor,
    device: &Device,
    new_tokens: usize,
    capture: bool,
) -> anyhow::Result<StudyTiming> {
    let sync = || device.synchronize();
    let questions = questions();
    let (first, shared) = cfg.prompt(&questions[0]);
    let prefix = first[..shared].to_vec();
    let summary = model.summary();
    let image_positions: Vec<usize> = first.iter().enumerate().filter(|(_, t)| **t == summary.image_token_id).map(|(i, _)| i).collect();
    let plan = capture_plan(&summary, new_tokens)?;
    let (grid_h, grid_w) = model.image_grid(pixels)?;
    let (image_h, image_w) = cfg.image_hw();
    let geometry = MapGeometry {
        h: grid_h,
        w: grid_w,
        crop: PixelBox::image(image_w as u32, image_h as u32)?,
        image_w: image_w as u32,
        image_h: image_h as u32,
    };

    sync()?;
    let t = Instant::now();
    let features = model.encode_image(pixels, &mut NoProbe)?;
    sync()?;
    let encode_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let mut cache = model.new_cache();
    model.prefill_from(&prefix, 0, &features, &mut cache, &mut NoProbe)?;
    sync()?;
    let shared_ms = t.elapsed().as_secs_f64() * 1e3;

    let mut timing = StudyTiming {
        total_ms: 0.0,
        encode_ms,
        shared_ms,
        prefill_ms: 0.0,
        decode_ms: 0.0,
        step_ms: Vec::new(),
        ids: Vec::new(),
        captured_values: 0,
        maps: Vec::new(),
    };
    for q in &questions {
        let (ids, _) = cfg.prompt(q);
        let prompt = EncodedPrompt { input_ids: ids, image_positions: image_positions.clone() };
        let rows = QueryRows::last_row(prompt.input_ids.len());
        let capture = if capture { Capture::Map } else { Capture::Nothing };
        let prefix = Some(Prefix { cache: &cache, len: shared });
        let (g, recorder) = generate_captured(model, &plan, &features, &prompt, &rows, prefix, capture)?;
        anyhow::ensure!(g.ids.len() == new_tokens, "generation stopped after {} of {new_tokens} tokens", g.ids.len());
        timing.prefill_ms += g.prefill_ms;
        timing.decode_ms += g.decode_ms;
        timing.step_ms.extend(&g.step_ms);
        timing.ids.push(g.ids);
        if capture == Capture::Map {
            timing.captured_values += recorder.stored_values();
            // The map of the query row, as the study's default map is made.
            let map = fused_map(&plan, &recorder, &[rows.last], &prompt, geometry).map_err(anyhow::Error::msg)?;
            timing.maps.push(map.own.values);
        }
    }
    sync()?;
    timing.total_ms = timing.encode_ms + timing.shared_ms + timing.prefill_ms + timing.decode_ms;
    Ok(timing)
}

pub(crate) struct Loaded {
    pub model: Box<dyn VisionLanguageModel>,
    pub cfg: PresetConfig,
    pub pixels: Tensor,
    pub load_s: f64,
}

pub(crate) fn load(preset: Preset, args: &BenchArgs, device: &Device, dtype: DType, format: WeightFormat) -> anyhow::Result<Loaded> {
    let cfg = preset.config(args.text_layers, args.vision_layers);
    let t = Instant::now();
    let model = build(&cfg, RandomWeights::var_builder(args.seed, dtype, device), format)?;
    device.synchronize()?;
    let load_s = t.elapsed().as_secs_f64();
    let (h, w) = cfg.image_hw();
    let pixels =
        Tensor::from_vec(normal_values(args.seed, 3 * h * w, 0.0, 1.0), (1, 3, h, w), &Device::Cpu)?.to_device(device)?.to_dtype(dtype)?;
    Ok(Loaded { model, cfg, pixels, load_s })
}

/// What the figures are of: the full model, the mid-size one, or a cut smoke-run version.
pub(crate) fn scale(preset: Preset, args: &BenchArgs) -> String {
    match (args.text_layers, args.vision_layers) {
        (None, None) if preset.is_full_size() => "full size".into(),
        (None, None) => "mid-size benchmark model".into(),
        (t, v) => format!(
            "cut to {} text and {} vision layers: a smoke run, not the full model's figures",
            t.map_or("all".into(), |n| n.to_string()),
            v.map_or("all".into(), |n| n.to_string())
        ),
    }
}

/// Full-size presets are only ever built with random weights, and say so.
pub(crate) fn require_random_weights(preset: Preset, args: &BenchArgs) -> Result<(), crate::error::InputError> {
    if preset.is_full_size() && !args.random_weights {
        return Err(crate::error::InputError::Flag {
            flag: "--arch",
            message: format!(
                "{} is a full-size model: pass --random-weights (radlens never downloads weights; real checkpoints go through `radlens study`)",
                preset.name()
            ),
        });
    }
    Ok(())
}

pub fn run(preset: Preset, args: &BenchArgs, device: &Device, dtype: DType, format: WeightFormat) -> anyhow::Result<()> {
    require_random_weights(preset, args)?;
    let cfg = preset.config(args.text_layers, args.vision_layers);
    let parameters = count_parameters(&cfg)?;
    if args.dry_run {
        println!("{}: {} parameters ({:.3} B), {}", preset.name(), parameters, parameters as f64 / 1e9, scale(preset, args));
        return Ok(());
    }
    if let Some(reference) = &args.agreement_with {
        return agreement(preset, args, device, dtype, format, reference);
    }
    let sampler = MemorySampler::start(device);
    let idle = sampler.as_ref().map(|s| s.current_bytes());
    let Loaded { model, cfg, pixels, load_s } = load(preset, args, device, dtype, format)?;
    let weights_device = sampler.as_ref().zip(idle).map(|(s, idle)| s.current_bytes().saturating_sub(idle) as f64 / GIB);
    let new_tokens = args.new_tokens as usize;
    // One warm-up study (kernel loading, allocations), then the timed ones.
    run_study(model.as_ref(), &cfg, &pixels, device, new_tokens, true)?;
    if let Some(s) = &sampler {
        s.reset_peak();
    }
    let mut with = Vec::new();
    let mut without = Vec::new();
    for _ in 0..args.reps {
        with.push(run_study(model.as_ref(), &cfg, &pixels, device, new_tokens, true)?);
        without.push(run_study(model.as_ref(), &cfg, &pixels, device, new_tokens, false)?);
    }
    let peak = sampler.as_ref().zip(idle).map(|(s, idle)| s.peak_bytes().saturating_sub(idle) as f64 / GIB);
    let same = with.iter().zip(&without).all(|(a, b)| a.ids == b.ids);
    let (first, shared) = cfg.prompt(&questions()[0]);
    let pick = |f: fn(&StudyTiming) -> f64, v: &[StudyTiming]| median(v.iter().map(f).collect());
    let study_ms = pick(|t| t.total_ms, &with);
    let study_no_capture_ms = pick(|t| t.total_ms, &without);
    let bytes_per_weight = match format {
        WeightFormat::Dense => dtype.size_in_bytes() as f64,
        WeightFormat::Q8 => 34.0 / 32.0,
    };
    let report = ArchReport {
        arch: preset.name().into(),
        device: if device.is_cpu() { "cpu".into() } else { "cuda".into() },
        dtype: dtype_name(dtype).into(),
        quantization: format.name().into(),
        scale: scale(preset, args),
        parameters,
        weight_bytes: parameters as f64 * bytes_per_weight,
        prompt_tokens: first.len(),
        shared_prefix_tokens: shared,
        variants: VARIANTS,
        new_tokens,
        reps: args.reps as usize,
        load_s,
        study_ms,
        image_encode_ms: pick(|t| t.encode_ms, &with),
        shared_prefill_ms: pick(|t| t.shared_ms, &with),
        variant_prefill_ms: pick(|t| t.prefill_ms, &with),
        decode_ms: pick(|t| t.decode_ms, &with),
        study_no_capture_ms,
        capture_overhead_ms: study_ms - study_no_capture_ms,
        decode_ms_per_token: median(with.iter().flat_map(|t| t.step_ms.iter().copied()).collect()),
        captured_mib: with[0].captured_values as f64 * 4.0 / (1024.0 * 1024.0),
        peak_device_gib: peak,
        weights_device_gib: weights_device,
        ids_same_with_and_without_capture: same,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    anyhow::ensure!(same, "capturing attention changed the generated ids");
    Ok(())
}

fn print_report(r: &ArchReport) {
    println!(
        "{} ({:.2} B parameters, {} {}{}, {}), random weights",
        r.arch,
        r.parameters as f64 / 1e9,
        r.device,
        r.dtype,
        if r.quantization == "none" { String::new() } else { format!(" + {} weights", r.quantization) },
        r.scale
    );
    println!(
        "one study = {} variants x ({} prompt tokens, {} shared) + {} new tokens; median of {} after a warm-up; loaded in {:.1} s",
        r.variants, r.prompt_tokens, r.shared_prefix_tokens, r.new_tokens, r.reps, r.load_s
    );
    println!("{:<44} {:>12}", "stage", "ms");
    for (name, v) in [
        ("image encode (once)", r.image_encode_ms),
        ("shared prefix prefill (once)", r.shared_prefill_ms),
        ("variant prefills (sum of 6)", r.variant_prefill_ms),
        ("generation (sum of 6)", r.decode_ms),
        ("study, last-quarter capture", r.study_ms),
        ("study, no capture", r.study_no_capture_ms),
        ("capture overhead", r.capture_overhead_ms),
        ("decode per token", r.decode_ms_per_token),
    ] {
        println!("{name:<44} {v:>12.2}");
    }
    println!("kept attention per study: {:.2} MiB", r.captured_mib);
    match (r.peak_device_gib, r.weights_device_gib) {
        (Some(p), Some(w)) => println!("device memory above idle: weights {w:.2} GiB, peak {p:.2} GiB (sampled every ms)"),
        _ => println!("device memory: not measured on the CPU"),
    }
    println!("generated ids identical with and without capture: {}", r.ids_same_with_and_without_capture);
}

/// How far a precision moves answers and maps.
#[derive(Debug, Serialize)]
pub struct AgreementReport {
    pub arch: String,
    pub reference: String,
    pub candidate: String,
    pub scale: String,
    pub cases: usize,
    pub first_token_agreement: f64,
    pub all_tokens_agreement: f64,
    /// JS distance (bits) of the last-quarter query-row maps.
    pub map_js_distance_mean: f64,
    pub map_js_distance_max: f64,
}

fn agreement(preset: Preset, args: &BenchArgs, device: &Device, dtype: DType, format: WeightFormat, reference: &str) -> anyhow::Result<()> {
    let ref_dtype = crate::models::resolve_dtype(reference, device)
        .map_err(|message| crate::error::InputError::Flag { flag: "--agreement-with", message })?;
    crate::models::loader::check_dtype(ref_dtype, device)?;
    let new_tokens = args.new_tokens as usize;
    let mut results = Vec::new();
    for (d, f) in [(ref_dtype, WeightFormat::Dense), (dtype, format)] {
        // The same weights in both precisions: the CPU draws per tensor name from the seed; a
        // GPU's generator is reseeded before each model is drawn, in the same order.
        if !device.is_cpu() {
            device.set_seed(args.seed)?;
        }
        let loaded = load(preset, args, device, d, f)?;
        let (h, w) = loaded.cfg.image_hw();
        let mut studies = Vec::new();
        for s in 0..args.reps as u64 {
            let pixels = Tensor::from_vec(normal_values(args.seed + 1 + s, 3 * h * w, 0.0, 1.0), (1, 3, h, w), &Device::Cpu)?
                .to_device(device)?
                .to_dtype(d)?;
            studies.push(run_study(loaded.model.as_ref(), &loaded.cfg, &pixels, device, new_tokens, true)?);
        }
        drop(loaded);
        results.push(studies);
    }
    let (mut first, mut all, mut js) = (0usize, 0usize, Vec::new());
    for (a, b) in results[0].iter().zip(&results[1]) {
        for (ia, ib) in a.ids.iter().zip(&b.ids) {
            first += usize::from(ia[0] == ib[0]);
            all += usize::from(ia == ib);
        }
        for (ma, mb) in a.maps.iter().zip(&b.maps) {
            js.push(js_distance(ma, mb)?);
        }
    }
    let cases = results[0].iter().map(|s| s.ids.len()).sum::<usize>();
    let name =
        |d: DType, f: WeightFormat| format!("{}{}", dtype_name(d), if f == WeightFormat::Dense { String::new() } else { format!("+{f}") });
    let report = AgreementReport {
        arch: preset.name().into(),
        reference: name(ref_dtype, WeightFormat::Dense),
        candidate: name(dtype, format),
        scale: scale(preset, args),
        cases,
        first_token_agreement: first as f64 / cases as f64,
        all_tokens_agreement: all as f64 / cases as f64,
        map_js_distance_mean: js.iter().sum::<f64>() / js.len().max(1) as f64,
        map_js_distance_max: js.iter().copied().fold(0.0, f64::max),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{} ({}): {} vs {} on {} cases", report.arch, report.scale, report.candidate, report.reference, report.cases);
        println!("first generated token equal: {:.3}", report.first_token_agreement);
        println!("all {new_tokens} generated tokens equal: {:.3}", report.all_tokens_agreement);
        println!("map JS distance (bits): mean {:.4}, max {:.4}", report.map_js_distance_mean, report.map_js_distance_max);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench captures the layers the study does: on 34-layer MedGemma the last quarter is
    /// 25..=33 (nine layers; the bench's own cut once took eight).
    #[test]
    fn the_bench_captures_the_studys_last_quarter() {
        let cfg = Preset::MedGemma4b.config(None, None);
        let model = build(&cfg, ShapeOnly::default().var_builder(DType::F32), WeightFormat::Dense).unwrap();
        let summary = model.summary();
        assert_eq!(summary.num_layers, 34);
        let study = radlens_shared::fusion::LayerRange::LastQuarter.resolve(34).unwrap();
        assert_eq!(capture_plan(&summary, 16).unwrap().layers, study);
        assert_eq!(study.len(), 9);
    }

    /// The presets have transformers' shapes: the parameter counts the baseline printed for the
    /// same configurations (scripts/gpu/baseline-*.jsonl), less what radlens does not load.
    #[test]
    fn full_size_presets_have_the_baselines_parameter_counts() {
        let llava = count_parameters(&Preset::Llava15_7b.config(None, None)).unwrap();
        let gemma = count_parameters(&Preset::MedGemma4b.config(None, None)).unwrap();
        // CLIP's post_layernorm (2 x 1024), which LLaVA never applies to its feature layer.
        assert_eq!(llava, 7_063_427_072 - 2 * 1024, "llava-1.5-7b");
        assert_eq!(gemma, 4_300_079_472, "medgemma-4b");
        // Qwen2.5-VL-7B-Instruct's safetensors: 7,615,616,512 text + 676,550,144 vision.
        let qwen = count_parameters(&Preset::Qwen25Vl7b.config(None, None)).unwrap();
        assert_eq!(qwen, 8_292_166_656, "qwen2.5-vl-7b");
    }

    /// MAIRA-2's count from its architecture, written out here rather than read from a baseline
    /// (none was run for it): RAD-DINO + the 4-layer projector + Vicuna-7B at vocab 32207.
    #[test]
    fn the_maira2_preset_has_the_parameters_of_its_architecture() {
        // RAD-DINO, DINOv2 ViT-B/14 (width d = 768, MLP 4d, 12 blocks) on a 37 x 37 table.
        let d = 768;
        let patch_embed = d * 3 * 14 * 14 + d; // Conv2d 3 -> d, kernel 14, with bias
        let cls_and_positions = d + (37 * 37 + 1) * d; // cls_token, pos_embed (CLS + 1369 patches)
        let block = 2 * d // norm1
            + 3 * d * d + 3 * d // qkv with bias
            + d * d + d // attention output projection
            + d // LayerScale 1
            + 2 * d // norm2
            + d * 4 * d + 4 * d // fc1
            + 4 * d * d + d // fc2
            + d; // LayerScale 2
        let final_norm = 2 * d; // feature_maps take the final LayerNorm
        // (transformers' Dinov2 also holds a 768-value mask_token, unused for inference and not loaded.)
        let vision = patch_embed + cls_and_positions + 12 * block + final_norm;
        assert_eq!(vision, 86_579_712);
        // Projector: Linear(768, 4096), then 3 x (GELU, Linear(4096, 4096)), all with bias.
        let h = 4096;
        let projector = d * h + h + 3 * (h * h + h);
        // Vicuna-7B: embeddings and an untied lm_head over 32207 ids; per layer q, k, v, o (no
        // bias, 32 heads of 128 = no GQA), gate/up/down to 11008, two RMSNorms; the final norm.
        let vocab = 32207;
        let layer = 4 * h * h + 3 * h * 11008 + 2 * h;
        let text = 2 * vocab * h + 32 * layer + h;
        let maira2 = count_parameters(&Preset::Maira2.config(None, None)).unwrap();
        assert_eq!(maira2, vision + projector + text, "maira-2");
        assert_eq!(maira2, 6_880_184_832);
        // Cutting layers removes exactly their blocks.
        let cut = count_parameters(&Preset::Maira2.config(Some(2), Some(3))).unwrap();
        assert_eq!(cut, maira2 - 30 * layer - 9 * block);
    }
}
