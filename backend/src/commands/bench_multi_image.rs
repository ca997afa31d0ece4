//! `radlens bench --arch medgemma-4b|gemma3|maira-2|maira2 --images N`: prompts with several
//! images (issue 21). One case is: encode the N images (each through the tower on its own,
//! `encode_image_list`), prefill the whole prompt, generate `--new-tokens` tokens, capturing the
//! study's last quarter of the layers at the query and answer rows; the same case without
//! capture gives the capture overhead. Every figure is given for N images and for the 1-image
//! prompt measured in the same run, with their ratio, so the cost of each further image reads off
//! one table whatever the machine.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use super::bench_arch::{GIB, Loaded, capture_plan, load, median, require_random_weights, scale};
use crate::alloc_stats;
use crate::case::{Capture, QueryRows, generate_captured};
use crate::cli::BenchArgs;
use crate::device_memory::MemorySampler;
use crate::error::InputError;
use crate::models::checkpoint::random::normal_values;
use crate::models::linear::WeightFormat;
use crate::models::presets::{Preset, PresetConfig};
use crate::models::probe::NoProbe;
use crate::models::processor::{EncodedPrompt, ImageRole};
use crate::models::{VisionLanguageModel, dtype_name};

const MIB: f64 = 1024.0 * 1024.0;
/// The question's ids (stand-ins: the bench has no tokenizer), as the study bench's.
const QUESTION_TOKENS: u32 = 24;

/// The roles of the first `n` images in prompt order: Gemma3 takes them in the order given
/// (current, then prior, then lateral); MAIRA-2's processor always places current frontal,
/// current lateral, prior frontal.
pub fn roles(cfg: &PresetConfig, n: usize) -> Vec<ImageRole> {
    let order = match cfg {
        PresetConfig::Gemma3(_) => [ImageRole::Current, ImageRole::Prior, ImageRole::Lateral],
        _ => [ImageRole::Current, ImageRole::Lateral, ImageRole::Prior],
    };
    order[..n.min(order.len())].to_vec()
}

/// `n` stand-in text ids, distinct per `salt`, inside every preset's vocabulary.
fn text(n: u32, salt: u32) -> impl Iterator<Item = u32> {
    (0..n).map(move |i| 400 + 37 * i + 13 * salt)
}

/// The bench prompt with one image per role, laid out as the model's prompt builder lays it out
/// (`processor::gemma3::expanded_multi_image_prompt_text`, `processor::maira2::user_text`) with
/// stand-in ids of about the template text's length for the words. Gemma3: `<bos>
/// <start_of_turn>user\n` then per image its label (`Current study:`), `\n\n<boi>`, the image
/// tokens, `<eoi>\n\n`; then the question and the turn ends. MAIRA-2: `<s>`, the system sentence,
/// `USER:`, per image its phrase ("Given the current frontal image", " the current lateral
/// image", " and the prior frontal image") and its image tokens, the instruction and sections
/// with the question as INDICATION, `ASSISTANT:`.
pub fn prompt(cfg: &PresetConfig, roles: &[ImageRole]) -> anyhow::Result<EncodedPrompt> {
    let per_image = cfg.image_tokens();
    let mut ids: Vec<u32> = Vec::new();
    let image_id = match cfg {
        PresetConfig::Gemma3(c) => {
            ids.extend([2, 105, 2364, 107]);
            for (k, _) in roles.iter().enumerate() {
                // "Current study:" / "Prior study:" / "Current lateral view:", then "\n\n" (108).
                ids.extend(text(4, k as u32));
                ids.extend([108, c.boi_token_id]);
                ids.extend(std::iter::repeat_n(c.image_token_id, per_image));
                ids.extend([c.eoi_token_id, 108]);
            }
            ids.extend(text(QUESTION_TOKENS, 7));
            ids.extend([106, 107, 105, 4368, 107]);
            c.image_token_id
        }
        PresetConfig::Llava(c) if matches!(c.projector, crate::models::llava::ProjectorKind::Sequential(_)) => {
            ids.push(c.text.bos_token_id);
            ids.extend(text(18, 0)); // the system sentence
            ids.extend([3148, 1001, 29901]); // " USER:"
            for (k, _) in roles.iter().enumerate() {
                ids.extend(text(6, 1 + k as u32));
                ids.extend(std::iter::repeat_n(c.image_token_id, per_image));
            }
            ids.extend(text(24, 5)); // "Provide a structured description ..." instruction
            ids.extend(text(QUESTION_TOKENS, 7)); // the question, as INDICATION
            ids.extend(text(12, 9)); // TECHNIQUE: N/A COMPARISON: N/A
            ids.extend([319, 1799, 9047, 13566, 29901]); // " ASSISTANT:"
            c.image_token_id
        }
        other => anyhow::bail!("{} takes one image per prompt", other.describe()),
    };
    let image_positions = ids.iter().enumerate().filter(|(_, t)| **t == image_id).map(|(i, _)| i).collect();
    Ok(EncodedPrompt { input_ids: ids, image_positions })
}

