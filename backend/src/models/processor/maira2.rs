//! MAIRA-2 prompts, as `Maira2Processor` (microsoft/maira-2 `processing_maira2.py`) builds them:
//! the images in a fixed order (current frontal, current lateral, prior frontal), each after its
//! phrase ("Given the current frontal image", " the current lateral image", " and the prior
//! frontal image"), the sections `PRIOR_REPORT`, `INDICATION`, `TECHNIQUE`, `COMPARISON` (missing
//! ones as `N/A`), for findings reporting (optionally grounded) or phrase grounding.
//!
//! The chat template is an assumption (the multi-image fixture's, see
//! `tools/README-multi-image.md`): `{system} USER: {content items concatenated} ASSISTANT:`. It
//! is not taken on trust: [`Maira2Prompter::load`] reads the checkpoint's template and refuses one
//! that does not render this way, and takes its default system sentence from it. Each `<image>`
//! is then repeated once per image token and the text encoded with the tokenizer's special
//! tokens (which prepend `<s>`).

use std::path::{Path, PathBuf};

use super::tokenizer::TextTokenizer;
use super::{EncodedPrompt, ImageRole, MultiImagePrompt, PromptImage, Prompter, image_runs};
use crate::models::error::{ModelError, Result};

pub const IMAGE_TOKEN: &str = "<image>";
/// MAIRA-2's default system sentence (the fixture template's; the loaded template's wins).
pub const DEFAULT_SYSTEM: &str = "You are an expert radiology assistant tasked with interpreting a chest X-ray study.";
/// The most images a MAIRA-2 prompt holds: current frontal, current lateral, prior frontal.
pub const MAX_IMAGES: usize = 3;

/// What MAIRA-2 is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Findings reporting; `grounding` adds the sentences asking for boxes.
    Reporting { grounding: bool },
    /// Repeat `phrase` as a grounded phrase (one current frontal image).
    PhraseGrounding { phrase: String },
}

/// The report sections; `None` or empty renders `N/A`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sections {
    pub indication: Option<String>,
    pub technique: Option<String>,
    pub comparison: Option<String>,
    pub prior_report: Option<String>,
}

fn section(s: &Option<String>) -> &str {
    s.as_deref().filter(|s| !s.is_empty()).unwrap_or("N/A")
}

/// The images in MAIRA-2's order (indices into `images`), after checking the roles: one current
/// frontal, at most one lateral and one prior.
pub fn place(images: &[PromptImage]) -> Result<Vec<usize>> {
    if images.len() > MAX_IMAGES {
        return Err(ModelError::Invalid(format!(
            "MAIRA-2 takes at most {MAX_IMAGES} images (current frontal, current lateral, prior frontal), not {}",
            images.len()
        )));
    }
    for role in [ImageRole::Current, ImageRole::Lateral, ImageRole::Prior] {
        let n = images.iter().filter(|i| i.role == role).count();
        if n > 1 {
            return Err(ModelError::Invalid(format!("MAIRA-2 takes one image per role, not {n} `{role}` images")));
        }
    }
    if !images.iter().any(|i| i.role == ImageRole::Current) {
        return Err(ModelError::Invalid("MAIRA-2 needs the current frontal image (role `current`)".into()));
    }
    let mut order: Vec<usize> = (0..images.len()).collect();
    order.sort_by_key(|&i| images[i].role);
    Ok(order)
}

