//! Qwen2.5-VL inputs: dynamic resolution (`smart_resize`) and the chat template's one user turn
//! with an image:
//! `<|im_start|>system\n{system or "You are a helpful assistant."}<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n`,
//! where the processor repeats `<|image_pad|>` once per merged image token. The count follows
//! the image (`rows x cols` of its token grid), so the prompt is built per image
//! ([`Prompter::encode_for_image`]).

use std::path::Path;

use super::tokenizer::TextTokenizer;
use super::{EncodedPrompt, Prompter};
use crate::models::error::{ModelError, Result};

pub const VISION_START: &str = "<|vision_start|>";
pub const VISION_END: &str = "<|vision_end|>";
pub const IMAGE_PAD: &str = "<|image_pad|>";
/// What the chat template puts in the system turn when the conversation has none.
pub const DEFAULT_SYSTEM: &str = "You are a helpful assistant.";

/// transformers refuses images more elongated than this.
const MAX_ASPECT_RATIO: f64 = 200.0;

/// transformers' `smart_resize`, `(height, width)`: each side rounded to the nearest multiple of
/// `factor` (Python's `round`, halves to even); if the area then exceeds `max_pixels` both sides
/// shrink by `sqrt(h * w / max_pixels)` and are floored to multiples (at least `factor`); if it is
/// below `min_pixels` they grow by `sqrt(min_pixels / (h * w))` and are ceiled.
pub fn smart_resize(height: u32, width: u32, factor: u32, min_pixels: u64, max_pixels: u64) -> (u32, u32) {
    let (h, w, f) = (f64::from(height), f64::from(width), f64::from(factor));
    let mut h_bar = (h / f).round_ties_even() * f;
    let mut w_bar = (w / f).round_ties_even() * f;
    if h_bar * w_bar > max_pixels as f64 {
        let beta = (h * w / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    (h_bar as u32, w_bar as u32)
}

/// The processor's refusal of extreme aspect ratios, with the same bound.
pub fn check_aspect_ratio(width: u32, height: u32) -> Result<()> {
    let ratio = f64::from(width.max(height)) / f64::from(width.min(height).max(1));
    if ratio > MAX_ASPECT_RATIO {
        return Err(ModelError::Invalid(format!("the image is {width}x{height}: Qwen2.5-VL's processor refuses aspect ratios above 200")));
    }
    Ok(())
}

pub fn prompt_text(question: &str, system: Option<&str>, image_tokens: usize) -> String {
    let system = system.map(str::trim).unwrap_or(DEFAULT_SYSTEM);
    format!(
        "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{VISION_START}{}{VISION_END}{}<|im_end|>\n<|im_start|>assistant\n",
        IMAGE_PAD.repeat(image_tokens),
        question.trim()
    )
}

pub struct QwenPrompter {
    tokenizer: TextTokenizer,
    image_token_id: u32,
}

/// What [`prompt_text`] relies on in Qwen2.5-VL's chat template: its turns, the image's place
/// and the default system sentence.
const TEMPLATE_MARKERS: [&str; 4] = ["<|im_start|>", "<|im_end|>", "<|vision_start|><|image_pad|><|vision_end|>", DEFAULT_SYSTEM];

impl QwenPrompter {
    /// Loads the tokenizer. The checkpoint's chat template, where it has one, must be Qwen2.5-VL's
    /// (radlens renders that format itself): a fine-tune with another is refused, naming the file.
    pub fn load(model_dir: &Path, image_token_id: u32) -> Result<Self> {
        if let Some((path, template)) = super::chat_template::read(model_dir)?
            && let Some(marker) = super::chat_template::missing_marker(&template, &TEMPLATE_MARKERS)
        {
            return Err(ModelError::Config {
                file: path,
                message: format!(
                    "the chat template has no {marker:?}: radlens renders Qwen2.5-VL's chat format (`<|im_start|>` turns, \
                     the image as `<|vision_start|><|image_pad|>...<|vision_end|>`, the default system sentence) and will not guess another"
                ),
            });
        }
        Ok(Self { tokenizer: TextTokenizer::load(&model_dir.join("tokenizer.json"))?, image_token_id })
    }
}

impl Prompter for QwenPrompter {
    fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Without an image there is no token count: the caller must use `encode_for_image`.
    fn encode(&self, _question: &str, _system: Option<&str>) -> Result<EncodedPrompt> {
        Err(ModelError::Invalid(
            "a Qwen2.5-VL prompt has one <|image_pad|> per token of the image's own grid: it is built per image (encode_for_image)".into(),
        ))
    }

    fn encode_for_image(&self, question: &str, system: Option<&str>, image_tokens: usize) -> Result<EncodedPrompt> {
        let input_ids = self.tokenizer.encode(&prompt_text(question, system, image_tokens), false)?;
        let image_positions: Vec<usize> =
            input_ids.iter().enumerate().filter(|(_, t)| **t == self.image_token_id).map(|(i, _)| i).collect();
        if image_positions.len() != image_tokens {
            return Err(ModelError::Invalid(format!(
                "the tokenizer produced {} image tokens (id {}) for {image_tokens}; is `{IMAGE_PAD}` an added token of tokenizer.json?",
                image_positions.len(),
                self.image_token_id
            )));
        }
        Ok(EncodedPrompt { input_ids, image_positions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 28 * 28 * 1280;

    #[test]
    fn sides_round_to_the_nearest_multiple_of_28() {
        // 100 / 28 = 3.57 -> 4; 150 / 28 = 5.36 -> 5.
        assert_eq!(smart_resize(100, 150, 28, 56 * 56, MAX), (112, 140));
        // 70 / 28 = 2.5 rounds to even (2), as Python's round; 98 / 28 = 3.5 -> 4.
        assert_eq!(smart_resize(70, 98, 28, 56 * 56, MAX), (56, 112));
        assert_eq!(smart_resize(224, 224, 28, 56 * 56, MAX), (224, 224));
    }

    /// A 2000 x 3000 image is over 28 x 28 x 1280 pixels: beta = sqrt(6e6 / 1003520) = 2.4452,
    /// sides floor to 2000 / beta = 817.9 -> 812 and 3000 / beta = 1226.9 -> 1204.
    #[test]
    fn an_image_over_max_pixels_shrinks_within_it() {
        let (h, w) = smart_resize(2000, 3000, 28, 56 * 56, MAX);
        assert_eq!((h, w), (812, 1204));
        assert!(u64::from(h) * u64::from(w) <= MAX);
        // A small budget: the processor's tiny-fixture setting.
        let (h, w) = smart_resize(300, 500, 28, 28 * 28 * 4, 28 * 28 * 16);
        assert!(u64::from(h * w) <= 28 * 28 * 16 && h % 28 == 0 && w % 28 == 0 && w > h, "{h}x{w}");
    }

    #[test]
    fn an_image_under_min_pixels_grows() {
        // 20 x 30 rounds to 28 x 28 = 784 < 3136: beta = sqrt(3136 / 600) = 2.286,
        // ceil(45.7 / 28) * 28 = 56 and ceil(68.6 / 28) * 28 = 84.
        assert_eq!(smart_resize(20, 30, 28, 56 * 56, MAX), (56, 84));
    }

    /// The hub's preprocessor_config.json (`min_pixels`/`max_pixels` at the top level): an image
    /// over `max_pixels` comes out at smart_resize's size, sides multiples of 28, not square.
    #[test]
    fn the_hub_processor_config_resizes_a_large_image_within_max_pixels() {
        use crate::models::processor::preprocess::{ImageProcessorConfig, Resize};
        let dir = std::env::temp_dir().join(format!("radlens-qwen-pre-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = r#"{"min_pixels": 3136, "max_pixels": 12544, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
            "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor"}"#;
        std::fs::write(dir.join("preprocessor_config.json"), config).unwrap();
        let cfg = ImageProcessorConfig::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(cfg.resize, Resize::Smart { factor: 28, min_pixels: 3136, max_pixels: 12544 });
        let img =
            image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(500, 300, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])));
        let pre = cfg.preprocess(&img).unwrap();
        assert_eq!((pre.height as u32, pre.width as u32), smart_resize(300, 500, 28, 3136, 12544));
        assert!(pre.height * pre.width <= 12544 && pre.height.is_multiple_of(28) && pre.width.is_multiple_of(28) && pre.width > pre.height);
        // The map covers the whole image: no crop.
        assert_eq!((pre.crop.x0, pre.crop.y0, pre.crop.x1, pre.crop.y1), (0.0, 0.0, 500.0, 300.0));
    }

    #[test]
    fn extreme_aspect_ratios_are_refused() {
        assert!(check_aspect_ratio(201, 1).is_err());
        assert!(check_aspect_ratio(200, 1).is_ok());
    }

    #[test]
    fn a_checkpoint_with_another_chat_template_is_refused_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("radlens-qwen-template-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/qwen25vl-tiny-v1/qwen25vl-tiny");
        std::fs::copy(fixture.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
        // The real template loads; one that places the image elsewhere does not.
        std::fs::copy(fixture.join("chat_template.jinja"), dir.join("chat_template.jinja")).unwrap();
        assert!(QwenPrompter::load(&dir, 472).is_ok());
        let other =
            std::fs::read_to_string(dir.join("chat_template.jinja")).unwrap().replace("<|vision_start|><|image_pad|>", "<|image_pad|>");
        std::fs::write(dir.join("chat_template.jinja"), other).unwrap();
        let err = QwenPrompter::load(&dir, 472).err().expect("refused").to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("chat_template.jinja") && err.contains("<|vision_start|><|image_pad|><|vision_end|>"), "{err}");
    }

    #[test]
    fn the_default_system_turn_is_added() {
        let p = prompt_text("Q?", None, 2);
        assert_eq!(
            p,
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|image_pad|><|vision_end|>Q?<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
