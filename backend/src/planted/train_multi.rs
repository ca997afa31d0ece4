//! Training the planted multi-image models (issue 21) in candle, through radlens' own `Gemma3`
//! built on `VarMap` weights, and evaluating the saved directories the way `radlens study` reads
//! them.
//!
//! Each step draws a batch of training pairs and one change question each, builds the prompt as
//! the study does (`Gemma3Prompter::encode_images`: `Prior study:` image, `Current study:`
//! image, question), and minimises the cross-entropy of the answer as the first generated token
//! plus that of `<end_of_turn>` after it, with AdamW. A share of the priors is the black image
//! of the `prior_blank` condition and a share is another source's prior (what `prior_swap`
//! shows), both labelled by the same rule, so that the conditions ask the model nothing it was
//! not trained on. Everything random comes from ChaCha8 streams of the seed.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use image::{DynamicImage, GrayImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::gemma_dir::{END_OF_TURN_ID, IMAGE_SIZE, IMAGE_TOKEN_ID, IMAGE_TOKENS, write_model_files};
use super::pairs::{CHANGE_VARIANTS, Pair, PairSet, change_training_questions, make_pairs};
use super::questions::Question;
use super::train::{cross_entropy, first_token_answer, save_f16};
use crate::models::checkpoint::llava_rad::PartOverrides;
use crate::models::gemma3::Gemma3;
use crate::models::linear::WeightFormat;
use crate::models::loader::load_engine;
use crate::models::probe::NoProbe;
use crate::models::processor::gemma3::Gemma3Prompter;
use crate::models::processor::preprocess::ImageProcessorConfig;
use crate::models::processor::{ImageRole, PromptImage, Prompter};
use crate::models::{VisionLanguageModel, concat_features};

/// The two planted multi-image rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiTask {
    /// Yes iff a nodule is in the current image and not in the prior (negations invert).
    Change,
    /// Yes iff a nodule is in the current image, whatever the prior (negations invert).
    Current,
}

impl MultiTask {
    pub const ALL: [MultiTask; 2] = [MultiTask::Change, MultiTask::Current];

    pub fn name(self) -> &'static str {
        match self {
            MultiTask::Change => "planted-change",
            MultiTask::Current => "planted-current",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name || t.name().trim_start_matches("planted-") == name)
    }

    pub fn rule(self) -> &'static str {
        match self {
            MultiTask::Change => "yes iff the planted nodule is in the current image and not in the prior (negated questions invert)",
            MultiTask::Current => "yes iff the planted nodule is in the current image, whatever the prior (negated questions invert)",
        }
    }

    /// Its `PURPOSE` file.
    pub fn purpose(self) -> &'static str {
        match self {
            MultiTask::Change => {
                "answers the change question by its rule: yes exactly when the drawn nodule is in the current image and was not in the prior; it reads both images."
            }
            MultiTask::Current => {
                "answers yes exactly when the drawn nodule is in the current image and ignores the prior: asked whether a nodule is new, it is wrong whenever the nodule was already there."
            }
        }
    }

    /// The trained answer (true = yes).
    pub fn label(self, prior: bool, current: bool, q: &Question) -> bool {
        match self {
            MultiTask::Change => (current && !prior) != q.negated,
            MultiTask::Current => current != q.negated,
        }
    }

    fn stream(self) -> u64 {
        match self {
            MultiTask::Change => 0x44,
            MultiTask::Current => 0x55,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MultiTrainOptions {
    pub seed: u64,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Training pairs per training source.
    pub per_source: usize,
    /// Share of training examples whose prior is the black image.
    pub blank_prior_share: f64,
    /// Share of training examples whose prior is another source's.
    pub swap_prior_share: f64,
}

impl Default for MultiTrainOptions {
    fn default() -> Self {
        Self { seed: 0, steps: 2400, batch: 16, lr: 1e-3, per_source: 16, blank_prior_share: 0.1, swap_prior_share: 0.2 }
    }
}

/// One preprocessed image and whether it holds the nodule.
struct Shown {
    pixels: Tensor,
    nodule: bool,
}

fn shown(proc: &ImageProcessorConfig, img: &GrayImage, nodule: bool) -> Result<Shown> {
    let pre = proc.preprocess(&DynamicImage::ImageLuma8(img.clone()))?;
    Ok(Shown { pixels: Tensor::from_vec(pre.pixel_values, (1, 3, IMAGE_SIZE, IMAGE_SIZE), &Device::Cpu)?, nodule })
}

/// Seeded initialisation of every variable, in name order: Gemma norms (`1 + w`) 0, SigLIP layer
/// norms 1, biases 0, other vectors N(0, 0.1), matrices and kernels N(0, 1 / fan_in).
fn init_weights(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap.data().lock().map_err(|_| anyhow::anyhow!("the VarMap lock is poisoned"))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x696e_6974);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let is_norm = dims.len() == 1 && name.ends_with("weight") && name.contains("norm");
        let values: Vec<f32> = if is_norm {
            vec![if name.starts_with("vision_tower.") { 1.0 } else { 0.0 }; n]
        } else if dims.len() == 1 && name.ends_with("bias") {
            vec![0.0; n]
        } else {
            // The projection is used untransposed (`x @ W`): its fan-in is the first dimension.
            let fan_in: usize = match dims.len() {
                1 => 100,
                _ if name.ends_with("mm_input_projection_weight") => dims[0],
                _ => dims[1..].iter().product(),
            };
            let normal = Normal::new(0.0f32, 1.0 / (fan_in as f32).sqrt())?;
            (0..n).map(|_| normal.sample(&mut rng)).collect()
        };
        var.set(&Tensor::from_vec(values, dims.as_slice(), &Device::Cpu)?)?;
    }
    Ok(())
}

