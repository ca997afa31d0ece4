//! `radlens bench`: speed and memory of attention capture on a mid-size random LLaVA that the
//! command builds itself (no checkpoint needed). Every figure is reported against the no-capture
//! baseline measured in the same run.

use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use radlens_shared::fusion::{LayerRange, QueryMode};
use serde::Serialize;

use crate::alloc_stats;
use crate::case::{Capture, CasePlan, CaseSpec, QueryRows, generate_captured};
use crate::cli::BenchArgs;
use crate::models::VisionLanguageModel;
use crate::models::checkpoint::random::{RandomWeights, normal_values};
use crate::models::linear::WeightFormat;
use crate::models::presets::Preset;
use crate::models::probe::NoProbe;
use crate::models::processor::EncodedPrompt;

/// A model to benchmark, its prompt ids and its input `(H, W)`.
struct BenchModel {
    model: Box<dyn VisionLanguageModel>,
    description: String,
    ids: Vec<u32>,
    image_hw: (usize, usize),
}

fn build(preset: Preset, seed: u64, dtype: DType, device: &Device) -> anyhow::Result<BenchModel> {
    let cfg = preset.config(None, None);
    let model = super::bench_arch::build(&cfg, RandomWeights::var_builder(seed, dtype, device), WeightFormat::Dense)?;
    let question: Vec<u32> = (0..24u32).map(|i| 400 + 37 * i).collect();
    let (ids, _) = cfg.prompt(&question);
    Ok(BenchModel { model, description: format!("random {}", cfg.describe()), ids, image_hw: cfg.image_hw() })
}

#[derive(Serialize)]
struct Row {
    capture: String,
    median_ms: f64,
    min_ms: f64,
    time_ratio_vs_none: f64,
    peak_heap_mib: f64,
    peak_ratio_vs_none: f64,
    captured_mib: f64,
}

#[derive(Serialize)]
struct Report {
    model: String,
    dtype: String,
    prompt_tokens: usize,
    new_tokens: usize,
    reps: usize,
    counting_allocator: bool,
    weights_mib: f64,
    /// What holding the full L x L attention of every layer and head would take.
    full_attention_all_layers_mib: f64,
    rows: Vec<Row>,
}

const MIB: f64 = 1024.0 * 1024.0;

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let preset = args.arch;
    let crate::commands::Runtime { device, dtype, weights: format } = args.runtime.resolve()?;
    crate::models::loader::check_dtype(dtype, &device)?;
    if args.grounding || args.conditions {
        let g = &args.grounding_args;
        return super::bench_grounding::run(args, g.occlusion_grid as usize, g.occlusion_batch as usize);
    }
    if let Some(images) = args.images {
        return super::bench_multi_image::run(preset, images as usize, args, &device, dtype, format);
    }
    if preset.is_full_size() || args.agreement_with.is_some() || args.dry_run {
        return super::bench_arch::run(preset, args, &device, dtype, format);
    }
    anyhow::ensure!(
        device.is_cpu() && format == WeightFormat::Dense,
        "the mid-size capture benchmarks run on the CPU with dense weights; use a full-size --arch or --agreement-with for --device/--quantize"
    );
    if args.study {
        return run_study_bench(args, preset, dtype);
    }
    let before_weights = alloc_stats::current_bytes();
    let BenchModel { model, description, ids, image_hw: (h, w) } = build(preset, args.seed, dtype, &device)?;
    let weights_mib = alloc_stats::current_bytes().saturating_sub(before_weights) as f64 / MIB;
    let l = ids.len();
    let pixels = Tensor::from_vec(normal_values(args.seed, 3 * h * w, 0.0, 1.0), (1, 3, h, w), &device)?;

    let summary = model.summary();
    let (nl, heads) = (summary.num_layers, summary.num_heads);
    // The study's plans: the layers as the study resolves them, the query and answer rows.
    let plan = |layers: LayerRange| {
        CasePlan::resolve(CaseSpec { layers, query: QueryMode::Answer, ..CaseSpec::standard(args.new_tokens as usize) }, "bench", &summary)
    };
    let image_positions = ids.iter().enumerate().filter(|(_, t)| **t == summary.image_token_id).map(|(i, _)| i).collect();
    let prompt = EncodedPrompt { input_ids: ids.clone(), image_positions };
    let rows = QueryRows::last_row(l);
    let variants: Vec<(&str, CasePlan, Capture)> = vec![
        ("none", plan(LayerRange::LastQuarter)?, Capture::Nothing),
        ("last-quarter (query + answer rows)", plan(LayerRange::LastQuarter)?, Capture::Map),
        ("all layers (query + answer rows)", plan(LayerRange::All)?, Capture::Map),
    ];

    let mut measured = Vec::new();
    for (name, plan, capture) in &variants {
        let mut times = Vec::new();
        let mut peak = 0usize;
        let mut captured = 0usize;
        // One warm-up run, then the timed ones.
        for rep in 0..=args.reps as usize {
            let base = alloc_stats::current_bytes();
            alloc_stats::reset_peak();
            let t = Instant::now();
            let features = model.encode_image(&pixels, &mut NoProbe)?;
            let (generation, recorder) = generate_captured(model.as_ref(), plan, &features, &prompt, &rows, None, *capture)?;
            let elapsed = t.elapsed().as_secs_f64() * 1e3;
            anyhow::ensure!(generation.ids.len() == args.new_tokens as usize, "generation stopped early");
            if rep > 0 {
                times.push(elapsed);
                peak = peak.max(alloc_stats::peak_bytes().saturating_sub(base));
            }
            captured = recorder.stored_values() * 4;
        }
        times.sort_by(f64::total_cmp);
        measured.push((name.to_string(), times[times.len() / 2], times[0], peak, captured));
    }
    let (base_ms, base_peak) = (measured[0].1, measured[0].3.max(1));
    let rows = measured
        .into_iter()
        .map(|(capture, median, min, peak, captured)| Row {
            capture,
            median_ms: median,
            min_ms: min,
            time_ratio_vs_none: median / base_ms,
            peak_heap_mib: peak as f64 / MIB,
            peak_ratio_vs_none: peak as f64 / base_peak as f64,
            captured_mib: captured as f64 / MIB,
        })
        .collect();
    let total = l + args.new_tokens as usize;
    let report = Report {
        model: description,
        dtype: crate::models::dtype_name(dtype).into(),
        prompt_tokens: l,
        new_tokens: args.new_tokens as usize,
        reps: args.reps as usize,
        counting_allocator: alloc_stats::is_active(),
        weights_mib,
        full_attention_all_layers_mib: (nl * heads * total * total * 4) as f64 / MIB,
        rows,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!("{}", r.model);
    println!(
        "dtype {}, prompt {} tokens + {} generated, {} timed reps (median), weights {:.1} MiB",
        r.dtype, r.prompt_tokens, r.new_tokens, r.reps, r.weights_mib
    );
    println!("{:<36} {:>10} {:>9} {:>12} {:>9} {:>12}", "capture", "median ms", "x none", "peak MiB", "x none", "kept MiB");
    for row in &r.rows {
        println!(
            "{:<36} {:>10.1} {:>9.3} {:>12.2} {:>9.3} {:>12.3}",
            row.capture, row.median_ms, row.time_ratio_vs_none, row.peak_heap_mib, row.peak_ratio_vs_none, row.captured_mib
        );
    }
    println!("(the full L x L attention of every layer and head would be {:.1} MiB)", r.full_attention_all_layers_mib);
    if !r.counting_allocator {
        println!("(peak heap not measured: the counting allocator is not installed in this build)");
    }
}

