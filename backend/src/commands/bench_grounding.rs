//! `radlens bench --grounding` / `--conditions`: what the grounding checks and the image
//! conditions cost, on the bundled demo data with the demo's two tiny models, as the study
//! runner runs them. Each configuration is a whole study of
//! `--reps` studies into a fresh run directory; its time per record is set against the plain
//! study (the attention map only) measured in the same run, after an untimed warm-up.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context;
use radlens_shared::grounding::ImageCondition;
use radlens_shared::record::{CaseRecord, GroundingSettings};
use serde::Serialize;

use crate::case::CaseSpec;
use crate::cli::BenchArgs;
use crate::commands::demo::{default_data, write_demo_models};
use crate::study::run::{StudyArgs, run_study};
use crate::study::runner::{Progress, StudySettings};

struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: usize) {}
    fn record(&mut self, _: &CaseRecord) {}
    fn message(&mut self, _: &str) {}
}

#[derive(Serialize)]
struct Row {
    configuration: String,
    seconds: f64,
    records: usize,
    /// Per row of the study (a condition's records are extra passes over the same rows).
    ms_per_record: f64,
    ratio_vs_plain: f64,
}

#[derive(Serialize)]
struct Report {
    models: Vec<String>,
    studies: usize,
    occlusion_grid: usize,
    occlusion_batch: usize,
    new_tokens: u32,
    randomization_samples: usize,
    rows: Vec<Row>,
}