/// The user turn's text with one `<image>` per image, for the roles present.
pub fn user_text(task: &Task, sections: &Sections, has_lateral: bool, has_prior: bool) -> Result<String> {
    if let Task::PhraseGrounding { phrase } = task {
        if has_lateral || has_prior {
            return Err(ModelError::Invalid("MAIRA-2's phrase grounding takes the current frontal image only".into()));
        }
        return Ok(format!(
            "Given the current frontal image{IMAGE_TOKEN} Repeat the following finding as a grounded phrase with bounding boxes \
             indicating all locations where it can be seen in the given chest X-ray image. Finding: {phrase}"
        ));
    }
    let labels: &[&str] = match (has_lateral, has_prior) {
        (false, false) => &["Given the current frontal image only"],
        (true, true) => &["Given the current frontal image", " the current lateral image", " and the prior frontal image"],
        (false, true) => &["Given the current frontal image", " and the prior frontal image"],
        (true, false) => &["Given the current frontal image", " and the current lateral image"],
    };
    let mut text: String = labels.iter().map(|l| format!("{l}{IMAGE_TOKEN}")).collect();
    if has_prior {
        text += &format!(" PRIOR_REPORT: {}", section(&sections.prior_report));
    }
    text += " Provide a structured description of the impressions in the radiology study in comparison to the prior frontal image.";
    if matches!(task, Task::Reporting { grounding: true }) {
        text += " Each finding should be described as a self-contained plain-text sentence. If the finding is groundable, \
                 locate the finding in the current frontal chest X-ray image, with bounding boxes indicating all locations \
                 where it can be seen in the current frontal image. Otherwise, generate just the ungrounded finding without \
                 bounding boxes.";
    }
    text += &format!(
        " INDICATION: {} TECHNIQUE: {} COMPARISON: {}",
        section(&sections.indication),
        section(&sections.technique),
        section(&sections.comparison)
    );
    Ok(text)
}

/// The rendered chat: `{system} USER: {user} ASSISTANT:`.
pub fn prompt_text(system: &str, user: &str) -> String {
    format!("{} USER: {user} ASSISTANT:", system.trim())
}

/// The checkpoint's chat template, which MAIRA-2's prompt format is read from.
fn read_template(dir: &Path) -> Result<(PathBuf, String)> {
    super::chat_template::read(dir)?.ok_or_else(|| ModelError::MissingFile {
        path: dir.join("chat_template.jinja"),
        hint: " (nor a chat_template in chat_template.json or tokenizer_config.json): MAIRA-2's prompt format is read from it".into(),
    })
}

