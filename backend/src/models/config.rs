//! Helpers shared by the config mirrors of every model.

use serde::Deserialize;

/// One RoPE setting as configs write it: `{"rope_theta": .., "rope_type": "default" | "linear",
/// "factor": ..}` (transformers 4.x calls the type `type`).
#[derive(Debug, Clone, Deserialize)]
pub struct RopeParameters {
    pub rope_theta: Option<f64>,
    #[serde(alias = "type")]
    pub rope_type: Option<String>,
    pub factor: Option<f64>,
}

impl RopeParameters {
    /// The linear scaling factor (1 for none); other RoPE types are refused, naming `what`.
    pub fn linear_factor(&self, what: &str) -> Result<f64, String> {
        match self.rope_type.as_deref() {
            None | Some("default") => Ok(1.0),
            Some("linear") => self.factor.ok_or_else(|| format!("{what}: linear RoPE scaling without a factor")),
            Some(other) => Err(format!("{what}: RoPE type {other:?} is not supported (default, linear)")),
        }
    }
}

/// A JSON field that is either one value or a list (`eos_token_id: 2` or `[1, 106]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<u32> {
        match self {
            OneOrMany::One(x) => vec![x],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Reads and parses a JSON file; errors name the file (and serde's line and column).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> super::error::Result<T> {
    use super::error::ModelError;
    if !path.exists() {
        return Err(ModelError::MissingFile { path: path.to_path_buf(), hint: String::new() });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|e| ModelError::Config { file: path.to_path_buf(), message: e.to_string() })
}

/// EOS ids from `generation_config.json` (one id or a list), when the file exists.
pub fn generation_eos_ids(model_dir: &std::path::Path) -> super::error::Result<Vec<u32>> {
    #[derive(Deserialize)]
    struct Generation {
        eos_token_id: Option<OneOrMany>,
    }
    let path = model_dir.join("generation_config.json");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let g: Generation = read_json(&path)?;
    Ok(g.eos_token_id.map(OneOrMany::into_vec).unwrap_or_default())
}
