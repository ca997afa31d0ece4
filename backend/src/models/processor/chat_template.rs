//! A checkpoint's chat template, as transformers finds it: `chat_template.jinja`, else the
//! `chat_template` string of `chat_template.json` or `tokenizer_config.json`. radlens renders
//! each family's prompt itself; the template is read to check that it is the format radlens
//! renders, so a fine-tune with another format is refused instead of mis-prompted.

use std::path::{Path, PathBuf};

use crate::models::error::{ModelError, Result};

/// The template and the file it came from; `None` when the checkpoint has none.
pub fn read(dir: &Path) -> Result<Option<(PathBuf, String)>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let text = std::fs::read_to_string(&jinja).map_err(|source| ModelError::Io { path: jinja.clone(), source })?;
        return Ok(Some((jinja, text)));
    }
    for name in ["chat_template.json", "tokenizer_config.json"] {
        let path = dir.join(name);
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(t) = value.get("chat_template").and_then(|t| t.as_str())
        {
            return Ok(Some((path, t.to_string())));
        }
    }
    Ok(None)
}

/// The first of `markers` that `template` lacks, if any.
pub fn missing_marker<'a>(template: &str, markers: &[&'a str]) -> Option<&'a str> {
    markers.iter().copied().find(|m| !template.contains(m))
}
