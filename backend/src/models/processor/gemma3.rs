//! Gemma3 prompts, as its chat template renders one user turn with an image:
//! `<bos><start_of_turn>user\n[system\n\n]<start_of_image>{question}<end_of_turn>\n<start_of_turn>model\n`,
//! where the processor expands `<start_of_image>` to `\n\n<start_of_image>` + the image soft tokens
//! + `<end_of_image>\n\n`. Encoded without special tokens: the text already starts with `<bos>`.
//!
//! Several images (MedGemma takes several `{"type": "image"}` items in one user turn): each image
//! is one `<start_of_image>`, optionally after a text label naming its role, in the order given;
//! the template trims every text item, so the processor's `\n\n` separates label and image.
//! The labels are radlens' choice (the multi-image fixture's): MedGemma prescribes none.

use std::path::Path;

use super::tokenizer::TextTokenizer;
use super::{EncodedPrompt, ImageRole, MultiImagePrompt, PromptImage, Prompter, image_runs};
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

/// The text item before an image of `role` in a labelled multi-image prompt.
pub fn role_label(role: ImageRole) -> &'static str {
    match role {
        ImageRole::Prior => "Prior study:",
        ImageRole::Current => "Current study:",
        ImageRole::Lateral => "Current lateral view:",
    }
}

/// The chat template's rendering of one user turn `[label?, image]* question`.
pub fn multi_image_prompt_text(question: &str, system: Option<&str>, roles: &[ImageRole], labelled: bool) -> String {
    let system = system.map(|s| format!("{}\n\n", s.trim())).unwrap_or_default();
    let images: String = roles.iter().map(|&r| if labelled { format!("{}{BOI}", role_label(r)) } else { BOI.to_string() }).collect();
    format!("<bos><start_of_turn>user\n{system}{images}{}<end_of_turn>\n<start_of_turn>model\n", question.trim())
}

/// [`multi_image_prompt_text`] with every `<start_of_image>` expanded as the processor does.
pub fn expanded_multi_image_prompt_text(
    question: &str,
    system: Option<&str>,
    roles: &[ImageRole],
    labelled: bool,
    image_tokens: usize,
) -> String {
    let image = format!("\n\n{BOI}{}{EOI}\n\n", IMAGE_SOFT_TOKEN.repeat(image_tokens));
    multi_image_prompt_text(question, system, roles, labelled).replace(BOI, &image)
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

impl Gemma3Prompter {
    /// Several images in the order given, each after its role's label when `labelled`.
    pub fn encode_images_labelled(
        &self,
        question: &str,
        system: Option<&str>,
        images: &[PromptImage],
        labelled: bool,
    ) -> Result<MultiImagePrompt> {
        if images.is_empty() {
            return Err(ModelError::Invalid("a multi-image prompt needs at least one image".into()));
        }
        if let Some((i, img)) = images.iter().enumerate().find(|(_, img)| img.tokens != self.image_tokens) {
            return Err(ModelError::Invalid(format!(
                "image {i} ({}) asks for {} image tokens, but this Gemma3 model has {} per image",
                img.role, img.tokens, self.image_tokens
            )));
        }
        let roles: Vec<ImageRole> = images.iter().map(|i| i.role).collect();
        let text = expanded_multi_image_prompt_text(question, system, &roles, labelled, self.image_tokens);
        let input_ids = self.tokenizer.encode(&text, false)?;
        let image_positions: Vec<usize> =
            input_ids.iter().enumerate().filter(|(_, t)| **t == self.image_token_id).map(|(i, _)| i).collect();
        let spans = image_runs(&image_positions);
        MultiImagePrompt::new(EncodedPrompt { input_ids, image_positions }, spans, (0..images.len()).collect(), images)
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

    /// Labelled: `Prior study:`, `Current study:`, `Current lateral view:` before each image.
    fn encode_images(&self, question: &str, system: Option<&str>, images: &[PromptImage]) -> Result<MultiImagePrompt> {
        self.encode_images_labelled(question, system, images, true)
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

    /// The fixture's `two_prior_current` rendering, before expansion.
    #[test]
    fn each_image_follows_its_label_in_the_order_given() {
        assert_eq!(
            multi_image_prompt_text("Has it worsened?", None, &[ImageRole::Prior, ImageRole::Current], true),
            "<bos><start_of_turn>user\nPrior study:<start_of_image>Current study:<start_of_image>Has it worsened?<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(
            expanded_multi_image_prompt_text("Q?", Some("S"), &[ImageRole::Prior, ImageRole::Current], false, 1),
            "<bos><start_of_turn>user\nS\n\n\n\n<start_of_image><image_soft_token><end_of_image>\n\n\n\n<start_of_image><image_soft_token><end_of_image>\n\nQ?<end_of_turn>\n<start_of_turn>model\n"
        );
    }
}