/// Study throughput with and without the shared-prefix KV cache, as the study runner uses it:
/// per study the image is encoded once; six variants share everything up to the question.
fn run_study_bench(args: &BenchArgs, preset: Preset, dtype: DType) -> anyhow::Result<()> {
    use crate::models::generate::Prefix;
    let device = Device::Cpu;
    let BenchModel { model, description, ids, image_hw: (h, w) } = build(preset, args.seed, dtype, &device)?;
    let summary = model.summary();
    // The prompt up to the question: everything through the last image token and one more.
    let last_image = ids.iter().rposition(|&t| t == summary.image_token_id).context("no image token")?;
    let prefix: Vec<u32> = ids[..=last_image + 1].to_vec();
    const VARIANTS: usize = 6;
    let studies = args.reps as usize;
    let variants: Vec<Vec<u32>> = (0..VARIANTS)
        .map(|v| {
            let mut q = prefix.clone();
            q.extend((0..12u32).map(|i| 500 + 29 * i + 7 * v as u32));
            q.extend([3148, 1001, 29901]);
            q
        })
        .collect();
    let new_tokens = args.new_tokens as usize;
    // Throughput only: the study's plan, capturing nothing.
    let plan = CasePlan::resolve(CaseSpec::standard(new_tokens), "bench", &summary)?;
    let mut timings = Vec::new();
    for share in [false, true] {
        let t = Instant::now();
        let mut answers = Vec::new();
        for s in 0..studies {
            let pixels = Tensor::from_vec(normal_values(args.seed + s as u64, 3 * h * w, 0.0, 1.0), (1, 3, h, w), &device)?;
            let features = model.encode_image(&pixels, &mut NoProbe)?;
            let cache = if share {
                let mut c = model.new_cache();
                model.prefill_from(&prefix, 0, &features, &mut c, &mut NoProbe)?;
                Some(c)
            } else {
                None
            };
            for v in &variants {
                let p = cache.as_ref().map(|c| Prefix { cache: c, len: prefix.len() });
                let prompt = EncodedPrompt { input_ids: v.clone(), image_positions: Vec::new() };
                let rows = QueryRows::last_row(v.len());
                answers.push(generate_captured(model.as_ref(), &plan, &features, &prompt, &rows, p, Capture::Nothing)?.0.ids);
            }
        }
        timings.push((t.elapsed().as_secs_f64(), answers));
    }
    let (full, shared) = (&timings[0], &timings[1]);
    let rows = (studies * VARIANTS) as f64;
    let same = full.1 == shared.1;
    println!("{description}");
    println!(
        "{studies} studies x {VARIANTS} variants, prompt {} tokens (shared prefix {}), {new_tokens} new tokens, dtype {}",
        variants[0].len(),
        prefix.len(),
        crate::models::dtype_name(dtype)
    );
    println!("{:<28} {:>10} {:>12} {:>10}", "prompt prefix", "seconds", "rows / s", "x full");
    println!("{:<28} {:>10.2} {:>12.2} {:>10.2}", "full prefill per variant", full.0, rows / full.0, 1.0);
    println!("{:<28} {:>10.2} {:>12.2} {:>10.2}", "shared prefix KV cache", shared.0, rows / shared.0, full.0 / shared.0);
    println!("generated ids identical with and without sharing: {same}");
    anyhow::ensure!(same, "prefix sharing changed the generated ids");
    Ok(())
}
