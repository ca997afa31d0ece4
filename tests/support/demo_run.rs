//! A small demo run (the demo's two random-weight models, the first studies of the bundled
//! demo CSV with a radiologist box on the first study, with a text-only pass and every other image
//! condition, every trust check and grounding on a 4 x 4 occlusion grid with null edits), for
//! tests that need a real run directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device};
use radlens::case::CaseSpec;
use radlens::study::run::{StudyArgs, run_study};
use radlens::study::runner::{Progress, StudySettings};
use radlens_shared::grounding::ImageCondition;
use radlens_shared::record::{CaseRecord, GroundingSettings, TrustSettings};

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
/// its analysis and report. `command_line` is what the manifest records. The study CSV is
/// [`boxed_demo_csv`], written beside `models_dir`.
pub fn build(models_dir: &Path, run_dir: &Path, n_studies: usize, command_line: Vec<String>) -> DemoRun {
    let csv = models_dir.with_file_name("demo-study-boxed.csv");
    std::fs::write(&csv, boxed_demo_csv()).expect("write the boxed demo CSV");
    build_from(&csv, models_dir, run_dir, n_studies, command_line)
}

/// The radiologist box `roi_x, roi_y, roi_w, roi_h` the demo's first study gets (its finding,
/// an effusion, sits low on the image's left side of the 512 x 512 film).
pub const FIRST_STUDY_BOX: [u32; 4] = [60, 300, 150, 130];

/// The bundled demo CSV with [`FIRST_STUDY_BOX`] on every row of its first study (the demo CSV
/// has no boxes), so grounding's box controls and box score (G2, G3) exist for some records and
/// not for others.
pub fn boxed_demo_csv() -> String {
    let text = std::fs::read_to_string(demo_csv()).expect("the demo CSV");
    let first = text.lines().nth(1).and_then(|l| l.split(',').next()).expect("a first study").to_owned();
    let [x, y, w, h] = FIRST_STUDY_BOX;
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.strip_suffix(",,,,") {
            Some(rest) if l.starts_with(&format!("{first},")) => format!("{rest},{x},{y},{w},{h}"),
            _ => l.to_owned(),
        })
        .collect();
    assert!(lines.iter().any(|l| l.ends_with(&format!(",{x},{y},{w},{h}"))), "the demo CSV's rows end in empty box columns");
    lines.join("\n") + "\n"
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
                // Grounding (G1-G4) on a 4 x 4 occlusion grid: 16 occluded forwards per image
                // record instead of 256 keep the demo to seconds.
                grounding: Some(GroundingSettings { occlusion: true, occlusion_grid: 4, occlusion_batch: 16, null_edits: true }),
                ..CaseSpec::standard(3)
            },
            text_only_pass: true,
            share_prefix: true,
            // Every image condition (G6) besides the blank one (the text-only pass above): swaps,
            // occlusions and null edits, so the dashboard shows each condition's image and
            // answer, and its `not_run` reasons (the second study has no box).
            conditions: ImageCondition::ALL.into_iter().filter(|c| !matches!(c, ImageCondition::Real | ImageCondition::Blank)).collect(),
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
