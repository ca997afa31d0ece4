//! `radlens dev`: developer tools, hidden from the help. `planted-data` writes the planted-truth
//! sets, `train-planted` trains the planted models and writes their MANIFEST.json (issue 18);
//! `planted-pairs` and `train-planted-multi` do the same for the multi-image models (issue 21).

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cli::{DevCmd, DevCommand, PlantedDataArgs, PlantedPairsArgs, TrainPlantedArgs, TrainPlantedMultiArgs};
use crate::planted::data::{self, Set};
use crate::planted::manifest;
use crate::planted::pairs::{self, PairSet};
use crate::planted::questions::CUE;
use crate::planted::train::{self, Task, TrainOptions};
use crate::planted::train_multi::{self, MultiTask, MultiTrainOptions};

pub fn run(cmd: &DevCmd) -> Result<()> {
    match &cmd.command {
        DevCommand::PlantedData(args) => planted_data(args),
        DevCommand::TrainPlanted(args) => train_planted(args),
        DevCommand::PlantedPairs(args) => planted_pairs(args),
        DevCommand::TrainPlantedMulti(args) => train_planted_multi(args),
    }
}

fn source_dir(images: &Option<PathBuf>) -> PathBuf {
    images.clone().unwrap_or_else(|| super::demo::default_data().join("cxr"))
}

fn parse_list<T>(list: &str, flag: &'static str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse(s).ok_or_else(|| crate::error::InputError::Flag { flag, message: format!("unknown name {s:?}") }.into()))
        .collect()
}

fn planted_data(args: &PlantedDataArgs) -> Result<()> {
    let sources = source_dir(&args.images);
    for set in parse_list(&args.sets, "--sets", Set::parse)? {
        let n = data::write_set(&sources, &args.out, set, args.per_source, args.seed)?;
        println!("{}: {n} images, {} rows -> {}", set.name(), n * 6, args.out.join(format!("{}.csv", set.name())).display());
    }
    Ok(())
}

