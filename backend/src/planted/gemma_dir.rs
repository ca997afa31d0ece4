//! The Gemma3 (MedGemma 1.5 path) directory a planted multi-image model is saved as: the
//! multi-image fixture's tokenizer and chat template, a 32 px SigLIP tower with 4 px patches (an
//! 8 x 8 patch grid pooled to 4 x 4 = 16 tokens per image) and two decoder layers, one sliding
//! and one full, as Gemma3 alternates them. The sliding window (256) covers the whole prompt so
//! that the question can read both images in either layer.

use std::path::Path;

use anyhow::{Context, Result};

use crate::models::config::read_json;
use crate::models::gemma3::{Config, RawConfig};

pub const IMAGE_SIZE: usize = 32;
pub const PATCH: usize = 4;
/// Tokens per image after the 2 x 2 pool.
pub const IMAGE_TOKENS: usize = 16;
pub const IMAGE_TOKEN_ID: u32 = 630;
/// `<end_of_turn>`: the token trained after the answer (generation stops there).
pub const END_OF_TURN_ID: u32 = 6;

const FIXTURE: &str = "../../../fixtures/multi-image-v1/gemma3-tiny-multi";
const TOKENIZER_JSON: &str = include_str!("../../../fixtures/multi-image-v1/gemma3-tiny-multi/tokenizer.json");
const TOKENIZER_CONFIG: &str = include_str!("../../../fixtures/multi-image-v1/gemma3-tiny-multi/tokenizer_config.json");
const CHAT_TEMPLATE: &str = include_str!("../../../fixtures/multi-image-v1/gemma3-tiny-multi/chat_template.jinja");

fn config_json() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["Gemma3ForConditionalGeneration"],
        "boi_token_index": 628,
        "dtype": "float16",
        "eoi_token_index": 629,
        "image_token_index": IMAGE_TOKEN_ID,
        "initializer_range": 0.02,
        "mm_tokens_per_image": IMAGE_TOKENS,
        "model_type": "gemma3",
        "text_config": {
            "attention_bias": false,
            "attention_dropout": 0.0,
            "attn_logit_softcapping": null,
            "bos_token_id": 2,
            "eos_token_id": [1, END_OF_TURN_ID],
            "final_logit_softcapping": null,
            "head_dim": 16,
            "hidden_activation": "gelu_pytorch_tanh",
            "hidden_size": 64,
            "initializer_range": 0.02,
            "intermediate_size": 128,
            "layer_types": ["sliding_attention", "full_attention"],
            "max_position_embeddings": 512,
            "model_type": "gemma3_text",
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "num_key_value_heads": 2,
            "pad_token_id": 0,
            "query_pre_attn_scalar": 16,
            "rms_norm_eps": 1e-06,
            "rope_parameters": {
                "full_attention": {"rope_theta": 1000000.0, "rope_type": "default"},
                "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}
            },
            "sliding_window": 256,
            "tie_word_embeddings": true,
            "use_bidirectional_attention": false,
            "use_cache": true,
            "vocab_size": 631
        },
        "tie_word_embeddings": true,
        "vision_config": {
            "attention_dropout": 0.0,
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_size": 32,
            "image_size": IMAGE_SIZE,
            "intermediate_size": 64,
            "layer_norm_eps": 1e-06,
            "model_type": "siglip_vision_model",
            "num_attention_heads": 4,
            "num_channels": 3,
            "num_hidden_layers": 2,
            "patch_size": PATCH,
            "vision_use_head": false
        }
    })
}

fn processor_json() -> serde_json::Value {
    serde_json::json!({
        "image_processor": {
            "do_convert_rgb": true,
            "do_normalize": true,
            "do_pan_and_scan": false,
            "do_rescale": true,
            "do_resize": true,
            "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "Gemma3ImageProcessor",
            "image_std": [0.5, 0.5, 0.5],
            "resample": 2,
            "rescale_factor": 0.00392156862745098,
            "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
        },
        "image_seq_length": IMAGE_TOKENS,
        "processor_class": "Gemma3Processor"
    })
}

fn generation_json() -> serde_json::Value {
    serde_json::json!({"bos_token_id": 2, "do_sample": false, "eos_token_id": [1, END_OF_TURN_ID], "max_new_tokens": 5, "pad_token_id": 0})
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
    for (name, text) in
        [("tokenizer.json", TOKENIZER_JSON), ("tokenizer_config.json", TOKENIZER_CONFIG), ("chat_template.jinja", CHAT_TEMPLATE)]
    {
        std::fs::write(dir.join(name), text).with_context(|| format!("writing {} (from {FIXTURE})", dir.join(name).display()))?;
    }
    let raw: RawConfig = read_json(&dir.join("config.json"))?;
    raw.resolve().map_err(|e| anyhow::anyhow!("the planted Gemma3 config does not resolve: {e}"))
}
