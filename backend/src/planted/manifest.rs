//! `MANIFEST.json` of the planted models: each file's sha256, the seed, the data recipe, the
//! training settings and the measured accuracies.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

pub const FILE: &str = "MANIFEST.json";

/// How far a retrain with the same seed may differ from the committed models (tested on the
/// held-out rows; see the README): on the same machine the weights are byte-identical; across
/// machines (other SIMD paths, other thread counts) float sums may round differently.
pub const ANSWER_AGREEMENT_MIN: f64 = 0.95;
pub const ACCURACY_TOLERANCE: f64 = 0.05;

pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// Every regular file of `dir` (not recursive) and its sha256, by name.
pub fn file_hashes(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            out.insert(name, sha256_file(&path)?);
        }
    }
    Ok(out)
}

pub fn write(dir: &Path, value: &serde_json::Value) -> Result<()> {
    let path = dir.join(FILE);
    std::fs::write(&path, format!("{}\n", serde_json::to_string_pretty(value)?)).with_context(|| format!("writing {}", path.display()))
}
