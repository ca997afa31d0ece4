//! Errors of the binary, each naming the file it concerns, and their exit codes.
//! Messages leave out their `source`: `main` prints the whole chain (`{:#}`).

use std::path::PathBuf;

use radlens_shared::MetricError;

use crate::models::error::ModelError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum InputError {
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a valid map file: {message} (expected {{\"h\": H, \"w\": W, \"values\": [...]}})")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: invalid map")]
    InvalidMap { path: PathBuf, source: MetricError },
    #[error("bad value for {flag}: {message}")]
    Flag { flag: &'static str, message: String },
    #[error("{a} and {b} cannot be compared")]
    Incomparable { a: PathBuf, b: PathBuf, source: MetricError },
}

/// 2 for anything the user can fix in their input, 1 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let input = err.chain().any(|cause| {
        cause.is::<InputError>()
            || cause.is::<crate::study::plan::PlanError>()
            || cause.is::<crate::import::ImportError>()
            || cause.is::<crate::study::run_dir::RunDirError>()
            || cause.downcast_ref::<ModelError>().is_some_and(ModelError::is_input_error)
    });
    if input { 2 } else { 1 }
}
