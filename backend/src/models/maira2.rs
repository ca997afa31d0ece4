//! MAIRA-2 (microsoft/maira-2, `Maira2ForConditionalGeneration`): a LLaVA whose vision tower is
//! RAD-DINO, a DINOv2 `Dinov2Backbone` (LayerScale, CLS, no registers), read through its
//! `feature_maps` (the final LayerNorm applied), CLS dropped; a projector of
//! `projector_n_layers` Linears with GELU between them (`layers.{0,2,4,6}`); Vicuna-7B Llama with
//! linear RoPE scaling. The model is [`Llava`] with a DINOv2 tower, the final norm and the
//! sequential projector; this file holds its config and how its checkpoint is opened (names
//! mapped in `checkpoint::layout::maira2_canonical_name`). Its prompts are
//! `processor::maira2`; its images go through `preprocess::grey_stretch` first.
//!
//! Detection: config.json's `model_type` `"maira2"` (the hub's remote-code config), or `"llava"`
//! with `architectures` naming `Maira2ForConditionalGeneration` (transformers 5 saves, the
//! multi-image fixture). The token grid follows the processor's crop (`crop_size`), not
//! `vision_config.image_size`, which sizes the position table: the tiny fixture crops 70 px (5 x 5
//! patches) on a 4 x 4 table (bicubic interpolation); the real model crops 518 px on its 37 x 37
//! table (no interpolation).

use std::path::Path;

use serde::Deserialize;

use super::activation::Activation;
use super::checkpoint::{TensorStore, layout, safetensors_files};
use super::clip_vision::VisionFeature;
use super::config::{generation_eos_ids, read_json};
use super::dino_vision;
use super::error::{ModelError, Result};
use super::llama_text;
use super::llava::{Config, FeatureSelect, ProjectorKind, VisionConfig};
use super::processor::preprocess::{Crop, ImageProcessorConfig};

pub const MODEL_TYPE: &str = "maira2";
pub const ARCHITECTURE: &str = "Maira2ForConditionalGeneration";

/// Whether a config.json (parsed) is MAIRA-2's.
pub fn is_maira2(config: &serde_json::Value) -> bool {
    let arch = config.get("architectures").and_then(|a| a.as_array()).is_some_and(|a| a.iter().any(|v| v.as_str() == Some(ARCHITECTURE)));
    match config.get("model_type").and_then(|t| t.as_str()) {
        Some(MODEL_TYPE) => true,
        Some("llava") => arch,
        _ => false,
    }
}

/// `vision_config` of a `Dinov2Config`; defaults are transformers' `Dinov2Config` ones, except
/// `image_size` (RAD-DINO's 518 px rather than 224).
#[derive(Debug, Clone, Deserialize)]
pub struct RawVisionConfig {
    pub model_type: Option<String>,
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_mlp_ratio")]
    pub mlp_ratio: f64,
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    #[serde(default = "d_image")]
    pub image_size: usize,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "d_gelu")]
    pub hidden_act: String,
    #[serde(default = "d_true")]
    pub apply_layernorm: bool,
    #[serde(default = "d_true")]
    pub qkv_bias: bool,
    #[serde(default)]
    pub use_swiglu_ffn: bool,
    #[serde(default)]
    pub num_register_tokens: usize,
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    pub out_features: Option<Vec<String>>,
}

/// config.json of a MAIRA-2 checkpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    pub text_config: llama_text::RawConfig,
    pub vision_config: RawVisionConfig,
    #[serde(alias = "image_token_id")]
    pub image_token_index: u32,
    #[serde(default = "d_gelu")]
    pub projector_hidden_act: String,
    #[serde(default = "d_projector_layers")]
    pub projector_n_layers: usize,
    #[serde(default = "d_feature_layer")]
    pub vision_feature_layer: i64,
    #[serde(default = "d_strategy")]
    pub vision_feature_select_strategy: String,
    #[serde(default = "d_true")]
    pub multimodal_projector_bias: bool,
    pub tie_word_embeddings: Option<bool>,
    /// Image tokens per image, where the config says it (checked against the crop).
    pub image_seq_length: Option<usize>,
}