/// A scratch folder for the benchmark's models and runs, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(args: &BenchArgs, grid: usize, batch: usize) -> anyhow::Result<()> {
    let crate::commands::Runtime { device, dtype, weights } = args.runtime.resolve()?;
    let scratch = Scratch(std::env::temp_dir().join(format!("radlens-bench-grounding-{}", std::process::id())));
    let models = write_demo_models(&scratch.0.join("models"))?;
    let data = default_data();
    let (demo_csv, images) = (data.join("demo-study.csv"), data.join("cxr"));
    anyhow::ensure!(demo_csv.exists() && images.is_dir(), "{}: no demo data (demo-study.csv and cxr/)", data.display());
    let studies = args.reps as usize;
    // The first studies that have a radiologist box, so the box figures and the occlusion
    // conditions are timed on rows that run them.
    let csv = scratch.0.join("boxed-studies.csv");
    std::fs::write(&csv, boxed_studies(&demo_csv, studies)?).with_context(|| format!("cannot write {}", csv.display()))?;
    let samples = studies * 6;
    let study = |out: &Path,
                 grounding: Option<GroundingSettings>,
                 randomization: Option<usize>,
                 conditions: &[ImageCondition]|
     -> anyhow::Result<(f64, usize)> {
        let _ = std::fs::remove_dir_all(out);
        let settings = StudySettings {
            case: CaseSpec { grounding, ..CaseSpec::standard(args.new_tokens as usize) },
            text_only_pass: conditions.contains(&ImageCondition::Blank),
            share_prefix: true,
            conditions: conditions.iter().copied().filter(|c| *c != ImageCondition::Blank).collect(),
        };
        let a = StudyArgs {
            csv: csv.clone(),
            images: images.clone(),
            models: models.clone(),
            out: out.to_path_buf(),
            settings,
            dtype,
            device: device.clone(),
            weights,
            n_studies: None,
            seed: args.seed,
            resamples: 100,
            common_grid: 32,
            shard: None,
            force: true,
            strict: false,
            command_line: Vec::new(),
            randomization,
            near_tie_eps: None,
        };
        let t = Instant::now();
        let outcome =
            run_study(&a, &mut Silent, &AtomicBool::new(false)).with_context(|| format!("benchmark study in {}", out.display()))?;
        anyhow::ensure!(outcome.errors == 0, "the benchmark study wrote {} error records (see {})", outcome.errors, out.display());
        Ok((t.elapsed().as_secs_f64(), outcome.written))
    };
    let occlusion = GroundingSettings { occlusion: true, occlusion_grid: grid, occlusion_batch: batch, null_edits: false };
    type Configuration = (String, Option<GroundingSettings>, Option<usize>, Vec<ImageCondition>);
    let mut configurations: Vec<Configuration> = vec![("plain (attention map)".into(), None, None, Vec::new())];
    if args.grounding {
        configurations.extend([
            ("+ occlusion, box controls, box score (G1-G3)".into(), Some(occlusion), None, Vec::new()),
            ("+ null edits: --grounding (G1-G4)".into(), Some(GroundingSettings { null_edits: true, ..occlusion }), None, Vec::new()),
            (
                format!("--grounding --randomization {samples}"),
                Some(GroundingSettings { null_edits: true, ..occlusion }),
                Some(samples),
                Vec::new(),
            ),
        ]);
    }
    if args.conditions {
        // Each condition alone, then all of them: the cost of one more pass over the rows.
        // The demo's rows have one image each: no `prior_blank`.
        let all: Vec<ImageCondition> = ImageCondition::ALL.into_iter().filter(|c| *c != ImageCondition::Real && !c.needs_prior()).collect();
        configurations.extend(all.iter().map(|c| (format!("+ condition {c}"), None, None, vec![*c])));
        configurations.push(("+ every condition".into(), None, None, all));
    }
    // Warm-up: page in the models and the images, untimed.
    study(&scratch.0.join("warm-up"), None, None, &[])?;
    let mut rows = Vec::new();
    for (i, (name, grounding, randomization, conditions)) in configurations.into_iter().enumerate() {
        let (seconds, records) = study(&scratch.0.join(format!("run-{i}")), grounding, randomization, &conditions)?;
        // Per row of the study: a condition's records are extra passes over the same rows.
        let passes = 1 + conditions.len();
        let row_records = records / passes;
        let ms_per_record = 1e3 * seconds / row_records.max(1) as f64;
        let plain = rows.first().map_or(ms_per_record, |r: &Row| r.ms_per_record);
        rows.push(Row { configuration: name, seconds, records, ms_per_record, ratio_vs_plain: ms_per_record / plain });
    }
    let report = Report {
        models: models.iter().map(|(n, _)| n.clone()).collect(),
        studies,
        occlusion_grid: grid,
        occlusion_batch: batch,
        new_tokens: args.new_tokens,
        randomization_samples: samples,
        rows,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "cost on the demo data: {} x the first {} studies with a radiologist box (6 variants each), occlusion grid {grid} (batch {batch}), {} new tokens",
        report.models.join(" + "),
        studies,
        args.new_tokens
    );
    println!("{:<48} {:>9} {:>8} {:>12} {:>9}", "configuration", "seconds", "records", "ms / row", "x plain");
    for r in &report.rows {
        println!("{:<48} {:>9.2} {:>8} {:>12.1} {:>9.2}", r.configuration, r.seconds, r.records, r.ms_per_record, r.ratio_vs_plain);
    }
    Ok(())
}

/// The header and the rows of the first `n` studies of `csv` whose rows carry a box.
fn boxed_studies(csv: &Path, n: usize) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(csv).with_context(|| format!("cannot read {}", csv.display()))?;
    let mut reader = ::csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers()?.clone();
    let roi = headers.iter().position(|h| h == "roi_w").context("the demo CSV has no roi_w column")?;
    let mut keep: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record?;
        let id = record.get(0).unwrap_or_default().to_owned();
        let boxed = record.get(roi).is_some_and(|v| !v.trim().is_empty());
        if boxed && !keep.contains(&id) && keep.len() < n {
            keep.push(id.clone());
        }
        rows.push((id, record));
    }
    anyhow::ensure!(keep.len() == n, "the demo CSV has {} studies with a box, fewer than --reps {n}", keep.len());
    let mut out = ::csv::Writer::from_writer(Vec::new());
    out.write_record(&headers)?;
    for (id, record) in rows {
        if keep.contains(&id) {
            out.write_record(&record)?;
        }
    }
    Ok(String::from_utf8(out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?)
}
