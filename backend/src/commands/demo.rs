//! `radlens demo`: the README's main job. Writes two tiny random-weight model directories (a
//! LLaVA and a Gemma3, embedded in the binary and marked `RANDOM_WEIGHTS`: they exercise the
//! pipeline, not medicine), runs the robustness study on the bundled NIH chest X-rays with the
//! trust and grounding checks (Grad-CAM, relative maps, occlusion, box controls, null edits, the
//! weight-randomisation check) and every image condition, and writes the analysis, plots and
//! report.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::case::CaseSpec;
use anyhow::Context;
use candle_core::{DType, Device};
use radlens_shared::grounding::ImageCondition;
use radlens_shared::record::{GroundingSettings, TrustSettings};

use crate::cli::DemoCmd;
use crate::study::run::{RANDOM_WEIGHTS_MARKER, StudyArgs, run_study};
use crate::study::runner::{Progress, StudySettings};

/// The demo's occlusion grid (the study's default is 16).
const DEMO_OCCLUSION_GRID: usize = 8;
/// Rows per model in the demo's weight-randomisation check.
const DEMO_RANDOMIZATION_SAMPLES: usize = 12;

/// A model directory's files, embedded at build time (the reference fixtures' tiny models).
struct EmbeddedModel {
    name: &'static str,
    files: &'static [(&'static str, &'static [u8])],
}

macro_rules! fixture {
    ($dir:literal, $file:literal) => {
        ($file, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/reference-v1/", $dir, "/", $file)) as &[u8])
    };
}

const MODELS: [EmbeddedModel; 2] = [
    EmbeddedModel {
        name: "llava-tiny-random",
        files: &[
            fixture!("llava-tiny", "config.json"),
            fixture!("llava-tiny", "generation_config.json"),
            fixture!("llava-tiny", "model.safetensors"),
            fixture!("llava-tiny", "processor_config.json"),
            fixture!("llava-tiny", "tokenizer.json"),
            fixture!("llava-tiny", "tokenizer_config.json"),
        ],
    },
    EmbeddedModel {
        name: "gemma3-tiny-random",
        files: &[
            fixture!("gemma3-tiny", "config.json"),
            fixture!("gemma3-tiny", "generation_config.json"),
            fixture!("gemma3-tiny", "model.safetensors"),
            fixture!("gemma3-tiny", "processor_config.json"),
            fixture!("gemma3-tiny", "tokenizer.json"),
            fixture!("gemma3-tiny", "tokenizer_config.json"),
        ],
    },
];

/// Writes the demo models under `dir` (unchanged files are left alone) and returns their
/// `(name, directory)`.
pub fn write_demo_models(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for m in &MODELS {
        let d = dir.join(m.name);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        for (file, bytes) in m.files {
            let p = d.join(file);
            if std::fs::read(&p).ok().as_deref() != Some(*bytes) {
                std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))?;
            }
        }
        std::fs::write(
            d.join(RANDOM_WEIGHTS_MARKER),
            "These weights are random (seeded): the model exercises radlens' pipeline; its answers mean nothing.\n",
        )?;
        out.push((m.name.to_string(), d));
    }
    Ok(out)
}

/// The bundled demo data: `static/demo` of the source tree this binary was built from, else
/// of the working directory.
pub fn default_data() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../static/demo");
    if built.is_dir() { built } else { PathBuf::from("static/demo") }
}

struct Lines;

impl Progress for Lines {
    fn start(&mut self, total: usize) {
        eprintln!("demo: {total} records to compute");
    }

    fn record(&mut self, _: &radlens_shared::record::CaseRecord) {}

    fn message(&mut self, text: &str) {
        eprintln!("demo: {text}");
    }
}

pub fn run(cmd: &DemoCmd) -> anyhow::Result<()> {
    let data = cmd.data.clone().unwrap_or_else(default_data);
    let csv = data.join("demo-study.csv");
    let images = data.join("cxr");
    anyhow::ensure!(csv.exists() && images.is_dir(), "{}: no demo data (demo-study.csv and cxr/); pass --data DIR", data.display());
    let t = std::time::Instant::now();
    let models = write_demo_models(&cmd.out.join("models"))?;
    let run_dir = cmd.out.join("run");
    let args = StudyArgs {
        csv,
        images: images.clone(),
        models,
        out: run_dir.clone(),
        settings: StudySettings {
            case: CaseSpec {
                // Grad-CAM and relative maps for the dashboard's method comparison (cheap: one
                // backward per record, one prefill per image); deletion tests are opt-in elsewhere.
                trust: Some(TrustSettings { gradcam: true, faithfulness: false, sinks: true, k_percents: vec![10, 25], random_draws: 3 }),
                // Grounding on every record (G1-G4), on an 8 x 8 occlusion grid: 64 extra
                // forwards per question instead of the default 256 keep the demo near a minute
                // (`radlens bench --grounding` measures both).
                grounding: Some(GroundingSettings { occlusion_grid: DEMO_OCCLUSION_GRID, ..GroundingSettings::default() }),
                ..CaseSpec::standard(8)
            },
            text_only_pass: true,
            share_prefix: true,
            // Every image condition (G6): cheap passes without capture, one per row each.
            conditions: ImageCondition::ALL.into_iter().filter(|c| !matches!(c, ImageCondition::Real | ImageCondition::Blank)).collect(),
        },
        dtype: DType::F32,
        device: Device::Cpu,
        weights: crate::models::linear::WeightFormat::Dense,
        n_studies: cmd.n_studies,
        seed: 0,
        resamples: 2000,
        common_grid: 32,
        shard: None,
        force: true,
        strict: false,
        command_line: std::env::args().collect(),
        randomization: Some(DEMO_RANDOMIZATION_SAMPLES),
        near_tie_eps: None,
    };
    let models = args.models.clone();
    let outcome = run_study(&args, &mut Lines, &AtomicBool::new(false))?;
    crate::commands::report::run(&run_dir, Some(&images))?;
    eprintln!(
        "demo: {} records ({} errors, {} reused) in {:.1} s. Random-weight models: the pipeline is real, the answers are not.",
        outcome.written,
        outcome.errors,
        outcome.skipped,
        t.elapsed().as_secs_f64()
    );
    println!("{}", run_dir.join("report.md").display());
    if cmd.serve {
        // The runs folder is the demo folder: its `run` is the only subfolder with a manifest.
        let mut opts = crate::server::ServeOptions::new(&cmd.out);
        opts.port = cmd.port;
        opts.images = Some(images);
        opts.models = models;
        crate::server::serve_blocking(opts)?;
    }
    Ok(())
}