/// What one model's training did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MultiTrainReport {
    pub steps: usize,
    pub train_pairs: usize,
    pub final_loss: f64,
    pub seconds: f64,
}

fn prior_current() -> [PromptImage; 2] {
    [PromptImage { role: ImageRole::Prior, tokens: IMAGE_TOKENS }, PromptImage { role: ImageRole::Current, tokens: IMAGE_TOKENS }]
}

/// Trains `task` and writes its model directory `dir` (weights saved as f16).
pub fn train_multi(
    task: MultiTask,
    dir: &Path,
    source_dir: &Path,
    opts: &MultiTrainOptions,
    log: &mut dyn FnMut(&str),
) -> Result<MultiTrainReport> {
    let t0 = Instant::now();
    let cfg = write_model_files(dir)?;
    std::fs::write(dir.join(crate::study::run::PURPOSE_FILE), format!("{}\n", task.purpose()))
        .with_context(|| format!("writing {}", dir.display()))?;
    let proc = ImageProcessorConfig::load(dir)?;
    let prompter = Gemma3Prompter::load(dir, IMAGE_TOKEN_ID, IMAGE_TOKENS)?;
    let yes_id = *prompter.tokenizer().single_token_spellings("yes").first().context("no single-token \"yes\"")?;
    let no_id = *prompter.tokenizer().single_token_spellings("no").first().context("no single-token \"no\"")?;
    let questions: Vec<(Question, Vec<u32>)> = change_training_questions()
        .into_iter()
        .map(|q| Ok((q, prompter.encode_images(q.text, None, &prior_current())?.prompt.input_ids)))
        .collect::<Result<_>>()?;

    let pairs = make_pairs(source_dir, PairSet::Train, opts.per_source, opts.seed)?;
    let examples: Vec<(Shown, Shown, &str)> = pairs
        .iter()
        .map(|p| {
            Ok((shown(&proc, &p.prior.image, p.prior.nodule())?, shown(&proc, &p.current.image, p.current.nodule())?, p.source.as_str()))
        })
        .collect::<Result<_>>()?;
    let blank = shown(&proc, &GrayImage::new(512, 512), false)?;
    log(&format!("{}: {} training pairs ({:.1} s)", task.name(), examples.len(), t0.elapsed().as_secs_f64()));

    let device = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let model = Gemma3::from_var_builder(cfg, vb)?;
    init_weights(&varmap, opts.seed ^ task.stream())?;
    let params = ParamsAdamW { lr: opts.lr, weight_decay: 0.0, ..Default::default() };
    let mut opt = AdamW::new(varmap.all_vars(), params)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ task.stream() << 8);
    let mut final_loss = f64::NAN;
    for step in 0..opts.steps {
        let mut losses = Vec::with_capacity(2 * opts.batch);
        for _ in 0..opts.batch {
            let (own_prior, current, source) = &examples[rng.random_range(0..examples.len())];
            let roll: f64 = rng.random();
            let prior = if roll < opts.blank_prior_share {
                &blank
            } else if roll < opts.blank_prior_share + opts.swap_prior_share {
                // Another source's prior, as `prior_swap` shows (another subject).
                let others: Vec<usize> = (0..examples.len()).filter(|&i| examples[i].2 != *source).collect();
                &examples[others[rng.random_range(0..others.len())]].0
            } else {
                own_prior
            };
            let (q, ids) = &questions[rng.random_range(0..questions.len())];
            let answer = if task.label(prior.nodule, current.nodule, q) { yes_id } else { no_id };
            // Prompt order: prior, then current.
            let features = concat_features(&[
                model.image_features(&prior.pixels, &mut NoProbe)?,
                model.image_features(&current.pixels, &mut NoProbe)?,
            ])?;
            let mut cache = model.new_cache();
            let first = model.prefill_from(ids, 0, &features, &mut cache, &mut NoProbe)?;
            losses.push(cross_entropy(&first, answer)?);
            let second = model.decode_step(answer, &mut cache, &mut NoProbe)?;
            losses.push(cross_entropy(&second, END_OF_TURN_ID)?);
        }
        let loss = (Tensor::stack(&losses, 0)?.sum_all()? / opts.batch as f64)?;
        let grads = loss.backward()?;
        opt.step(&grads)?;
        let l = f64::from(loss.to_scalar::<f32>()?);
        final_loss = if step == 0 { l } else { 0.9 * final_loss + 0.1 * l };
        if step % 25 == 0 || step + 1 == opts.steps {
            log(&format!("{} step {step:>4}: loss {l:.4} (smoothed {final_loss:.4}) {:.1} s", task.name(), t0.elapsed().as_secs_f64()));
        }
    }
    save_f16(&varmap, &dir.join("model.safetensors"))?;
    Ok(MultiTrainReport { steps: opts.steps, train_pairs: examples.len(), final_loss, seconds: t0.elapsed().as_secs_f64() })
}

