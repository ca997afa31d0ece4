//! `radlens demo`: the README's main job. By default it writes the three planted-truth models
//! (`fixtures/planted-v1`, embedded in the binary, each with a `PURPOSE` that says which cause it
//! answers from), draws their held-out images from the bundled NIH chest X-rays (a nodule at a
//! known box, a corner marker independent of it), and runs the study on them with the trust and
//! grounding checks (Grad-CAM, relative maps, occlusion, box controls, null edits, the
//! weight-randomisation check) and every image condition: the report and the dashboard then show
//! what each figure finds against a known cause. `--random-weights` runs the two tiny
//! random-weight models (a LLaVA and a Gemma3, marked `RANDOM_WEIGHTS`) on the bundled demo CSV
//! instead. Either way it writes the analysis, plots and report.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::case::CaseSpec;
use anyhow::Context;
use candle_core::{DType, Device};
use radlens_shared::grounding::ImageCondition;
use radlens_shared::record::{GroundingSettings, TrustSettings};

use crate::cli::DemoCmd;
use crate::study::run::{PURPOSE_FILE, RANDOM_WEIGHTS_MARKER, StudyArgs, run_study};
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

macro_rules! planted {
    ($dir:literal, $file:literal) => {
        ($file, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/planted-v1/", $dir, "/", $file)) as &[u8])
    };
}

macro_rules! planted_model {
    ($name:literal) => {
        EmbeddedModel {
            name: $name,
            files: &[
                planted!($name, "config.json"),
                planted!($name, "generation_config.json"),
                planted!($name, "model.safetensors"),
                planted!($name, "processor_config.json"),
                planted!($name, "tokenizer.json"),
                planted!($name, "tokenizer_config.json"),
            ],
        }
    };
}

/// The planted-truth models (`fixtures/planted-v1`, issue 18), each with its `PURPOSE`: what
/// it was built to do.
const PLANTED: [(EmbeddedModel, &[u8]); 3] = [
    (planted_model!("planted-lesion"), planted!("planted-lesion", "PURPOSE").1),
    (planted_model!("planted-marker"), planted!("planted-marker", "PURPOSE").1),
    (planted_model!("planted-shortcut"), planted!("planted-shortcut", "PURPOSE").1),
];

/// Held-out planted images per held-out source image in the demo (5 sources: 20 studies).
const PLANTED_PER_SOURCE: usize = 4;

/// Writes the planted-truth models under `dir`, each with its `PURPOSE`, and returns their
/// `(name, directory)`.
pub fn write_planted_models(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for (m, purpose) in &PLANTED {
        let d = write_model(dir, m)?;
        std::fs::write(d.join(PURPOSE_FILE), purpose)?;
        out.push((m.name.to_string(), d));
    }
    Ok(out)
}

/// Writes one embedded model's files under `dir/NAME` (unchanged files are left alone).
fn write_model(dir: &Path, m: &EmbeddedModel) -> anyhow::Result<PathBuf> {
    let d = dir.join(m.name);
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    for (file, bytes) in m.files {
        let p = d.join(file);
        if std::fs::read(&p).ok().as_deref() != Some(*bytes) {
            std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))?;
        }
    }
    Ok(d)
}

/// Writes the demo models under `dir` (unchanged files are left alone) and returns their
/// `(name, directory)`.
pub fn write_demo_models(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for m in &MODELS {
        let d = write_model(dir, m)?;
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
    let source_images = data.join("cxr");
    anyhow::ensure!(source_images.is_dir(), "{}: no demo images (cxr/); pass --data DIR", data.display());
    let t = std::time::Instant::now();
    let (csv, images, models) = if cmd.random_weights {
        let csv = data.join("demo-study.csv");
        anyhow::ensure!(csv.exists(), "{}: no demo-study.csv; pass --data DIR", data.display());
        (csv, source_images, write_demo_models(&cmd.out.join("models"))?)
    } else {
        // The planted models on their held-out images: the nodule drawn at a known box, the
        // marker independent of it (seed 0, the same images on every run).
        let planted = cmd.out.join("data");
        let set = crate::planted::data::Set::Heldout;
        crate::planted::data::write_set(&source_images, &planted, set, PLANTED_PER_SOURCE, 0)?;
        (planted.join(format!("{}.csv", set.name())), planted, write_planted_models(&cmd.out.join("models"))?)
    };
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
            // (The demo's rows have one image each: no `prior_blank`.)
            conditions: ImageCondition::ALL
                .into_iter()
                .filter(|c| !matches!(c, ImageCondition::Real | ImageCondition::Blank) && !c.needs_prior())
                .collect(),
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
    let kind = if cmd.random_weights {
        "Random-weight models: the pipeline is real, the answers are not."
    } else {
        "Planted-truth models: each answers from a cause we drew; the report says which."
    };
    eprintln!(
        "demo: {} records ({} errors, {} reused) in {:.1} s. {kind}",
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
