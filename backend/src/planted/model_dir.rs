//! The llava-hf directory a planted model is saved as: the reference fixture's tokenizer and
//! chat template, and the reference geometry (56 px, patch 14: a 4 x 4 token grid; an 8 x 8 grid
//! did not train within the step budget) with two decoder layers (weights stay well under 1 MB in
//! f16).

use std::path::Path;

use anyhow::{Context, Result};

use crate::models::config::read_json;
use crate::models::llava::{Config, RawConfig};

pub const IMAGE_SIZE: usize = 56;
pub const PATCH: usize = 14;
pub const IMAGE_TOKEN_ID: u32 = 638;
pub const EOS_TOKEN_ID: u32 = 2;

const TOKENIZER_JSON: &str = include_str!("../../../fixtures/reference-v1/llava-tiny/tokenizer.json");
const TOKENIZER_CONFIG: &str = include_str!("../../../fixtures/reference-v1/llava-tiny/tokenizer_config.json");
const CHAT_TEMPLATE: &str = include_str!("../../../fixtures/reference-v1/llava-tiny/chat_template.jinja");

pub fn image_tokens() -> usize {
    (IMAGE_SIZE / PATCH).pow(2)
}

fn config_json() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlavaForConditionalGeneration"],
        "dtype": "float16",
        "image_seq_length": image_tokens(),
        "image_token_index": IMAGE_TOKEN_ID,
        "model_type": "llava",
        "multimodal_projector_bias": true,
        "projector_hidden_act": "gelu",
        "text_config": {
            "attention_bias": false,
            "attention_dropout": 0.0,
            "bos_token_id": 1,
            "eos_token_id": EOS_TOKEN_ID,
            "head_dim": 16,
            "hidden_act": "silu",
            "hidden_size": 64,
            "initializer_range": 0.02,
            "intermediate_size": 128,
            "max_position_embeddings": 512,
            "mlp_bias": false,
            "model_type": "llama",
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "num_key_value_heads": 2,
            "pad_token_id": 639,
            "pretraining_tp": 1,
            "rms_norm_eps": 1e-05,
            "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
            "tie_word_embeddings": false,
            "use_cache": true,
            "vocab_size": 640
        },
        "tie_word_embeddings": false,
        "vision_config": {
            "attention_dropout": 0.0,
            "hidden_act": "quick_gelu",
            "hidden_size": 32,
            "image_size": IMAGE_SIZE,
            "initializer_factor": 1.0,
            "initializer_range": 0.02,
            "intermediate_size": 64,
            "layer_norm_eps": 1e-05,
            "model_type": "clip_vision_model",
            "num_attention_heads": 4,
            "num_channels": 3,
            "num_hidden_layers": 2,
            "patch_size": PATCH,
            "projection_dim": 32
        },
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default"
    })
}

fn processor_json() -> serde_json::Value {
    serde_json::json!({
        "image_processor": {
            "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
            "do_center_crop": true,
            "do_convert_rgb": true,
            "do_normalize": true,
            "do_rescale": true,
            "do_resize": true,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_processor_type": "CLIPImageProcessor",
            "image_std": [0.26862954, 0.26130258, 0.27577711],
            "resample": 3,
            "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": IMAGE_SIZE}
        },
        "image_token": "<image>",
        "num_additional_image_tokens": 1,
        "patch_size": PATCH,
        "processor_class": "LlavaProcessor",
        "vision_feature_select_strategy": "default"
    })
}

fn generation_json() -> serde_json::Value {
    serde_json::json!({"bos_token_id": 1, "do_sample": false, "eos_token_id": EOS_TOKEN_ID, "max_new_tokens": 5, "pad_token_id": 639})
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    std::fs::write(path, format!("{}\n", serde_json::to_string_pretty(value)?)).with_context(|| format!("writing {}", path.display()))
}

/// Writes every file of the model directory but the weights, and returns the resolved config.
pub fn write_model_files(dir: &Path) -> Result<Config> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_json(&dir.join("config.json"), &config_json())?;
    write_json(&dir.join("processor_config.json"), &processor_json())?;
    write_json(&dir.join("generation_config.json"), &generation_json())?;
    std::fs::write(dir.join("tokenizer.json"), TOKENIZER_JSON)?;
    std::fs::write(dir.join("tokenizer_config.json"), TOKENIZER_CONFIG)?;
    std::fs::write(dir.join("chat_template.jinja"), CHAT_TEMPLATE)?;
    let raw: RawConfig = read_json(&dir.join("config.json"))?;
    raw.resolve().map_err(|e| anyhow::anyhow!("the planted config does not resolve: {e}"))
}
