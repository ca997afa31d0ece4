//! LLaVA-1.5 prompts: `USER: <image>\n{question} ASSISTANT:`, with `<image>` repeated once per
//! image token and encoded with the tokenizer's special tokens (which prepend `<s>`).

use std::path::Path;

use super::tokenizer::TextTokenizer;
use super::{EncodedPrompt, Prompter};
use crate::models::error::{ModelError, Result};

pub const IMAGE_TOKEN: &str = "<image>";

/// The prompt text before image-token expansion; system text, when given, precedes `USER:` as
/// in the Vicuna v1 conversation template.
pub fn prompt_text(question: &str, system: Option<&str>) -> String {
    let system = system.map(|s| format!("{} ", s.trim())).unwrap_or_default();
    format!("{system}USER: {IMAGE_TOKEN}\n{} ASSISTANT:", question.trim())
}

/// `prompt_text` with `<image>` repeated `image_tokens` times.
pub fn expanded_prompt_text(question: &str, system: Option<&str>, image_tokens: usize) -> String {
    prompt_text(question, system).replacen(IMAGE_TOKEN, &IMAGE_TOKEN.repeat(image_tokens), 1)
}

pub struct LlavaPrompter {
    tokenizer: TextTokenizer,
    image_token_id: u32,
    image_tokens: usize,
}

impl LlavaPrompter {
    pub fn load(model_dir: &Path, image_token_id: u32, image_tokens: usize) -> Result<Self> {
        let tokenizer = TextTokenizer::load(&model_dir.join("tokenizer.json"))?;
        Ok(Self { tokenizer, image_token_id, image_tokens })
    }
}

impl Prompter for LlavaPrompter {
    fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    fn encode(&self, question: &str, system: Option<&str>) -> Result<EncodedPrompt> {
        let input_ids = self.tokenizer.encode(&expanded_prompt_text(question, system, self.image_tokens), true)?;
        let image_positions: Vec<usize> =
            input_ids.iter().enumerate().filter(|(_, t)| **t == self.image_token_id).map(|(i, _)| i).collect();
        if image_positions.len() != self.image_tokens {
            return Err(ModelError::Invalid(format!(
                "the tokenizer turned {} `{IMAGE_TOKEN}` markers into {} image tokens (id {}); is `{IMAGE_TOKEN}` an added token of tokenizer.json?",
                self.image_tokens,
                image_positions.len(),
                self.image_token_id
            )));
        }
        Ok(EncodedPrompt { input_ids, image_positions })
    }
}

/// LLaVA-Rad's conversation template v1 (`conv_vicuna_v1`) system sentence.
pub const VICUNA_V1_SYSTEM: &str = "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

/// LLaVA-Rad prompts: `{system} USER: <image>\n{question} ASSISTANT:` where `<image>` is no
/// vocabulary token. As `llava/mm_utils.py` `tokenizer_image_token`: each chunk around it is
/// encoded on its own with special tokens, BOS kept from the first chunk only, and the image
/// span inserted between them (here as `IMAGE_PLACEHOLDER` ids, one per image token).
pub struct LlavaRadPrompter {
    tokenizer: TextTokenizer,
    image_tokens: usize,
}

impl LlavaRadPrompter {
    pub fn load(base_dir: &Path, image_tokens: usize) -> Result<Self> {
        let path = base_dir.join("tokenizer.json");
        if !path.exists() {
            return Err(ModelError::MissingFile {
                path,
                hint: " (Vicuna ships tokenizer.model: convert it once, e.g. transformers' AutoTokenizer.from_pretrained(dir).save_pretrained(dir))".into(),
            });
        }
        Ok(Self { tokenizer: TextTokenizer::load(&path)?, image_tokens })
    }
}

impl Prompter for LlavaRadPrompter {
    fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    fn encode(&self, question: &str, system: Option<&str>) -> Result<EncodedPrompt> {
        // The eval code strips any `<image>` from the question and puts one before it.
        let question = question.replace(IMAGE_TOKEN, "");
        let text = prompt_text(&question, Some(system.unwrap_or(VICUNA_V1_SYSTEM)));
        let (before, after) = text.split_once(IMAGE_TOKEN).expect("the template holds one <image>");
        let mut input_ids = self.tokenizer.encode(before, true)?;
        let start = input_ids.len();
        input_ids.extend(std::iter::repeat_n(crate::models::llava::IMAGE_PLACEHOLDER, self.image_tokens));
        let rest = self.tokenizer.encode(after, true)?;
        input_ids.extend_from_slice(rest.get(1..).unwrap_or_default());
        Ok(EncodedPrompt { input_ids, image_positions: (start..start + self.image_tokens).collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_marker_is_expanded_once_per_token() {
        assert_eq!(prompt_text("Is there a fracture?", None), "USER: <image>\nIs there a fracture? ASSISTANT:");
        assert_eq!(expanded_prompt_text("Q?", None, 2), "USER: <image><image>\nQ? ASSISTANT:");
        assert_eq!(prompt_text("Q?", Some("Be brief.")), "Be brief. USER: <image>\nQ? ASSISTANT:");
    }
}
