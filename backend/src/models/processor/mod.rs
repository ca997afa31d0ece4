//! Inputs: image preprocessing and prompt construction, per model family.

pub mod clip_image;
pub mod gemma3;
pub mod llava;
pub mod tokenizer;

use crate::models::error::Result;
use llava::EncodedPrompt;
use tokenizer::TextTokenizer;

/// A model family's prompt format: question (and optional system text) -> token ids with the
/// image tokens in place.
pub trait Prompter {
    fn tokenizer(&self) -> &TextTokenizer;
    fn encode(&self, question: &str, system: Option<&str>) -> Result<EncodedPrompt>;
}
