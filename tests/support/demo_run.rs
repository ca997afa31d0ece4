//! A small demo run (the demo's two random-weight models, the first studies of the bundled
//! demo CSV, with a text-only pass), for tests that need a real run directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device};
use radlens::case::CaseSpec;
use radlens::study::run::{StudyArgs, run_study};
use radlens::study::runner::{Progress, StudySettings};
use radlens_shared::record::{CaseRecord, TrustSettings};

use super::workspace_root;

struct Quiet;

impl Progress for Quiet {
    fn start(&mut self, _: usize) {}
    fn record(&mut self, _: &CaseRecord) {}
    fn message(&mut self, _: &str) {}
}

pub struct DemoRun {
    /// `(name, directory)` of the demo models.
    pub models: Vec<(String, PathBuf)>,
    /// The bundled demo images.
    pub images: PathBuf,
}

/// Writes the demo models under `models_dir`, runs `n_studies` studies into `run_dir` and writes
/// its analysis and report. `command_line` is what the manifest records.
pub fn build(models_dir: &Path, run_dir: &Path, n_studies: usize, command_line: Vec<String>) -> DemoRun {
    build_from(&demo_csv(), models_dir, run_dir, n_studies, command_line)
}

/// The bundled demo study CSV (its image paths are relative to the demo's `cxr/`).
pub fn demo_csv() -> PathBuf {
    workspace_root().join("static/demo/demo-study.csv")
}

/// [`build`] from `csv` (e.g. an edited copy of [`demo_csv`]) instead of the demo CSV.
pub fn build_from(csv: &Path, models_dir: &Path, run_dir: &Path, n_studies: usize, command_line: Vec<String>) -> DemoRun {
    let images = workspace_root().join("static/demo/cxr");
    let models = radlens::commands::demo::write_demo_models(models_dir).expect("demo models");
    let args = StudyArgs {
        csv: csv.to_path_buf(),
        images: images.clone(),
        models: models.clone(),
        out: run_dir.to_path_buf(),
        settings: StudySettings {
            case: CaseSpec {
                // Every trust check, so the server and dashboard tests see the extra maps, deletion
                // tests and sinks (the tiny models keep the deletion forwards to a few seconds).
                trust: Some(TrustSettings { gradcam: true, faithfulness: true, sinks: true, k_percents: vec![10, 25], random_draws: 3 }),
                ..CaseSpec::standard(3)
            },
            text_only_pass: true,
            share_prefix: true,
            conditions: Vec::new(),
        },
        dtype: DType::F32,
        device: Device::Cpu,
        weights: radlens::models::linear::WeightFormat::Dense,
        n_studies: Some(n_studies),
        seed: 0,
        resamples: 100,
        common_grid: 32,
        shard: None,
        force: true,
        strict: false,
        command_line,
        randomization: None,
        near_tie_eps: None,
    };
    run_study(&args, &mut Quiet, &AtomicBool::new(false)).expect("demo study");
    radlens::commands::report::run(run_dir, Some(&images)).expect("demo report");
    DemoRun { models, images }
}