fn d_hidden() -> usize {
    768
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_mlp_ratio() -> f64 {
    4.0
}
fn d_patch() -> usize {
    14
}
fn d_image() -> usize {
    518
}
fn d_eps() -> f64 {
    1e-6
}
fn d_gelu() -> String {
    "gelu".into()
}
fn d_true() -> bool {
    true
}
fn d_channels() -> usize {
    3
}
fn d_projector_layers() -> usize {
    4
}
fn d_feature_layer() -> i64 {
    -1
}
fn d_strategy() -> String {
    "default".into()
}

impl RawConfig {
    /// Resolves against the processor's input side `input_px` (its square crop).
    pub fn resolve(self, input_px: usize) -> std::result::Result<Config, String> {
        let v = &self.vision_config;
        if let Some(t) = v.model_type.as_deref()
            && t != "dinov2"
        {
            return Err(format!("vision_config.model_type {t:?}: MAIRA-2's tower is dinov2"));
        }
        if v.use_swiglu_ffn || v.num_register_tokens != 0 || !v.qkv_bias || v.hidden_act != "gelu" || v.num_channels != 3 {
            return Err(format!(
                "vision_config: only DINOv2 with a GELU MLP, qkv bias, 3 channels and no registers is supported \
                 (use_swiglu_ffn {}, num_register_tokens {}, qkv_bias {}, hidden_act {:?}, num_channels {})",
                v.use_swiglu_ffn, v.num_register_tokens, v.qkv_bias, v.hidden_act, v.num_channels
            ));
        }
        let heads = v.num_attention_heads;
        if heads == 0 || !v.hidden_size.is_multiple_of(heads) || v.patch_size == 0 {
            return Err(format!("vision_config: hidden_size {} does not split into {heads} heads", v.hidden_size));
        }
        if !input_px.is_multiple_of(v.patch_size) || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(format!(
                "the processor's {input_px} px crop or vision_config.image_size {} is not a multiple of patch_size {}",
                v.image_size, v.patch_size
            ));
        }
        // feature_maps holds one map per out_features stage (default: the last block);
        // vision_feature_layer indexes that list as Python does.
        let stages: Vec<usize> = match &v.out_features {
            None => vec![v.num_hidden_layers],
            Some(names) => names
                .iter()
                .map(|n| match n.strip_prefix("stage").and_then(|i| i.parse::<usize>().ok()) {
                    Some(i) if i <= v.num_hidden_layers => Ok(i),
                    _ => Err(format!("vision_config.out_features: {n:?} is not a stage of a {}-block tower", v.num_hidden_layers)),
                })
                .collect::<std::result::Result<_, _>>()?,
        };
        let n = stages.len() as i64;
        let index = if self.vision_feature_layer < 0 { n + self.vision_feature_layer } else { self.vision_feature_layer };
        let block = *usize::try_from(index).ok().and_then(|i| stages.get(i)).ok_or_else(|| {
            format!("vision_feature_layer {} is out of range for feature maps of stages {stages:?}", self.vision_feature_layer)
        })?;
        let select = match self.vision_feature_select_strategy.as_str() {
            "default" => FeatureSelect::Default,
            "full" => FeatureSelect::Full,
            other => return Err(format!("vision_feature_select_strategy {other:?} is not supported (default, full)")),
        };
        if self.projector_n_layers == 0 {
            return Err("projector_n_layers must be at least 1".into());
        }
        let vision = dino_vision::Config {
            width: v.hidden_size,
            depth: v.num_hidden_layers,
            num_heads: heads,
            mlp_hidden: (v.hidden_size as f64 * v.mlp_ratio) as usize,
            patch_size: v.patch_size,
            image_size: input_px,
            pos_grid: v.image_size / v.patch_size,
            layer_norm_eps: v.layer_norm_eps,
            final_norm: v.apply_layernorm,
        };
        let mut text = self.text_config.resolve()?;
        if let Some(tie) = self.tie_word_embeddings {
            text.tie_word_embeddings |= tie;
        }
        let cfg = Config {
            text,
            vision: VisionConfig::Dino(vision),
            image_token_id: self.image_token_index,
            projector_activation: Activation::parse(&self.projector_hidden_act).map_err(|e| format!("projector_hidden_act: {e}"))?,
            projector_bias: self.multimodal_projector_bias,
            projector: ProjectorKind::Sequential(self.projector_n_layers),
            feature: VisionFeature::BlockOutput(block),
            select,
        };
        if let Some(n) = self.image_seq_length
            && n != cfg.image_tokens()
        {
            return Err(format!(
                "image_seq_length {n}, but a {input_px} px crop in {} px patches gives {} image tokens",
                v.patch_size,
                cfg.image_tokens()
            ));
        }
        Ok(cfg)
    }
}

