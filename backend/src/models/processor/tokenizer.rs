//! The `tokenizers` crate behind a small wrapper whose errors name the file.

use std::path::{Path, PathBuf};

use crate::models::error::{ModelError, Result};

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl TextTokenizer {
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(ModelError::MissingFile {
                path: path.to_path_buf(),
                hint: " (the model directory needs its tokenizer.json)".into(),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| ModelError::Tokenizer { path: path.to_path_buf(), message: e.to_string() })?;
        Ok(Self { inner, path: path.to_path_buf() })
    }

    fn err(&self, e: impl std::fmt::Display) -> ModelError {
        ModelError::Tokenizer { path: self.path.clone(), message: e.to_string() }
    }

    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        Ok(self.inner.encode(text, add_special_tokens).map_err(|e| self.err(e))?.get_ids().to_vec())
    }

    /// Token pieces as the vocabulary spells them (`▁eff`, `usion`), for term matching.
    pub fn pieces(&self, ids: &[u32]) -> Vec<String> {
        ids.iter().map(|&id| self.inner.id_to_token(id).unwrap_or_default()).collect()
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| self.err(e))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Ids of every spelling of `word` that is a single token (`Yes`, `yes`, ` Yes`, ` yes`),
    /// for the yes/no decision margin.
    pub fn single_token_spellings(&self, word: &str) -> Vec<u32> {
        let lower = word.to_lowercase();
        let mut cap = lower.clone();
        if let Some(first) = cap.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        let mut ids = Vec::new();
        for spelling in [cap.clone(), lower.clone(), format!(" {cap}"), format!(" {lower}")] {
            if let Ok(enc) = self.inner.encode(spelling.as_str(), false)
                && let [id] = enc.get_ids()
                && !ids.contains(id)
            {
                ids.push(*id);
            }
        }
        ids
    }
}
