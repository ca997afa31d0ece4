//! Inputs: image preprocessing and prompt construction, per model family.

pub mod gemma3;
pub mod llava;
pub mod pil_resize;
pub mod preprocess;
pub mod qwen25vl;
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
    /// The prompt with the model's fixed number of image tokens; an error for models whose
    /// count follows the image (Qwen2.5-VL), which need [`Prompter::encode_for_image`].
    fn encode(&self, question: &str, system: Option<&str>) -> Result<EncodedPrompt>;
    /// The prompt for an image of `image_tokens` tokens (`rows x cols` of
    /// `VisionLanguageModel::image_grid`). Fixed-grid models accept only their own count.
    fn encode_for_image(&self, question: &str, system: Option<&str>, image_tokens: usize) -> Result<EncodedPrompt> {
        let prompt = self.encode(question, system)?;
        if prompt.image_positions.len() != image_tokens {
            return Err(crate::models::error::ModelError::Invalid(format!(
                "this model's prompts have {} image tokens, not {image_tokens}",
                prompt.image_positions.len()
            )));
        }
        Ok(prompt)
    }
}
