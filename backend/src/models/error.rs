//! Errors of model loading and inference. Each variant names the file, field, tensor or capture
//! site it concerns, so a user can fix their checkpoint directory from the message alone.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("{path}: file not found{hint}")]
    MissingFile { path: PathBuf, hint: String },
    #[error("cannot read {path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{file}: {message}")]
    Config { file: PathBuf, message: String },
    #[error("tensor {key} not found in the checkpoint ({files})")]
    MissingTensor { key: String, files: String },
    #[error("tensor {key} in {file} has shape {got:?}, expected {expected:?}")]
    TensorShape { key: String, file: String, expected: Vec<usize>, got: Vec<usize> },
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("{path}: cannot decode image: {message}")]
    Image { path: PathBuf, message: String },
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("at {site}: expected shape {expected}, got {got}")]
    Shape { site: String, expected: String, got: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Metric(#[from] radlens_shared::MetricError),
}

impl ModelError {
    /// Whether the user can fix this in their inputs (files, flags), as opposed to a bug or a
    /// resource failure: the CLI exits with 2 for these.
    pub fn is_input_error(&self) -> bool {
        !matches!(self, ModelError::Candle(_) | ModelError::Shape { .. })
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