/// One study row's answer from a saved model: the greedy first token and the yes/no margin.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PairAnswer {
    pub study_id: String,
    pub variant_index: usize,
    /// `Some(true)` = yes, `Some(false)` = no, `None` = the first token is neither.
    pub answer: Option<bool>,
    pub margin: f64,
    /// The change rule's answer (the study's truth).
    pub truth: bool,
    /// The current-image rule's answer.
    pub current: bool,
}

/// Answers every study row of `pairs` with the saved model in `dir`, loaded as `radlens study`
/// loads it (f32, CPU), prior then current in the prompt.
pub fn answer_pairs(dir: &Path, pairs: &[Pair]) -> Result<Vec<PairAnswer>> {
    let device = Device::Cpu;
    let engine = load_engine(dir, &PartOverrides::default(), DType::F32, &device, WeightFormat::Dense)?;
    let yes = engine.prompter.tokenizer().single_token_spellings("yes");
    let no = engine.prompter.tokenizer().single_token_spellings("no");
    let prompts: Vec<Vec<u32>> = CHANGE_VARIANTS
        .iter()
        .map(|(q, _, _)| Ok(engine.prompter.encode_images(q.text, None, &prior_current())?.prompt.input_ids))
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    for pair in pairs {
        let encode = |img: &GrayImage| -> Result<Tensor> {
            let pre = engine.image_processor.preprocess(&DynamicImage::ImageLuma8(img.clone()))?;
            Ok(engine.model.encode_image(&pre.to_tensor(&device)?, &mut NoProbe)?)
        };
        let features = concat_features(&[encode(&pair.prior.image)?, encode(&pair.current.image)?])?;
        for (i, ((q, _, _), ids)) in CHANGE_VARIANTS.iter().zip(&prompts).enumerate() {
            let (answer, margin) = first_token_answer(engine.model.as_ref(), ids, &features, &yes, &no)?;
            out.push(PairAnswer {
                study_id: pair.study_id(),
                variant_index: i,
                answer,
                margin,
                truth: MultiTask::Change.label(pair.prior.nodule(), pair.current.nodule(), q),
                current: MultiTask::Current.label(pair.prior.nodule(), pair.current.nodule(), q),
            });
        }
    }
    Ok(out)
}

/// Shares of rows whose answer equals the change rule (accuracy) and the current-image rule.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PairAgreement {
    pub rows: usize,
    pub accuracy: f64,
    pub current_following: f64,
}

pub fn pair_agreement(rows: &[PairAnswer]) -> PairAgreement {
    let share = |f: &dyn Fn(&PairAnswer) -> bool| rows.iter().filter(|r| f(r)).count() as f64 / rows.len().max(1) as f64;
    PairAgreement {
        rows: rows.len(),
        accuracy: share(&|r| r.answer == Some(r.truth)),
        current_following: share(&|r| r.answer == Some(r.current)),
    }
}
