//! Inputs: image preprocessing and prompt construction, per model family.

pub mod chat_template;
pub mod gemma3;
pub mod llava;
pub mod maira2;
pub mod pil_resize;
pub mod preprocess;
pub mod qwen25vl;
pub mod tokenizer;

use std::ops::Range;

use crate::models::error::{ModelError, Result};
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
    /// A prompt with several images, placed as the model's template places them (the order may
    /// differ from `images`': MAIRA-2 always puts the current frontal first, then the lateral,
    /// then the prior). The default takes exactly one image (single-image models).
    fn encode_images(&self, question: &str, system: Option<&str>, images: &[PromptImage]) -> Result<MultiImagePrompt> {
        match images {
            [one] => {
                let prompt = self.encode_for_image(question, system, one.tokens)?;
                let spans = image_runs(&prompt.image_positions);
                MultiImagePrompt::new(prompt, spans, vec![0], images)
            }
            _ => Err(ModelError::Invalid(format!("this model takes one image per prompt, not {}", images.len()))),
        }
    }
}

/// What an image is to the study: the current study (MAIRA-2's current frontal), the prior
/// study (MAIRA-2's prior frontal), or the current lateral view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageRole {
    Current,
    Lateral,
    Prior,
}

impl ImageRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Lateral => "lateral",
            Self::Prior => "prior",
        }
    }
}

impl std::fmt::Display for ImageRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ImageRole {
    type Err = ModelError;

    /// `current` (also `frontal`, MAIRA-2's word), `prior` or `lateral`; anything else is an
    /// error naming it.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "current" | "frontal" => Ok(Self::Current),
            "prior" => Ok(Self::Prior),
            "lateral" => Ok(Self::Lateral),
            _ => Err(ModelError::Invalid(format!("unknown image role {s:?} (current, prior, lateral)"))),
        }
    }
}

/// One image of a multi-image prompt: its role and its number of image tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptImage {
    pub role: ImageRole,
    pub tokens: usize,
}

/// A prompt with several images. `image_spans[i]` holds the image tokens of the `i`-th image in
/// prompt order, which is request image `order[i]` with role `roles[i]`; the features of the
/// images, concatenated in prompt order, replace `prompt.image_positions` row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiImagePrompt {
    pub prompt: EncodedPrompt,
    pub image_spans: Vec<Range<usize>>,
    pub order: Vec<usize>,
    pub roles: Vec<ImageRole>,
}

impl MultiImagePrompt {
    /// Checks that the spans cover exactly the prompt's image positions with each image's count.
    pub fn new(prompt: EncodedPrompt, image_spans: Vec<Range<usize>>, order: Vec<usize>, images: &[PromptImage]) -> Result<Self> {
        let covered: Vec<usize> = image_spans.iter().flat_map(|r| r.clone()).collect();
        if covered != prompt.image_positions || image_spans.len() != order.len() {
            return Err(ModelError::Invalid(format!(
                "the prompt's image tokens fall in {} runs {:?}, but {} images were placed",
                image_runs(&prompt.image_positions).len(),
                image_runs(&prompt.image_positions),
                order.len()
            )));
        }
        for (span, &i) in image_spans.iter().zip(&order) {
            if span.len() != images[i].tokens {
                return Err(ModelError::Invalid(format!(
                    "image {i} ({}) takes {} image tokens in the prompt, not {}",
                    images[i].role,
                    span.len(),
                    images[i].tokens
                )));
            }
        }
        let roles = order.iter().map(|&i| images[i].role).collect();
        Ok(Self { prompt, image_spans, order, roles })
    }
}

/// Contiguous runs of ascending positions, as `[start, end)` ranges.
pub fn image_runs(positions: &[usize]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for &p in positions {
        match runs.last_mut() {
            Some(r) if r.end == p => r.end = p + 1,
            _ => runs.push(p..p + 1),
        }
    }
    runs
}
