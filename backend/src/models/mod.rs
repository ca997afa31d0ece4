//! The models: one file per component, one attention for all ([`attention`]), one probe
//! mechanism ([`probe`]), and checkpoint layouts kept apart from the math ([`checkpoint`]).
//!
//! Capture sites, for a newcomer looking for one: every attention pattern is captured in
//! `attention::attend`, named `text.blocks.N.attn.pattern` (`llama_text::Attention`) or
//! `vision.blocks.N.attn.pattern` (`clip_vision::Attention`).

pub mod activation;
pub mod attention;
pub mod checkpoint;
pub mod clip_vision;
pub mod config;
pub mod dino_vision;
pub mod error;
pub mod gemma3;
pub mod gemma3_text;
pub mod generate;
pub mod kv_cache;
pub mod llama_text;
pub mod llava;
pub mod loader;
pub mod mask;
pub mod norm;
pub mod probe;
pub mod processor;
pub mod projector;
pub mod rope;
pub mod siglip_vision;
pub mod vit_block;

use candle_core::{DType, Tensor};

use error::Result;
use llama_text::KvCache;
use probe::Probe;

/// What the study and the CLI need to know about a loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    pub architecture: &'static str,
    pub num_layers: usize,
    pub num_heads: usize,
    /// The image-token grid (maps are `grid_h x grid_w`).
    pub grid_h: usize,
    pub grid_w: usize,
    pub image_token_id: u32,
    pub image_tokens: usize,
    pub dtype: DType,
}

/// The seam between a VLM and generation: a prompt forward with the image, then one token at a
/// time. The caller owns the cache and the probe.
pub trait VisionLanguageModel {
    fn summary(&self) -> ModelSummary;
    fn eos_token_ids(&self) -> &[u32];
    fn new_cache(&self) -> KvCache;
    /// Runs the prompt (with the image spliced in) and returns the last position's logits `[V]`
    /// in f32.
    fn prefill(&self, input_ids: &[u32], pixel_values: &Tensor, cache: &mut KvCache, probe: &mut dyn Probe) -> Result<Tensor>;
    /// Feeds one token after what `cache` holds and returns its logits `[V]` in f32.
    fn decode_step(&self, token: u32, cache: &mut KvCache, probe: &mut dyn Probe) -> Result<Tensor>;
}

/// `f32` (the default, exact), `bf16` or `f16`.
pub fn parse_dtype(name: &str) -> std::result::Result<DType, String> {
    match name {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" => Ok(DType::F16),
        other => Err(format!("unknown dtype {other:?} (f32, bf16, f16)")),
    }
}
