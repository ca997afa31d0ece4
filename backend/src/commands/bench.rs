//! `radlens bench`: speed and memory of attention capture on a mid-size random LLaVA that the
//! command builds itself (no checkpoint needed). Every figure is reported against the no-capture
//! baseline measured in the same run.

use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::alloc_stats;
use crate::cli::BenchArgs;
use crate::models::checkpoint::random::{normal_values, RandomWeights};
use crate::models::clip_vision::{self, Activation, VisionFeature};
use crate::models::generate::greedy;
use crate::models::llama_text;
use crate::models::llava::{Config, FeatureSelect, Llava};
use crate::models::parse_dtype;
use crate::models::probe::{AttentionRecorder, CapturePolicy, NoProbe, Probe, RowSelection};

/// CLIP 336/14 (576 image tokens) with 4 blocks; Llama with 8 layers, hidden 512, GQA 8/4.
fn bench_config() -> Config {
    let vision = clip_vision::Config {
        hidden_size: 256,
        intermediate_size: 1024,
        num_layers: 4,
        num_heads: 4,
        num_channels: 3,
        image_size: 336,
        patch_size: 14,
        activation: Activation::QuickGelu,
        layer_norm_eps: 1e-5,
    };
    let text = llama_text::Config {
        vocab_size: 32064,
        hidden_size: 512,
        intermediate_size: 1408,
        num_layers: 8,
        num_heads: 8,
        num_kv_heads: 4,
        head_dim: 64,
        max_positions: 2048,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_linear_factor: 1.0,
        tie_word_embeddings: false,
        attention_bias: false,
        mlp_bias: false,
        bos_token_id: 1,
        // No EOS inside the vocabulary: every run decodes exactly the asked-for tokens.
        eos_token_ids: vec![u32::MAX],
    };
    Config {
        feature: VisionFeature::from_hf_index(-2, vision.num_layers).expect("valid"),
        text,
        vision,
        image_token_id: 32000,
        projector_activation: Activation::Gelu,
        projector_bias: true,
        select: FeatureSelect::Default,
    }
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
    let dtype: DType = parse_dtype(&args.dtype).map_err(anyhow::Error::msg).context("--dtype")?;
    let device = Device::Cpu;
    let cfg = bench_config();
    let before_weights = alloc_stats::current_bytes();
    let model = Llava::from_var_builder(cfg.clone(), RandomWeights::var_builder(args.seed, dtype, &device))?;
    let weights_mib = alloc_stats::current_bytes().saturating_sub(before_weights) as f64 / MIB;

    // BOS, "USER:", 576 image tokens, a question's worth of text, "ASSISTANT:".
    let image_tokens = cfg.image_tokens();
    let mut ids: Vec<u32> = vec![1, 3148, 1001, 29901];
    ids.extend(std::iter::repeat_n(cfg.image_token_id, image_tokens));
    ids.extend((0..24u32).map(|i| 400 + 37 * i));
    let l = ids.len();
    let side = cfg.vision.image_size;
    let pixels = Tensor::from_vec(normal_values(args.seed, 3 * side * side, 0.0, 1.0), (1, 3, side, side), &device)?;

    let (nl, heads) = (cfg.text.num_layers, cfg.text.num_heads);
    let last_quarter: Vec<usize> = (3 * nl / 4..nl).collect();
    let policy = |layers: Vec<usize>| CapturePolicy {
        layers,
        rows: RowSelection { prompt_positions: vec![l - 1], decode_steps: true },
        prompt_len: l,
    };
    let variants: Vec<(&str, Option<CapturePolicy>)> = vec![
        ("none", None),
        ("last-quarter (query + answer rows)", Some(policy(last_quarter))),
        ("all layers (query + answer rows)", Some(policy((0..nl).collect()))),
    ];

    let mut measured = Vec::new();
    for (name, policy) in &variants {
        let mut times = Vec::new();
        let mut peak = 0usize;
        let mut captured = 0usize;
        // One warm-up run, then the timed ones.
        for rep in 0..=args.reps as usize {
            let mut recorder = policy.clone().map(AttentionRecorder::new);
            let mut none = NoProbe;
            let probe: &mut dyn Probe = match recorder.as_mut() {
                Some(r) => r,
                None => &mut none,
            };
            let base = alloc_stats::current_bytes();
            alloc_stats::reset_peak();
            let t = Instant::now();
            let generation = greedy(&model, &ids, &pixels, args.new_tokens as usize, probe)?;
            let elapsed = t.elapsed().as_secs_f64() * 1e3;
            anyhow::ensure!(generation.ids.len() == args.new_tokens as usize, "generation stopped early");
            if rep > 0 {
                times.push(elapsed);
                peak = peak.max(alloc_stats::peak_bytes().saturating_sub(base));
            }
            captured = recorder.as_ref().map_or(0, |r| r.stored_values() * 4);
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
        model: format!(
            "random LLaVA: CLIP {}/{} x{} blocks (hidden {}), Llama x{} layers (hidden {}, heads {}/{} kv)",
            cfg.vision.image_size, cfg.vision.patch_size, cfg.vision.num_layers, cfg.vision.hidden_size, nl, cfg.text.hidden_size, heads, cfg.text.num_kv_heads
        ),
        dtype: args.dtype.clone(),
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
