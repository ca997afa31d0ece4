//! PyTorch pickle files (`.bin`, `.pt`: torch's zip format) read with candle's pickle support.

use std::path::Path;

use candle_core::Tensor;

use crate::models::error::{ModelError, Result};

/// Every tensor of a torch zip pickle, or of the dict under `key` (e.g. `state_dict` of a
/// training checkpoint). Non-tensor entries (`_metadata`, epochs, names) are skipped.
pub fn read_tensors(path: &Path, key: Option<&str>) -> Result<Vec<(String, Tensor)>> {
    if !path.exists() {
        return Err(ModelError::MissingFile { path: path.to_path_buf(), hint: String::new() });
    }
    let tensors = candle_core::pickle::read_all_with_key(path, key).map_err(|e| ModelError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("cannot read the PyTorch pickle{}: {e}", key.map(|k| format!(" (key {k:?})")).unwrap_or_default()),
    })?;
    if tensors.is_empty() {
        return Err(ModelError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("no tensors found{}", key.map(|k| format!(" under key {k:?}")).unwrap_or_default()),
        });
    }
    Ok(tensors)
}
