//! Inputs: image preprocessing and prompt construction, per model family.

pub mod gemma3;
pub mod llava;
pub mod preprocess;
pub mod tokenizer;

use crate::models::error::Result;
use tokenizer::TextTokenizer;

/// A prompt as token ids, and where its image tokens are (the positions the image features
/// replace and every map is restricted to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPrompt {
    pub input_ids: Vec<u32>,
    pub image_positions: Vec<usize>,
}

/// A model family's prompt format: question (and optional system text) -> token ids with the
/// image tokens in place.
pub trait Prompter {
    fn tokenizer(&self) -> &TextTokenizer;
    fn encode(&self, question: &str, system: Option<&str>) -> Result<EncodedPrompt>;
}
