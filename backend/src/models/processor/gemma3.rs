//! Gemma3 prompts, as its chat template renders one user turn with an image:
//! `<bos><start_of_turn>user\n[system\n\n]<start_of_image>{question}<end_of_turn>\n<start_of_turn>model\n`,
//! where the processor expands `<start_of_image>` to `\n\n<start_of_image>` + the image soft tokens
//! + `<end_of_image>\n\n`. Encoded without special tokens: the text already starts with `<bos>`.

use std::path::Path;

use super::EncodedPrompt;
use super::Prompter;
use super::tokenizer::TextTokenizer;
use crate::models::error::{ModelError, Result};

pub const BOI: &str = "<start_of_image>";
pub const EOI: &str = "<end_of_image>";
pub const IMAGE_SOFT_TOKEN: &str = "<image_soft_token>";

pub fn prompt_text(question: &str, system: Option<&str>) -> String {
    let system = system.map(|s| format!("{}\n\n", s.trim())).unwrap_or_default();
    format!("<bos><start_of_turn>user\n{system}{BOI}{}<end_of_turn>\n<start_of_turn>model\n", question.trim())
}

pub fn expanded_prompt_text(question: &str, system: Option<&str>, image_tokens: usize) -> String {
    let image = format!("\n\n{BOI}{}{EOI}\n\n", IMAGE_SOFT_TOKEN.repeat(image_tokens));
    prompt_text(question, system).replacen(BOI, &image, 1)
}

pub struct Gemma3Prompter {
    tokenizer: TextTokenizer,
    image_token_id: u32,
    image_tokens: usize,
}

impl Gemma3Prompter {
    pub fn load(model_dir: &Path, image_token_id: u32, image_tokens: usize) -> Result<Self> {
        Ok(Self { tokenizer: TextTokenizer::load(&model_dir.join("tokenizer.json"))?, image_token_id, image_tokens })
    }
}

impl Prompter for Gemma3Prompter {
    fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    fn encode(&self, question: &str, system: Option<&str>) -> Result<EncodedPrompt> {
        let input_ids = self.tokenizer.encode(&expanded_prompt_text(question, system, self.image_tokens), false)?;
        let image_positions: Vec<usize> =
            input_ids.iter().enumerate().filter(|(_, t)| **t == self.image_token_id).map(|(i, _)| i).collect();
        if image_positions.len() != self.image_tokens {
            return Err(ModelError::Invalid(format!(
                "the tokenizer produced {} image soft tokens (id {}) for {}; is `{IMAGE_SOFT_TOKEN}` an added token of tokenizer.json?",
                image_positions.len(),
                self.image_token_id,
                self.image_tokens
            )));
        }
        Ok(EncodedPrompt { input_ids, image_positions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_text_precedes_the_image_in_the_first_user_turn() {
        assert_eq!(
            expanded_prompt_text("Q?", Some("Be brief."), 2),
            "<bos><start_of_turn>user\nBe brief.\n\n\n\n<start_of_image><image_soft_token><image_soft_token><end_of_image>\n\nQ?<end_of_turn>\n<start_of_turn>model\n"
        );
    }
}
