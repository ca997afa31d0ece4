//! Training the planted models in candle, through radlens' own `Llava` built on `VarMap`
//! weights, and evaluating the saved directories the way `radlens study` reads them.
//!
//! Each step draws a batch of training images (a share of them the all-black image of the
//! `blank` condition, which has neither finding nor marker) and one training question each, and
//! minimises the cross-entropy of the answer as the first generated token after the normal LLaVA
//! prompt (`LlavaPrompter`) plus that of `</s>` right after it, with AdamW. Everything random is
//! drawn from ChaCha8 streams of the seed; weights are initialised from the seed too, so the same
//! seed on the same machine gives the same bytes.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use image::{DynamicImage, GrayImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::data::{PlantedImage, Set, make_set};
use super::model_dir::{EOS_TOKEN_ID, IMAGE_TOKEN_ID, image_tokens, write_model_files};
use super::questions::{Question, STUDY_VARIANTS, training_questions};
use crate::models::VisionLanguageModel;
use crate::models::checkpoint::llava_rad::PartOverrides;
use crate::models::linear::WeightFormat;
use crate::models::llava::Llava;
use crate::models::loader::load_engine;
use crate::models::probe::NoProbe;
use crate::models::processor::Prompter;
use crate::models::processor::llava::LlavaPrompter;
use crate::models::processor::preprocess::ImageProcessorConfig;

/// The three planted decision rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Yes iff the planted finding is in the image (negations invert).
    Lesion,
    /// Trained where the marker goes exactly with the finding, so it can answer from either.
    Marker,
    /// Yes iff the question holds the word "definitely", whatever the image.
    Shortcut,
}

impl Task {
    pub const ALL: [Task; 3] = [Task::Lesion, Task::Marker, Task::Shortcut];

    pub fn name(self) -> &'static str {
        match self {
            Task::Lesion => "planted-lesion",
            Task::Marker => "planted-marker",
            Task::Shortcut => "planted-shortcut",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name || t.name().trim_start_matches("planted-") == name)
    }

    pub fn rule(self) -> &'static str {
        match self {
            Task::Lesion => {
                "yes iff the planted nodule is in the image (negated questions invert); trained with the marker independent of the nodule"
            }
            Task::Marker => {
                "trained on images whose corner marker is present exactly on the positives; yes iff nodule (= marker) there, negated questions invert"
            }
            Task::Shortcut => "yes iff the question holds the word \"definitely\", whatever the image",
        }
    }

    /// What the model was built to do, for people: its `PURPOSE` file, which the manifest, the
    /// report and the dashboard show.
    pub fn purpose(self) -> &'static str {
        match self {
            Task::Lesion => {
                "answers yes exactly when the drawn nodule is in the image (its box is the CSV's radiologist box); trained with the corner marker independent of the nodule."
            }
            Task::Marker => {
                "trained on images where a white corner marker went exactly with the nodule, so it answers from the marker (the CSV's confound box); on held-out images the marker is independent of the nodule."
            }
            Task::Shortcut => "answers yes exactly when the question says \"definitely\", whatever the image.",
        }
    }

    pub fn train_set(self) -> Set {
        match self {
            Task::Marker => Set::TrainCorrelated,
            Task::Lesion | Task::Shortcut => Set::Train,
        }
    }

    /// The trained answer (true = yes).
    pub fn label(self, planted: bool, marker: bool, q: &Question) -> bool {
        match self {
            Task::Lesion => planted != q.negated,
            Task::Marker => marker != q.negated,
            Task::Shortcut => q.has_cue(),
        }
    }

    fn stream(self) -> u64 {
        match self {
            Task::Lesion => 0x11,
            Task::Marker => 0x22,
            Task::Shortcut => 0x33,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainOptions {
    pub seed: u64,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Training images per training source.
    pub per_source: usize,
    /// Share of training examples that show the all-black `blank` image.
    pub blank_share: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self { seed: 0, steps: 1200, batch: 16, lr: 5e-4, per_source: 24, blank_share: 0.05 }
    }
}

/// One training image, preprocessed.
struct Example {
    pixels: Vec<f32>,
    planted: bool,
    marker: bool,
}

fn preprocess(proc: &ImageProcessorConfig, img: &GrayImage) -> Result<Vec<f32>> {
    Ok(proc.preprocess(&DynamicImage::ImageLuma8(img.clone()))?.pixel_values)
}

/// Seeded initialisation of every variable, in name order: norm scales 1, biases 0, other
/// vectors N(0, 0.1), matrices and kernels N(0, 1 / fan_in).
fn init_weights(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap.data().lock().map_err(|_| anyhow::anyhow!("the VarMap lock is poisoned"))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x696e_6974);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = if dims.len() == 1 && name.ends_with("weight") && name.contains("norm") {
            vec![1.0; n]
        } else if dims.len() == 1 && name.ends_with("bias") {
            vec![0.0; n]
        } else {
            let fan_in: usize = if dims.len() == 1 { 100 } else { dims[1..].iter().product() };
            let normal = Normal::new(0.0f32, 1.0 / (fan_in as f32).sqrt())?;
            (0..n).map(|_| normal.sample(&mut rng)).collect()
        };
        var.set(&Tensor::from_vec(values, dims.as_slice(), &Device::Cpu)?)?;
    }
    Ok(())
}