/// One image count's figures: medians over the timed repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct ImagesRow {
    pub images: usize,
    pub roles: Vec<String>,
    pub prompt_tokens: usize,
    pub image_tokens: usize,
    pub encode_ms: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub decode_ms_per_token: f64,
    /// Encode + prefill + decode with last-quarter capture, and without.
    pub case_ms: f64,
    pub case_no_capture_ms: f64,
    pub capture_overhead_ms: f64,
    /// `case_ms / case_no_capture_ms`: what capture costs at this image count (the difference
    /// alone is often inside run-to-run noise).
    pub capture_time_ratio: f64,
    pub captured_mib: f64,
    /// Heap above the level before the case (CPU, counting allocator).
    pub peak_heap_mib: Option<f64>,
    /// Device memory above the level with the model loaded, so the weights do not dilute the
    /// ratio (sampled; GPU only).
    pub peak_device_gib: Option<f64>,
    pub ids_same_with_and_without_capture: bool,
}

/// N images against the 1-image baseline of the same run.
#[derive(Debug, Serialize)]
pub struct MultiImageReport {
    pub arch: String,
    pub model: String,
    pub device: String,
    pub dtype: String,
    pub quantization: String,
    pub scale: String,
    pub new_tokens: usize,
    pub reps: usize,
    pub load_s: f64,
    pub baseline: ImagesRow,
    pub measured: ImagesRow,
    /// `measured / baseline` per figure (`None` where either is not positive).
    pub ratios: Vec<(String, Option<f64>)>,
}

/// The refusal for presets that take one image, naming the preset and those that take more.
fn check_images(preset: Preset, images: usize) -> Result<(), InputError> {
    if images > preset.max_images() {
        let several: Vec<&str> = Preset::ALL.iter().filter(|p| p.max_images() > 1).map(|p| p.name()).collect();
        return Err(InputError::Flag {
            flag: "--images",
            message: format!(
                "{} takes {} image per prompt, not {images}; several images: {}",
                preset.name(),
                preset.max_images(),
                several.join(", ")
            ),
        });
    }
    Ok(())
}

