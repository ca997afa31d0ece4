//! The robustness study: plan (CSV -> rows), runner (rows x models -> records), run directory,
//! resume, analysis, plots and report.

pub mod run_dir;
pub mod plan;
pub mod analysis;
pub mod plots;
pub mod report;
pub mod runner;
pub mod shard;
pub mod run;
pub mod merge;