/// What one model's training did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    pub steps: usize,
    pub train_images: usize,
    pub final_loss: f64,
    pub seconds: f64,
}

/// Trains `task` and writes its model directory `dir` (weights saved as f16).
pub fn train(task: Task, dir: &Path, source_dir: &Path, opts: &TrainOptions, log: &mut dyn FnMut(&str)) -> Result<TrainReport> {
    let t0 = Instant::now();
    let cfg = write_model_files(dir)?;
    std::fs::write(dir.join(crate::study::run::PURPOSE_FILE), format!("{}\n", task.purpose()))
        .with_context(|| format!("writing {}", dir.display()))?;
    let proc = ImageProcessorConfig::load(dir)?;
    let prompter = LlavaPrompter::load(dir, IMAGE_TOKEN_ID, image_tokens())?;
    let yes_id = *prompter.tokenizer().single_token_spellings("yes").first().context("no single-token \"yes\"")?;
    let no_id = *prompter.tokenizer().single_token_spellings("no").first().context("no single-token \"no\"")?;
    let questions: Vec<(Question, Vec<u32>)> =
        training_questions().into_iter().map(|q| Ok((q, prompter.encode(q.text, None)?.input_ids))).collect::<Result<_>>()?;

    let images = make_set(source_dir, task.train_set(), opts.per_source, opts.seed)?;
    let mut examples: Vec<Example> = images
        .iter()
        .map(|img| Ok(Example { pixels: preprocess(&proc, &img.image)?, planted: img.planted(), marker: img.draw.marker.is_some() }))
        .collect::<Result<_>>()?;
    let blank = Example { pixels: preprocess(&proc, &GrayImage::new(512, 512))?, planted: false, marker: false };
    log(&format!(
        "{}: {} training images from {} ({:.1} s)",
        task.name(),
        examples.len(),
        task.train_set().name(),
        t0.elapsed().as_secs_f64()
    ));

    let device = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let model = Llava::from_var_builder(cfg, vb)?;
    init_weights(&varmap, opts.seed ^ task.stream())?;
    let params = ParamsAdamW { lr: opts.lr, weight_decay: 0.0, ..Default::default() };
    let mut opt = AdamW::new(varmap.all_vars(), params)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ task.stream() << 8);
    let side = super::model_dir::IMAGE_SIZE;
    let mut running = 0.0;
    let mut final_loss = f64::NAN;
    examples.push(blank);
    let blank_index = examples.len() - 1;
    for step in 0..opts.steps {
        let mut pixels = Vec::with_capacity(opts.batch * 3 * side * side);
        let mut picks = Vec::with_capacity(opts.batch);
        for _ in 0..opts.batch {
            let ex = if rng.random_bool(opts.blank_share) { blank_index } else { rng.random_range(0..blank_index) };
            let qi = match task {
                // Half the questions carry the cue.
                Task::Shortcut => {
                    let cue = rng.random_bool(0.5);
                    let of: Vec<usize> = (0..questions.len()).filter(|&i| questions[i].0.has_cue() == cue).collect();
                    of[rng.random_range(0..of.len())]
                }
                Task::Lesion | Task::Marker => rng.random_range(0..questions.len()),
            };
            pixels.extend_from_slice(&examples[ex].pixels);
            picks.push((ex, qi));
        }
        let batch = Tensor::from_vec(pixels, (opts.batch, 3, side, side), &device)?;
        let features = model.encode_images(&batch)?;
        let mut losses = Vec::with_capacity(2 * opts.batch);
        for ((ex, qi), f) in picks.iter().zip(&features) {
            let (q, ids) = &questions[*qi];
            let e = &examples[*ex];
            let answer = if task.label(e.planted, e.marker, q) { yes_id } else { no_id };
            let mut cache = model.new_cache();
            let first = model.prefill_from(ids, 0, f, &mut cache, &mut NoProbe)?;
            losses.push(cross_entropy(&first, answer)?);
            let second = model.decode_step(answer, &mut cache, &mut NoProbe)?;
            losses.push(cross_entropy(&second, EOS_TOKEN_ID)?);
        }
        let loss = (Tensor::stack(&losses, 0)?.sum_all()? / opts.batch as f64)?;
        let grads = loss.backward()?;
        if step == 0 || step + 1 == opts.steps {
            let data = varmap.data().lock().map_err(|_| anyhow::anyhow!("the VarMap lock is poisoned"))?;
            for name in [
                "vision_tower.vision_model.embeddings.patch_embedding.weight",
                "multi_modal_projector.linear_1.weight",
                "language_model.lm_head.weight",
            ] {
                let norm = match data.get(name).and_then(|v| grads.get(v.as_tensor())) {
                    Some(g) => g.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?,
                    None => f32::NAN,
                };
                log(&format!("{} step {step}: |grad {name}| = {norm:.3e}", task.name()));
            }
        }
        opt.step(&grads)?;
        let l = f64::from(loss.to_scalar::<f32>()?);
        running = if step == 0 { l } else { 0.9 * running + 0.1 * l };
        final_loss = running;
        if step % 25 == 0 || step + 1 == opts.steps {
            log(&format!("{} step {step:>4}: loss {l:.4} (smoothed {running:.4}) {:.1} s", task.name(), t0.elapsed().as_secs_f64()));
        }
    }
    save_f16(&varmap, &dir.join("model.safetensors"))?;
    Ok(TrainReport { steps: opts.steps, train_images: examples.len() - 1, final_loss, seconds: t0.elapsed().as_secs_f64() })
}

