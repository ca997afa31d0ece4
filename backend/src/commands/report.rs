//! `radlens report RUN_DIR [--images DIR]`: rebuilds everything derived from a run's records,
//! `analysis.json`, `plots/*.png`, `report.md` and `records.csv`, so a report can be redone
//! after a resumed run, a fix to the analysis, or with the images at hand.

use std::path::{Path, PathBuf};

use anyhow::Context;
use radlens_shared::record::Analysis;

use crate::study::analysis::analyze_run;
use crate::study::plots::write_plots;
use crate::study::report::{write_records_csv, write_report};
use crate::study::run_dir::{ANALYSIS, RunDir};

/// What [`regenerate`] wrote.
#[derive(Debug)]
pub struct Regenerated {
    pub analysis: Analysis,
    pub analysis_json: PathBuf,
    pub plots: Vec<PathBuf>,
    pub records_csv: PathBuf,
    pub report: PathBuf,
}

pub fn run(run_dir: &Path, images: Option<&Path>) -> anyhow::Result<()> {
    let out = regenerate(run_dir, images)?;
    println!("analysis: {}", out.analysis_json.display());
    println!("records:  {}", out.records_csv.display());
    println!("figures:  {}", out.plots.len());
    for p in &out.plots {
        println!("  {}", p.display());
    }
    println!("report:   {}", out.report.display());
    for note in &out.analysis.notes {
        println!("note: {note}");
    }
    Ok(())
}

/// Recomputes and writes the analysis, figures, `records.csv` and `report.md` of the run
/// directory at `run_dir` from its manifest, records and attention store alone. `images` is the
/// folder the records' image paths are relative to (for the overlays; optional).
pub fn regenerate(run_dir: &Path, images: Option<&Path>) -> anyhow::Result<Regenerated> {
    let dir = RunDir::open(run_dir)?;
    let manifest = dir.read_manifest()?;
    let records = dir.read_records()?;
    let analysis = analyze_run(&dir, &manifest, &records)?;
    dir.write_json_atomic(ANALYSIS, &analysis)?;
    let plots = write_plots(&dir, &analysis, &records, images).context("cannot draw the report's figures")?;
    let records_csv = write_records_csv(&dir, &records)?;
    let report = write_report(&dir, &manifest, &analysis, &plots)?;
    Ok(Regenerated { analysis, analysis_json: dir.path(ANALYSIS), plots, records_csv, report })
}
