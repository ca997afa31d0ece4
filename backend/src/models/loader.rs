//! Opening a model directory: which architecture it holds, and everything needed to run it
//! (weights, prompt builder, image processor).

use std::path::Path;

use candle_core::{DType, Device};
use serde::Deserialize;

use super::VisionLanguageModel;
use super::checkpoint::TensorStore;
use super::checkpoint::llava_rad::{LlavaRadParts, PartOverrides};
use super::checkpoint::redraw::Redraw;
use super::config::read_json;
use super::error::{ModelError, Result};
use super::gemma3::Gemma3;
use super::linear::WeightFormat;
use super::llava::Llava;
use super::processor::Prompter;
use super::processor::gemma3::Gemma3Prompter;
use super::processor::llava::{LlavaPrompter, LlavaRadPrompter};
use super::processor::maira2::Maira2Prompter;
use super::processor::preprocess::ImageProcessorConfig;
use super::processor::preprocess::{Crop, Filter, Normalize, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, Resize};
use super::processor::qwen25vl::QwenPrompter;
use super::qwen25vl::Qwen25Vl;

/// The `model_type`s of config.json that [`load_engine`] opens (MAIRA-2 also as `llava` with
/// `architectures: ["Maira2ForConditionalGeneration"]`).
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["llava", "gemma3", super::qwen25vl::MODEL_TYPE, super::maira2::MODEL_TYPE];

/// A loaded model with its inputs side.
pub struct Engine {
    pub model: Box<dyn VisionLanguageModel>,
    pub prompter: Box<dyn Prompter>,
    pub image_processor: ImageProcessorConfig,
}

#[derive(Deserialize)]
struct ModelType {
    model_type: Option<String>,
    vision_config: Option<VisionModelType>,
}

#[derive(Deserialize)]
struct VisionModelType {
    model_type: Option<String>,
}

/// Opens `dir`: a llava-hf, MAIRA-2, Gemma3 or Qwen2.5-VL directory (by `config.json`'s
/// `model_type`, and for MAIRA-2 saved as `llava` its `architectures`), or a
/// LLaVA-Rad release (`base/` + `llava-rad/`, or the llava-rad directory with `overrides.base`).
/// `format` is how the decoder's projections are held (dense, or `--quantize q8`).
pub fn load_engine(dir: &Path, overrides: &PartOverrides, dtype: DType, device: &Device, format: WeightFormat) -> Result<Engine> {
    load_engine_redrawn(dir, overrides, dtype, device, format, None)
}