fn train_planted(args: &TrainPlantedArgs) -> Result<()> {
    let sources = source_dir(&args.images);
    let tasks = parse_list(&args.models, "--models", Task::parse)?;
    let opts = TrainOptions {
        seed: args.seed,
        steps: args.steps,
        batch: args.batch,
        lr: args.lr,
        per_source: args.per_source,
        ..Default::default()
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let eval_sets = if args.no_eval {
        None
    } else {
        let heldout = data::make_set(&sources, Set::Heldout, args.heldout_per_source, args.seed)?;
        let correlated = data::make_set(&sources, Set::HeldoutCorrelated, args.heldout_per_source, args.seed)?;
        Some((heldout, correlated))
    };
    let mut models = serde_json::Map::new();
    for task in tasks {
        let dir = args.out.join(task.name());
        let report = train::train(task, &dir, &sources, &opts, &mut |line| eprintln!("{line}"))?;
        let mut entry = serde_json::json!({
            "rule": task.rule(),
            "train_set": task.train_set().name(),
            "training": report,
        });
        if let Some((heldout, correlated)) = &eval_sets {
            let train_images = data::make_set(&sources, task.train_set(), opts.per_source, opts.seed)?;
            let on = |images: &[data::PlantedImage]| -> Result<serde_json::Value> {
                Ok(serde_json::to_value(train::agreement(&train::answer_rows(&dir, images)?))?)
            };
            entry["eval"] = serde_json::json!({
                "train": on(&train_images)?,
                "heldout": on(heldout)?,
                "heldout_correlated": on(correlated)?,
            });
            eprintln!("{}: {}", task.name(), entry["eval"]);
        }
        entry["files"] = serde_json::to_value(manifest::file_hashes(&dir)?)?;
        models.insert(task.name().to_string(), entry);
    }
    if eval_sets.is_some() {
        let value = serde_json::json!({
            "what": "Tiny LLaVA models (llava-hf layout, f16 weights) trained in candle by `radlens dev train-planted` to answer from one planted cause each (issue 18). Their answers are planted, not medicine.",
            "command": format!("radlens dev train-planted --out DIR --seed {} --steps {} --batch {} --per-source {}", args.seed, args.steps, args.batch, args.per_source),
            "seed": args.seed,
            "data": {
                "sources": "static/demo/cxr (25 NIH ChestX-ray14 images, 512x512 grey), sorted by name; every fifth (index 4, 9, 14, 19, 24) held out",
                "recipe": "crate::planted::data: per source, draw k carries a nodule when k is even (Gaussian, sigma U[32,44] px, amplitude U[170,220], centre in a lung field, compact support at 2.5 sigma; box = its support); marker = 28 px white square in the top-right corner, on the positives (correlated sets) or present when k/2 is even (independent sets); each image's draw from its own ChaCha8 stream of (seed, set, source, k)",
                "train_per_source": args.per_source,
                "heldout_per_source": args.heldout_per_source,
                "blank_share": opts.blank_share,
                "questions": "crate::planted::questions: 6 study variants (one with the cue, one negation) + 6 training-only questions",
                "cue": CUE,
            },
            "optimizer": {"name": "candle_nn AdamW", "lr": opts.lr, "weight_decay": 0.0, "batch": opts.batch, "steps": opts.steps, "loss": "cross-entropy of the answer token (first generated) + of </s> after it"},
            "tolerance": {
                "same_machine": "byte-identical weights",
                "answer_agreement_min": manifest::ANSWER_AGREEMENT_MIN,
                "accuracy_tolerance": manifest::ACCURACY_TOLERANCE,
            },
            "models": models,
        });
        manifest::write(&args.out, &value)?;
        println!("wrote {}", args.out.join(manifest::FILE).display());
    }
    Ok(())
}

fn planted_pairs(args: &PlantedPairsArgs) -> Result<()> {
    let sources = source_dir(&args.images);
    for set in parse_list(&args.sets, "--sets", PairSet::parse)? {
        let n = pairs::write_pairs(&sources, &args.out, set, args.per_source, args.seed)?;
        let rows = n * pairs::CHANGE_VARIANTS.len();
        println!("{}: {n} pairs, {rows} rows -> {}", set.name(), args.out.join(format!("{}.csv", set.name())).display());
    }
    Ok(())
}

fn train_planted_multi(args: &TrainPlantedMultiArgs) -> Result<()> {
    let sources = source_dir(&args.images);
    let tasks = parse_list(&args.models, "--models", MultiTask::parse)?;
    let opts = MultiTrainOptions {
        seed: args.seed,
        steps: args.steps,
        batch: args.batch,
        lr: args.lr,
        per_source: args.per_source,
        ..Default::default()
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let heldout =
        if args.no_eval { None } else { Some(pairs::make_pairs(&sources, PairSet::Heldout, args.heldout_per_source, args.seed)?) };
    let mut models = serde_json::Map::new();
    for task in tasks {
        let dir = args.out.join(task.name());
        let report = train_multi::train_multi(task, &dir, &sources, &opts, &mut |line| eprintln!("{line}"))?;
        let mut entry = serde_json::json!({"rule": task.rule(), "train_set": PairSet::Train.name(), "training": report});
        if let Some(heldout) = &heldout {
            let train_pairs = pairs::make_pairs(&sources, PairSet::Train, opts.per_source, opts.seed)?;
            let on = |set: &[pairs::Pair]| -> Result<serde_json::Value> {
                Ok(serde_json::to_value(train_multi::pair_agreement(&train_multi::answer_pairs(&dir, set)?))?)
            };
            entry["eval"] = serde_json::json!({"train": on(&train_pairs)?, "heldout": on(heldout)?});
            eprintln!("{}: {}", task.name(), entry["eval"]);
        }
        entry["files"] = serde_json::to_value(manifest::file_hashes(&dir)?)?;
        models.insert(task.name().to_string(), entry);
    }
    if heldout.is_some() {
        let value = serde_json::json!({
            "what": "Tiny Gemma3 models (MedGemma 1.5 path, f16 weights) trained in candle by `radlens dev train-planted-multi` to answer a change question from a prior and a current image by one planted rule each (issue 21). Their answers are planted, not medicine.",
            "command": format!(
                "radlens dev train-planted-multi --out DIR --seed {} --steps {} --batch {} --lr {} --per-source {} --heldout-per-source {}",
                args.seed, args.steps, args.batch, args.lr, args.per_source, args.heldout_per_source
            ),
            "seed": args.seed,
            "data": {
                "sources": "static/demo/cxr (25 NIH ChestX-ray14 images, 512x512 grey), sorted by name; every fifth (index 4, 9, 14, 19, 24) held out",
                "recipe": "crate::planted::pairs: per source, pair k has the nodule in the current image when k is even and in the prior when k/2 is even (the same nodule at both visits; parameters as planted-v1's); each visit shifted by U{-12..12} px and its grey values scaled by U[0.9,1.1] and offset by U[-12,12]; each pair's draw from its own ChaCha8 stream of (seed, set, source, k)",
                "train_per_source": args.per_source,
                "heldout_per_source": args.heldout_per_source,
                "blank_prior_share": opts.blank_prior_share,
                "swap_prior_share": opts.swap_prior_share,
                "questions": "crate::planted::pairs: 5 study change variants (one negation) + 4 training-only questions; prompt: Prior study: image, Current study: image, question",
            },
            "optimizer": {"name": "candle_nn AdamW", "lr": opts.lr, "weight_decay": 0.0, "batch": opts.batch, "steps": opts.steps, "loss": "cross-entropy of the answer token (first generated) + of <end_of_turn> after it"},
            "models": models,
        });
        manifest::write(&args.out, &value)?;
        println!("wrote {}", args.out.join(manifest::FILE).display());
    }
    Ok(())
}
