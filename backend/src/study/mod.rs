//! The robustness study: plan (CSV -> rows), runner (rows x models -> records), run directory,
//! resume, analysis, plots and report.

pub mod analysis;
pub mod conditions;
pub mod merge;
mod multi_image;
mod multi_image_methods;
pub mod plan;
pub mod plots;
pub mod randomization;
pub mod report;
pub mod run;
pub mod run_dir;
pub mod runner;
pub mod shard;