/// [`load_engine`] with the weights `redraw` covers re-drawn before the model is built (the
/// randomisation sanity check); `None` loads the checkpoint as it is.
pub fn load_engine_redrawn(
    dir: &Path,
    overrides: &PartOverrides,
    dtype: DType,
    device: &Device,
    format: WeightFormat,
    redraw: Option<&Redraw>,
) -> Result<Engine> {
    let edit = |store: &mut TensorStore| -> Result<()> {
        if let Some(r) = redraw {
            store.redraw(r)?;
        }
        Ok(())
    };
    if !dir.is_dir() {
        return Err(ModelError::MissingFile { path: dir.to_path_buf(), hint: " (expected a model directory)".into() });
    }
    check_dtype(dtype, device)?;
    if LlavaRadParts::looks_like(dir) || overrides.base.is_some() {
        let parts = LlavaRadParts::locate(dir, overrides)?;
        let (cfg, mut store) = super::checkpoint::llava_rad::assemble(&parts, dtype)?;
        edit(&mut store)?;
        let model = Llava::from_store(cfg, store, dtype, device, format)
            .map_err(|e| ModelError::Checkpoint { path: parts.repo.clone(), message: e.to_string() })?;
        let cfg = model.config();
        let prompter = LlavaRadPrompter::load(&parts.base, cfg.image_tokens())?;
        // open_clip's eval transform: bicubic shortest edge, centre crop, OpenAI CLIP mean/std.
        let side = cfg.vision.image_size() as u32;
        let image_processor = ImageProcessorConfig {
            convert_rgb: true,
            resize: Resize::ShortestEdge(side),
            resample: Filter::Bicubic,
            crop: Crop::Center { height: side, width: side },
            rescale_factor: 1.0 / 255.0,
            normalize: Normalize::MeanStd { mean: OPENAI_CLIP_MEAN, std: OPENAI_CLIP_STD },
            grey_stretch: false,
        };
        return Ok(Engine { model: Box::new(model), prompter: Box::new(prompter), image_processor });
    }
    let config_path = dir.join("config.json");
    let value: serde_json::Value = read_json(&config_path)?;
    if super::maira2::is_maira2(&value) {
        let (cfg, mut store) = super::maira2::open(dir)?;
        edit(&mut store)?;
        let model = Llava::from_store(cfg, store, dtype, device, format)
            .map_err(|e| ModelError::Checkpoint { path: dir.to_path_buf(), message: e.to_string() })?;
        let prompter = Maira2Prompter::load(dir, model.config().image_token_id, model.config().image_tokens())?;
        let image_processor = super::maira2::image_processor(dir)?;
        return Ok(Engine { model: Box::new(model), prompter: Box::new(prompter), image_processor });
    }
    let kind: ModelType =
        serde_json::from_value(value).map_err(|e| ModelError::Config { file: config_path.clone(), message: e.to_string() })?;
    let vision_type = kind.vision_config.as_ref().and_then(|v| v.model_type.as_deref());
    match kind.model_type.as_deref() {
        Some("llava") if vision_type == Some("dinov2") => Err(ModelError::Config {
            file: config_path,
            message: format!(
                "a llava checkpoint with a dinov2 vision tower is supported only as MAIRA-2 (architectures: [\"{}\"])",
                super::maira2::ARCHITECTURE
            ),
        }),
        Some("llava") => {
            let (cfg, mut store) = Llava::open(dir)?;
            edit(&mut store)?;
            let model = Llava::from_store(cfg, store, dtype, device, format)
                .map_err(|e| ModelError::Checkpoint { path: dir.to_path_buf(), message: e.to_string() })?;
            let prompter = LlavaPrompter::load(dir, model.config().image_token_id, model.config().image_tokens())?;
            let image_processor = ImageProcessorConfig::load(dir)?;
            Ok(Engine { model: Box::new(model), prompter: Box::new(prompter), image_processor })
        }
        Some("gemma3") => {
            let (cfg, mut store) = Gemma3::open(dir)?;
            edit(&mut store)?;
            let model = Gemma3::from_store(cfg, store, dtype, device, format)
                .map_err(|e| ModelError::Checkpoint { path: dir.to_path_buf(), message: e.to_string() })?;
            let prompter = Gemma3Prompter::load(dir, model.config().image_token_id, model.config().image_tokens())?;
            let image_processor = ImageProcessorConfig::load(dir)?;
            Ok(Engine { model: Box::new(model), prompter: Box::new(prompter), image_processor })
        }
        Some(super::qwen25vl::MODEL_TYPE) => {
            let (cfg, mut store) = Qwen25Vl::open(dir)?;
            edit(&mut store)?;
            let model = Qwen25Vl::from_store(cfg, store, dtype, device, format)
                .map_err(|e| ModelError::Checkpoint { path: dir.to_path_buf(), message: e.to_string() })?;
            let prompter = QwenPrompter::load(dir, model.config().image_token_id)?;
            let image_processor = ImageProcessorConfig::load(dir)?;
            if !matches!(image_processor.resize, Resize::Smart { .. }) {
                return Err(ModelError::Config {
                    file: dir.join("preprocessor_config.json"),
                    message: "a Qwen2.5-VL checkpoint needs image_processor_type Qwen2VLImageProcessor (dynamic resolution)".into(),
                });
            }
            Ok(Engine { model: Box::new(model), prompter: Box::new(prompter), image_processor })
        }
        other => Err(ModelError::Config {
            file: config_path,
            message: format!(
                "model_type {other:?} is not supported (supported: {}, and LLaVA-Rad releases: base/ + llava-rad/)",
                SUPPORTED_MODEL_TYPES.join(", ")
            ),
        }),
    }
}

/// candle's CPU backend has no bf16 matrix multiply: say so before loading gigabytes.
pub fn check_dtype(dtype: DType, device: &Device) -> Result<()> {
    if dtype == DType::BF16 && device.is_cpu() {
        return Err(ModelError::Invalid(
            "--dtype bf16 is not supported on the CPU (candle has no CPU bf16 matmul): use f16 for half the memory of f32, or bf16 on a CUDA device".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unknown `model_type` names itself and every supported one.
    #[test]
    fn an_unsupported_model_type_lists_the_supported_ones() {
        let dir = std::env::temp_dir().join(format!("radlens-model-type-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"model_type": "qwen3_vl"}"#).unwrap();
        let err = load_engine(&dir, &PartOverrides::default(), DType::F32, &Device::Cpu, WeightFormat::Dense).err().expect("refused");
        let msg = err.to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(err, ModelError::Config { .. }), "{err:?}");
        assert!(msg.contains("\"qwen3_vl\"") && msg.contains("config.json"), "{msg}");
        for t in SUPPORTED_MODEL_TYPES {
            assert!(msg.contains(t), "{msg} does not list {t}");
        }
    }

    /// A llava config with a dinov2 tower that does not say MAIRA-2 is refused rather than read
    /// as a CLIP tower.
    #[test]
    fn a_llava_with_a_dinov2_tower_must_be_maira2() {
        let dir = std::env::temp_dir().join(format!("radlens-llava-dinov2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"model_type": "llava", "vision_config": {"model_type": "dinov2"}}"#).unwrap();
        let err = load_engine(&dir, &PartOverrides::default(), DType::F32, &Device::Cpu, WeightFormat::Dense).err().expect("refused");
        std::fs::remove_dir_all(&dir).unwrap();
        let msg = err.to_string();
        assert!(msg.contains("dinov2") && msg.contains("Maira2ForConditionalGeneration"), "{msg}");
    }
}