/// The image processor: the checkpoint's (`BitImageProcessor`: shortest edge, centre crop,
/// RAD-DINO's mean/std) after MAIRA-2's greyscale min-max stretch.
pub fn image_processor(dir: &Path) -> Result<ImageProcessorConfig> {
    let mut cfg = ImageProcessorConfig::load(dir)?;
    cfg.grey_stretch = true;
    Ok(cfg)
}

/// A MAIRA-2 directory's resolved config and its tensors under canonical names.
pub fn open(dir: &Path) -> Result<(Config, TensorStore)> {
    let config_path = dir.join("config.json");
    let raw: RawConfig = read_json(&config_path)?;
    let processor = image_processor(dir)?;
    let input_px = match processor.crop {
        Crop::Center { height, width } if height == width => height as usize,
        other => {
            return Err(ModelError::Config {
                file: dir.join("processor_config.json"),
                message: format!("MAIRA-2 needs a square centre crop (crop_size), not {other:?}"),
            });
        }
    };
    let mut cfg = raw.resolve(input_px).map_err(|message| ModelError::Config { file: config_path.clone(), message })?;
    for id in generation_eos_ids(dir)? {
        if !cfg.text.eos_token_ids.contains(&id) {
            cfg.text.eos_token_ids.push(id);
        }
    }
    let mut store = TensorStore::empty();
    for file in safetensors_files(dir)? {
        store.add_safetensors(&file, layout::maira2_canonical_name)?;
    }
    Ok((cfg, store))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(vision: serde_json::Value) -> RawConfig {
        serde_json::from_value(serde_json::json!({
            "model_type": "maira2",
            "image_token_index": 32204,
            "text_config": {"rope_scaling": {"rope_type": "linear", "factor": 1.5}, "vocab_size": 32207},
            "vision_config": vision,
        }))
        .unwrap()
    }

    /// The real shape: ViT-B/14 at 518 px, 37 x 37 patches, 1369 image tokens, stage 12 with the
    /// final LayerNorm, linear RoPE 1.5.
    #[test]
    fn the_real_maira2_config_resolves_to_37x37_tokens() {
        let cfg = raw(serde_json::json!({"model_type": "dinov2", "out_features": ["stage12"]})).resolve(518).unwrap();
        let VisionConfig::Dino(v) = &cfg.vision else { panic!("dino") };
        assert_eq!((v.grid(), v.pos_grid, v.final_norm, v.width), (37, 37, true, 768));
        assert_eq!(cfg.image_tokens(), 1369);
        assert_eq!(cfg.feature, VisionFeature::BlockOutput(12));
        assert_eq!(cfg.projector, ProjectorKind::Sequential(4));
        assert_eq!(cfg.text.rope_linear_factor, 1.5);
    }

    #[test]
    fn registers_swiglu_and_other_towers_are_refused_by_name() {
        let err = raw(serde_json::json!({"num_register_tokens": 4})).resolve(518).unwrap_err();
        assert!(err.contains("num_register_tokens 4"), "{err}");
        let err = raw(serde_json::json!({"model_type": "clip_vision_model"})).resolve(518).unwrap_err();
        assert!(err.contains("clip_vision_model"), "{err}");
        let err = raw(serde_json::json!({})).resolve(500).unwrap_err();
        assert!(err.contains("500 px"), "{err}");
    }

    #[test]
    fn detection_by_model_type_or_architecture() {
        assert!(is_maira2(&serde_json::json!({"model_type": "maira2"})));
        assert!(is_maira2(&serde_json::json!({"model_type": "llava", "architectures": [ARCHITECTURE]})));
        assert!(!is_maira2(&serde_json::json!({"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"]})));
    }
}