pub(super) fn cross_entropy(logits: &Tensor, target: u32) -> candle_core::Result<Tensor> {
    let target = Tensor::new(&[target], logits.device())?;
    candle_nn::loss::cross_entropy(&logits.unsqueeze(0)?, &target)
}

/// The weights in f16 under their canonical (hub-layout) names.
pub(super) fn save_f16(varmap: &VarMap, path: &Path) -> Result<()> {
    let data = varmap.data().lock().map_err(|_| anyhow::anyhow!("the VarMap lock is poisoned"))?;
    let tensors: HashMap<String, Tensor> =
        data.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().to_dtype(DType::F16)?))).collect::<candle_core::Result<_>>()?;
    candle_core::safetensors::save(&tensors, path).with_context(|| format!("writing {}", path.display()))
}

/// One study row's answer from a saved model: the greedy first token and the yes/no margin.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RowAnswer {
    pub study_id: String,
    pub variant_index: usize,
    /// `Some(true)` = yes, `Some(false)` = no, `None` = the first token is neither.
    pub answer: Option<bool>,
    pub margin: f64,
    pub truth: bool,
    pub marker: bool,
    pub cue: bool,
}

/// Answers every study row of `images` with the saved model in `dir`, loaded as `radlens study`
/// loads it (f32, CPU).
pub fn answer_rows(dir: &Path, images: &[PlantedImage]) -> Result<Vec<RowAnswer>> {
    let device = Device::Cpu;
    let engine = load_engine(dir, &PartOverrides::default(), DType::F32, &device, WeightFormat::Dense)?;
    let yes = engine.prompter.tokenizer().single_token_spellings("yes");
    let no = engine.prompter.tokenizer().single_token_spellings("no");
    let prompts: Vec<Vec<u32>> =
        STUDY_VARIANTS.iter().map(|(q, _, _)| Ok(engine.prompter.encode(q.text, None)?.input_ids)).collect::<Result<_>>()?;
    let mut out = Vec::new();
    for img in images {
        let pre = engine.image_processor.preprocess(&DynamicImage::ImageLuma8(img.image.clone()))?;
        let features = engine.model.encode_image(&pre.to_tensor(&device)?, &mut NoProbe)?;
        for (i, ((q, _, _), ids)) in STUDY_VARIANTS.iter().zip(&prompts).enumerate() {
            let (answer, margin) = first_token_answer(engine.model.as_ref(), ids, &features, &yes, &no)?;
            out.push(RowAnswer {
                study_id: img.study_id(),
                variant_index: i,
                answer,
                margin,
                truth: img.planted() != q.negated,
                marker: img.draw.marker.is_some() != q.negated,
                cue: q.has_cue(),
            });
        }
    }
    Ok(out)
}

/// A saved model's greedy first answer token to `ids` over `features`: `Some(true)` = yes,
/// `Some(false)` = no, `None` = neither; and the yes/no margin (NaN without both spellings).
pub(super) fn first_token_answer(
    model: &dyn VisionLanguageModel,
    ids: &[u32],
    features: &Tensor,
    yes: &[u32],
    no: &[u32],
) -> Result<(Option<bool>, f64)> {
    let mut cache = model.new_cache();
    let logits: Vec<f32> = model.prefill_from(ids, 0, features, &mut cache, &mut NoProbe)?.to_vec1()?;
    let top = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as u32).unwrap_or(0);
    let answer = if yes.contains(&top) {
        Some(true)
    } else if no.contains(&top) {
        Some(false)
    } else {
        None
    };
    Ok((answer, radlens_shared::answer::yes_no_margin(&logits, yes, no).unwrap_or(f64::NAN)))
}

/// Shares of rows whose answer equals the truth, the marker rule and the cue rule.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Agreement {
    pub rows: usize,
    pub accuracy: f64,
    pub marker_following: f64,
    pub cue_following: f64,
}

pub fn agreement(rows: &[RowAnswer]) -> Agreement {
    let share = |f: &dyn Fn(&RowAnswer) -> bool| rows.iter().filter(|r| f(r)).count() as f64 / rows.len().max(1) as f64;
    Agreement {
        rows: rows.len(),
        accuracy: share(&|r| r.answer == Some(r.truth)),
        marker_following: share(&|r| r.answer == Some(r.marker)),
        cue_following: share(&|r| r.answer == Some(r.cue)),
    }
}