pub fn run(preset: Preset, images: usize, args: &BenchArgs, device: &Device, dtype: DType, format: WeightFormat) -> anyhow::Result<()> {
    check_images(preset, images)?;
    require_random_weights(preset, args)?;
    let sampler = MemorySampler::start(device);
    let Loaded { model, cfg, load_s, .. } = load(preset, args, device, dtype, format)?;
    // The 1-image baseline first, then N images, on the same model in the same process.
    let baseline = measure(model.as_ref(), &cfg, 1, args, device, dtype, sampler.as_ref())?;
    let measured =
        if images == 1 { baseline.clone() } else { measure(model.as_ref(), &cfg, images, args, device, dtype, sampler.as_ref())? };
    // A capture overhead within run-to-run noise can come out at or below zero: no ratio then.
    let ratio = |a: f64, b: f64| (a > 0.0 && b > 0.0 && a.is_finite()).then(|| a / b);
    let opt = |a: Option<f64>, b: Option<f64>| a.zip(b).and_then(|(a, b)| ratio(a, b));
    let ratios = vec![
        ("prompt tokens".to_string(), ratio(measured.prompt_tokens as f64, baseline.prompt_tokens as f64)),
        ("image encode".into(), ratio(measured.encode_ms, baseline.encode_ms)),
        ("prefill".into(), ratio(measured.prefill_ms, baseline.prefill_ms)),
        ("decode".into(), ratio(measured.decode_ms, baseline.decode_ms)),
        ("decode per token".into(), ratio(measured.decode_ms_per_token, baseline.decode_ms_per_token)),
        ("case with capture".into(), ratio(measured.case_ms, baseline.case_ms)),
        ("case without capture".into(), ratio(measured.case_no_capture_ms, baseline.case_no_capture_ms)),
        ("capture overhead".into(), ratio(measured.capture_overhead_ms, baseline.capture_overhead_ms)),
        ("capture time / none".into(), ratio(measured.capture_time_ratio, baseline.capture_time_ratio)),
        ("kept attention".into(), ratio(measured.captured_mib, baseline.captured_mib)),
        ("peak heap".into(), opt(measured.peak_heap_mib, baseline.peak_heap_mib)),
        ("peak device memory".into(), opt(measured.peak_device_gib, baseline.peak_device_gib)),
    ];
    let report = MultiImageReport {
        arch: preset.name().into(),
        model: cfg.describe(),
        device: if device.is_cpu() { "cpu".into() } else { "cuda".into() },
        dtype: dtype_name(dtype).into(),
        quantization: format.name().into(),
        scale: scale(preset, args),
        new_tokens: args.new_tokens as usize,
        reps: args.reps as usize,
        load_s,
        baseline,
        measured,
        ratios,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    let same = report.baseline.ids_same_with_and_without_capture && report.measured.ids_same_with_and_without_capture;
    anyhow::ensure!(same, "capturing attention changed the generated ids");
    Ok(())
}

/// One case's stages.
struct CaseTiming {
    encode_ms: f64,
    prefill_ms: f64,
    decode_ms: f64,
    step_ms: Vec<f64>,
    ids: Vec<u32>,
    captured_values: usize,
    peak_heap: usize,
}

fn run_case(
    model: &dyn VisionLanguageModel,
    pixels: &[Tensor],
    prompt: &EncodedPrompt,
    plan: &crate::case::CasePlan,
    device: &Device,
    capture: Capture,
) -> anyhow::Result<CaseTiming> {
    device.synchronize()?;
    let base = alloc_stats::current_bytes();
    alloc_stats::reset_peak();
    let t = Instant::now();
    let features = model.encode_image_list(pixels, &mut NoProbe)?;
    device.synchronize()?;
    let encode_ms = t.elapsed().as_secs_f64() * 1e3;
    let rows = QueryRows::last_row(prompt.input_ids.len());
    let (g, recorder) = generate_captured(model, plan, &features, prompt, &rows, None, capture)?;
    device.synchronize()?;
    let peak_heap = alloc_stats::peak_bytes().saturating_sub(base);
    Ok(CaseTiming {
        encode_ms,
        prefill_ms: g.prefill_ms,
        decode_ms: g.decode_ms,
        step_ms: g.step_ms,
        ids: g.ids,
        captured_values: recorder.stored_values(),
        peak_heap,
    })
}

fn measure(
    model: &dyn VisionLanguageModel,
    cfg: &PresetConfig,
    n: usize,
    args: &BenchArgs,
    device: &Device,
    dtype: DType,
    sampler: Option<&MemorySampler>,
) -> anyhow::Result<ImagesRow> {
    let roles = roles(cfg, n);
    let prompt = prompt(cfg, &roles)?;
    let (h, w) = cfg.image_hw();
    // A different random image per role (the same ones in the baseline's first slot).
    let pixels = (0..n)
        .map(|k| {
            Tensor::from_vec(normal_values(args.seed + k as u64, 3 * h * w, 0.0, 1.0), (1, 3, h, w), &Device::Cpu)?
                .to_device(device)?
                .to_dtype(dtype)
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let new_tokens = args.new_tokens as usize;
    let plan = capture_plan(&model.summary(), new_tokens)?;
    let idle = sampler.map(|s| s.current_bytes());
    // One warm-up case (kernels, allocations), then the timed ones.
    run_case(model, &pixels, &prompt, &plan, device, Capture::Map)?;
    if let Some(s) = sampler {
        s.reset_peak();
    }
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..args.reps {
        with.push(run_case(model, &pixels, &prompt, &plan, device, Capture::Map)?);
        without.push(run_case(model, &pixels, &prompt, &plan, device, Capture::Nothing)?);
    }
    for t in with.iter().chain(&without) {
        anyhow::ensure!(t.ids.len() == new_tokens, "generation stopped after {} of {new_tokens} tokens", t.ids.len());
    }
    let total = |t: &CaseTiming| t.encode_ms + t.prefill_ms + t.decode_ms;
    let case_ms = median(with.iter().map(total).collect());
    let case_no_capture_ms = median(without.iter().map(total).collect());
    Ok(ImagesRow {
        images: n,
        roles: roles.iter().map(|r| r.to_string()).collect(),
        prompt_tokens: prompt.input_ids.len(),
        image_tokens: prompt.image_positions.len(),
        encode_ms: median(with.iter().map(|t| t.encode_ms).collect()),
        prefill_ms: median(with.iter().map(|t| t.prefill_ms).collect()),
        decode_ms: median(with.iter().map(|t| t.decode_ms).collect()),
        decode_ms_per_token: median(with.iter().flat_map(|t| t.step_ms.iter().copied()).collect()),
        case_ms,
        case_no_capture_ms,
        capture_overhead_ms: case_ms - case_no_capture_ms,
        capture_time_ratio: case_ms / case_no_capture_ms,
        captured_mib: with[0].captured_values as f64 * 4.0 / MIB,
        peak_heap_mib: alloc_stats::is_active().then(|| with.iter().chain(&without).map(|t| t.peak_heap).max().unwrap_or(0) as f64 / MIB),
        peak_device_gib: sampler.zip(idle).map(|(s, idle)| s.peak_bytes().saturating_sub(idle) as f64 / GIB),
        ids_same_with_and_without_capture: with.iter().zip(&without).all(|(a, b)| a.ids == b.ids),
    })
}

fn print_report(r: &MultiImageReport) {
    let (b, m) = (&r.baseline, &r.measured);
    println!("{} ({} {}{}, {}), random weights", r.arch, r.device, r.dtype, r.quantization_suffix(), r.scale);
    println!("{}", r.model);
    println!(
        "one case = encode the images + prefill + {} new tokens, last-quarter capture vs none; median of {} after a warm-up; loaded in {:.1} s",
        r.new_tokens, r.reps, r.load_s
    );
    for row in [b, m] {
        println!(
            "{} image{}: {} prompt tokens, {} image tokens ({})",
            row.images,
            if row.images == 1 { "" } else { "s" },
            row.prompt_tokens,
            row.image_tokens,
            row.roles.join(", ")
        );
    }
    let head_n = format!("{} images", m.images);
    println!("{:<28} {:>12} {:>12} {:>10}", "figure", "1 image", head_n, "ratio");
    let fmt_opt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.2}"));
    let lines: [(&str, String, String); 12] = [
        ("prompt tokens", b.prompt_tokens.to_string(), m.prompt_tokens.to_string()),
        ("image encode ms", format!("{:.2}", b.encode_ms), format!("{:.2}", m.encode_ms)),
        ("prefill ms", format!("{:.2}", b.prefill_ms), format!("{:.2}", m.prefill_ms)),
        ("decode ms", format!("{:.2}", b.decode_ms), format!("{:.2}", m.decode_ms)),
        ("decode per token ms", format!("{:.2}", b.decode_ms_per_token), format!("{:.2}", m.decode_ms_per_token)),
        ("case with capture ms", format!("{:.2}", b.case_ms), format!("{:.2}", m.case_ms)),
        ("case without capture ms", format!("{:.2}", b.case_no_capture_ms), format!("{:.2}", m.case_no_capture_ms)),
        ("capture overhead ms", format!("{:.2}", b.capture_overhead_ms), format!("{:.2}", m.capture_overhead_ms)),
        ("capture time / none", format!("{:.3}", b.capture_time_ratio), format!("{:.3}", m.capture_time_ratio)),
        ("kept attention MiB", format!("{:.3}", b.captured_mib), format!("{:.3}", m.captured_mib)),
        ("peak heap MiB", fmt_opt(b.peak_heap_mib), fmt_opt(m.peak_heap_mib)),
        ("peak device GiB over weights", fmt_opt(b.peak_device_gib), fmt_opt(m.peak_device_gib)),
    ];
    debug_assert_eq!(lines.len(), r.ratios.len());
    for ((name, one, n), (_, ratio)) in lines.iter().zip(&r.ratios) {
        println!("{name:<28} {one:>12} {n:>12} {:>10}", ratio.map_or("n/a".to_string(), |x| format!("{x:.2}x")));
    }
    // The headline ratios in words, e.g. "3 images: prefill 2.90x the 1-image prefill".
    for (name, ratio) in &r.ratios {
        if let Some(x) = ratio
            && matches!(
                name.as_str(),
                "prefill" | "decode" | "capture overhead" | "capture time / none" | "peak heap" | "peak device memory"
            )
        {
            println!("{} images: {name} {x:.2}x the 1-image {name}", m.images);
        }
    }
    if b.peak_heap_mib.is_none() && b.peak_device_gib.is_none() {
        println!("(peak memory not measured: no counting allocator in this build and no GPU sampler)");
    }
    println!(
        "generated ids identical with and without capture: {}",
        b.ids_same_with_and_without_capture && m.ids_same_with_and_without_capture
    );
}

impl MultiImageReport {
    fn quantization_suffix(&self) -> String {
        if self.quantization == "none" { String::new() } else { format!(" + {} weights", self.quantization) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench prompt holds one run of the model's image tokens per image, in the roles' order.
    #[test]
    fn the_bench_prompts_hold_one_image_run_per_role() {
        for (preset, order) in [
            (Preset::MidGemma3, ["current", "prior", "lateral"]),
            (Preset::MidMaira2, ["current", "lateral", "prior"]),
            (Preset::Maira2, ["current", "lateral", "prior"]),
            (Preset::MedGemma4b, ["current", "prior", "lateral"]),
        ] {
            let cfg = preset.config(None, None);
            for n in 1..=3 {
                let roles = roles(&cfg, n);
                assert_eq!(roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(), order[..n], "{}", preset.name());
                let p = prompt(&cfg, &roles).unwrap();
                let runs = crate::models::processor::image_runs(&p.image_positions);
                assert_eq!(runs.len(), n, "{}", preset.name());
                assert!(runs.iter().all(|r| r.len() == cfg.image_tokens()), "{}", preset.name());
            }
        }
        // Three MAIRA-2 images fit its positions: 3 x 1369 image tokens and the text.
        let cfg = Preset::Maira2.config(None, None);
        let p = prompt(&cfg, &roles(&cfg, 3)).unwrap();
        let PresetConfig::Llava(c) = &cfg else { panic!("maira-2 is a LLaVA") };
        assert!(p.input_ids.len() > 3 * 1369 && p.input_ids.len() <= c.text.max_positions);
        assert!(p.input_ids.iter().all(|&t| (t as usize) < c.text.vocab_size));
    }

    #[test]
    fn single_image_presets_refuse_several_images_by_name() {
        let err = check_images(Preset::LlavaRad, 2).unwrap_err().to_string();
        assert!(err.contains("llava-rad takes 1 image per prompt, not 2") && err.contains("maira-2"), "{err}");
        assert!(check_images(Preset::LlavaRad, 1).is_ok());
        assert!(check_images(Preset::MidMaira2, 3).is_ok());
    }
}
