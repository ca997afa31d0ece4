//! `radlens study --randomization N`: after a model's records, the weight-randomisation check
//! (grounding spec G5) on N of its rows, sampled by seed, written to `randomization.json`. The
//! cascade itself is [`crate::case::randomization`]; this picks the rows and keeps the file.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device};
use radlens_shared::grounding::{ModelRandomization, RandomizationSettings};

use super::plan::StudyRow;
use super::run_dir::{RANDOMIZATION, RunDir};
use crate::case::randomization::{Cascade, CascadeCase, run_cascade};
use crate::case::{CasePlan, CaseSpec};
use crate::models::checkpoint::llava_rad::PartOverrides;
use crate::models::linear::WeightFormat;
use crate::models::loader::{Engine, load_engine_redrawn};
use crate::models::processor::preprocess::load_image;

/// `samples` of the runnable rows, chosen by `seed` (the same rows on every rerun), in the
/// order of that draw. A row whose image cannot be read is left out with a note.
pub fn sample_cases(rows: &[StudyRow], images: &Path, settings: RandomizationSettings, notes: &mut Vec<String>) -> Vec<CascadeCase> {
    let mut runnable: Vec<(u64, &StudyRow)> = rows
        .iter()
        .filter(|r| r.problem.is_none())
        .map(|r| {
            let mut h = DefaultHasher::new();
            (settings.seed, r.sample_id()).hash(&mut h);
            (h.finish(), r)
        })
        .collect();
    runnable.sort_by_key(|a| (a.0, a.1.sample_id()));
    let mut out = Vec::new();
    for (_, r) in runnable.into_iter().take(settings.samples) {
        match load_image(&images.join(&r.image_path)) {
            Ok(image) => out.push(CascadeCase { sample_id: r.sample_id(), image, question: r.question.clone() }),
            Err(e) => notes.push(format!("{}: left out: {e:#}", r.sample_id())),
        }
    }
    out
}

/// The model's check as recorded, if a finished one with these settings is there.
pub fn recorded(dir: &RunDir, model: &str, settings: RandomizationSettings) -> anyhow::Result<bool> {
    Ok(dir.read_randomization()?.models.iter().any(|m| m.model == model && m.settings == settings))
}

/// Where the model came from, to load it again with re-drawn weights.
pub struct ModelSource<'a> {
    pub name: &'a str,
    pub dir: &'a Path,
    pub dtype: DType,
    pub device: &'a Device,
    pub weights: WeightFormat,
}

/// Runs the check for one model and records it (replacing an older one of the model); `false`
/// when stopped before it finished.
#[allow(clippy::too_many_arguments)]
pub fn check_model(
    dir: &RunDir,
    source: &ModelSource<'_>,
    engine: &Engine,
    case: &CaseSpec,
    rows: &[StudyRow],
    images: &Path,
    settings: RandomizationSettings,
    stop: &AtomicBool,
) -> anyhow::Result<bool> {
    // The map as the study makes it, without the study's other passes.
    let spec = CaseSpec { trust: None, grounding: None, ..case.clone() };
    let plan = CasePlan::resolve(spec, source.name, &engine.model.summary())?;
    let mut notes = Vec::new();
    let cases = sample_cases(rows, images, settings, &mut notes);
    let load = |r: &crate::models::checkpoint::redraw::Redraw| {
        load_engine_redrawn(source.dir, &PartOverrides::default(), source.dtype, source.device, source.weights, Some(r))
    };
    let cascade = Cascade { model: source.name, engine, load_redrawn: &load, plan: &plan, device: source.device, settings, stop };
    let Some(mut result) = run_cascade(&cascade, &cases) else {
        return Ok(false);
    };
    notes.append(&mut result.notes);
    result.notes = notes;
    record(dir, result)?;
    Ok(true)
}

fn record(dir: &RunDir, result: ModelRandomization) -> anyhow::Result<()> {
    let mut file = dir.read_randomization()?;
    file.models.retain(|m| m.model != result.model);
    file.models.push(result);
    dir.write_json_atomic(RANDOMIZATION, &file)?;
    Ok(())
}