/// Checks that `template` renders as [`prompt_text`] and returns its default system sentence.
fn check_template(path: &Path, template: &str) -> Result<String> {
    for marker in ["' USER: '", "' ASSISTANT:'", "'<image>'"] {
        if !template.contains(marker) {
            return Err(ModelError::Config {
                file: path.to_path_buf(),
                message: format!(
                    "the chat template has no {marker}: radlens renders MAIRA-2 prompts as `{{system}} USER: {{content}} ASSISTANT:` \
                     with `<image>` per image, and will not guess another format"
                ),
            });
        }
    }
    let system = template
        .split_once("set system_message = '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map_or(DEFAULT_SYSTEM, |(s, _)| s)
        .to_string();
    Ok(system)
}

pub struct Maira2Prompter {
    tokenizer: TextTokenizer,
    image_token_id: u32,
    image_tokens: usize,
    system: String,
}

impl Maira2Prompter {
    pub fn load(model_dir: &Path, image_token_id: u32, image_tokens: usize) -> Result<Self> {
        let (path, template) = read_template(model_dir)?;
        let system = check_template(&path, &template)?;
        Ok(Self { tokenizer: TextTokenizer::load(&model_dir.join("tokenizer.json"))?, image_token_id, image_tokens, system })
    }

    /// The default system sentence, from the checkpoint's template.
    pub fn system(&self) -> &str {
        &self.system
    }

    /// A MAIRA-2 prompt for `task` on `images` (roles `current`, optionally `lateral` and
    /// `prior`), placed in MAIRA-2's order; `system` replaces the template's sentence.
    pub fn encode_task(&self, task: &Task, sections: &Sections, system: Option<&str>, images: &[PromptImage]) -> Result<MultiImagePrompt> {
        let order = place(images)?;
        if let Some((i, img)) = images.iter().enumerate().find(|(_, img)| img.tokens != self.image_tokens) {
            return Err(ModelError::Invalid(format!(
                "image {i} ({}) asks for {} image tokens, but this MAIRA-2 model has {} per image",
                img.role, img.tokens, self.image_tokens
            )));
        }
        let has = |r: ImageRole| images.iter().any(|i| i.role == r);
        let user = user_text(task, sections, has(ImageRole::Lateral), has(ImageRole::Prior))?;
        let text = prompt_text(system.unwrap_or(&self.system), &user).replace(IMAGE_TOKEN, &IMAGE_TOKEN.repeat(self.image_tokens));
        let input_ids = self.tokenizer.encode(&text, true)?;
        let image_positions: Vec<usize> =
            input_ids.iter().enumerate().filter(|(_, t)| **t == self.image_token_id).map(|(i, _)| i).collect();
        let spans = image_runs(&image_positions);
        MultiImagePrompt::new(EncodedPrompt { input_ids, image_positions }, spans, order, images)
    }
}

impl Prompter for Maira2Prompter {
    fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The current frontal image only, findings reporting with the question as the INDICATION
    /// (MAIRA-2 has no free-question task).
    fn encode(&self, question: &str, system: Option<&str>) -> Result<EncodedPrompt> {
        let images = [PromptImage { role: ImageRole::Current, tokens: self.image_tokens }];
        Ok(self.encode_images(question, system, &images)?.prompt)
    }

    /// Findings reporting on the images given (current, optional lateral and prior), the
    /// question as the INDICATION.
    fn encode_images(&self, question: &str, system: Option<&str>, images: &[PromptImage]) -> Result<MultiImagePrompt> {
        let sections = Sections { indication: Some(question.trim().to_string()), ..Sections::default() };
        self.encode_task(&Task::Reporting { grounding: false }, &sections, system, images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(role: ImageRole) -> PromptImage {
        PromptImage { role, tokens: 1 }
    }

    #[test]
    fn images_go_current_lateral_prior_whatever_the_order_given() {
        assert_eq!(place(&[img(ImageRole::Prior), img(ImageRole::Current), img(ImageRole::Lateral)]).unwrap(), vec![1, 2, 0]);
        assert_eq!(place(&[img(ImageRole::Current)]).unwrap(), vec![0]);
    }

    #[test]
    fn too_many_images_a_repeated_role_or_no_current_image_are_named() {
        let four = [img(ImageRole::Current), img(ImageRole::Lateral), img(ImageRole::Prior), img(ImageRole::Prior)];
        assert!(place(&four).unwrap_err().to_string().contains("at most 3 images"));
        let two_priors = [img(ImageRole::Current), img(ImageRole::Prior), img(ImageRole::Prior)];
        assert!(place(&two_priors).unwrap_err().to_string().contains("2 `prior` images"));
        assert!(place(&[img(ImageRole::Prior)]).unwrap_err().to_string().contains("current frontal"));
        let err = "sideways".parse::<ImageRole>().unwrap_err().to_string();
        assert!(err.contains("\"sideways\"") && err.contains("current, prior, lateral"), "{err}");
    }

    #[test]
    fn the_reporting_text_names_each_image_and_fills_missing_sections() {
        let user = user_text(&Task::Reporting { grounding: false }, &Sections::default(), true, false).unwrap();
        assert!(user.starts_with("Given the current frontal image<image> and the current lateral image<image> Provide"), "{user}");
        assert!(user.ends_with("INDICATION: N/A TECHNIQUE: N/A COMPARISON: N/A"), "{user}");
        let only = user_text(&Task::Reporting { grounding: false }, &Sections::default(), false, false).unwrap();
        assert!(only.starts_with("Given the current frontal image only<image> Provide"), "{only}");
    }

    #[test]
    fn a_template_without_the_markers_is_refused() {
        let err = check_template(Path::new("t.jinja"), "{{ messages }}").unwrap_err().to_string();
        assert!(err.contains("t.jinja") && err.contains("USER"), "{err}");
        let ok = "{%- set system_message = 'Be a radiologist.' -%}{{ ' USER: ' }}{{ '<image>' }}{{ ' ASSISTANT:' }}";
        assert_eq!(check_template(Path::new("t"), ok).unwrap(), "Be a radiologist.");
    }
}
