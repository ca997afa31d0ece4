//! The SigLIP vision tower (Gemma3 / MedGemma): patch conv with bias + position embeddings (no
//! CLS, no pre-norm), pre-norm encoder blocks with gelu-tanh, then `post_layernorm`.

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Embedding, VarBuilder};
use serde::Deserialize;

use super::activation::Activation;
use super::norm::{LayerNorm, layer_norm};
use super::probe::Probe;
use super::vit_block::{BlockConfig, EncoderLayer};

/// `vision_config` as written; defaults are transformers' `SiglipVisionConfig` defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    #[serde(default = "d_image")]
    pub image_size: usize,
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
}

fn d_hidden() -> usize {
    768
}
fn d_intermediate() -> usize {
    3072
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_channels() -> usize {
    3
}
fn d_image() -> usize {
    224
}
fn d_patch() -> usize {
    16
}
fn d_act() -> String {
    "gelu_pytorch_tanh".into()
}
fn d_eps() -> f64 {
    1e-6
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub block: BlockConfig,
    pub num_layers: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
}

impl Config {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}

impl RawConfig {
    pub fn resolve(self) -> Result<Config, String> {
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(format!("vision_config: image_size {} is not a multiple of patch_size {}", self.image_size, self.patch_size));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!("vision_config: hidden_size {} does not split into {} heads", self.hidden_size, self.num_attention_heads));
        }
        Ok(Config {
            block: BlockConfig {
                hidden_size: self.hidden_size,
                intermediate_size: self.intermediate_size,
                num_heads: self.num_attention_heads,
                layer_norm_eps: self.layer_norm_eps,
                activation: Activation::parse(&self.hidden_act).map_err(|e| format!("vision_config.hidden_act: {e}"))?,
            },
            num_layers: self.num_hidden_layers,
            num_channels: self.num_channels,
            image_size: self.image_size,
            patch_size: self.patch_size,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SiglipVision {
    patch_embedding: Conv2d,
    position_embedding: Embedding,
    layers: Vec<EncoderLayer>,
    post_layernorm: LayerNorm,
    cfg: Config,
}

impl SiglipVision {
    /// `vb` points at `vision_tower.vision_model`.
    pub fn load(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let e = vb.pp("embeddings");
        let d = cfg.block.hidden_size;
        let conv = candle_nn::Conv2dConfig { stride: cfg.patch_size, ..Default::default() };
        let patch_embedding = candle_nn::conv2d(cfg.num_channels, d, cfg.patch_size, conv, e.pp("patch_embedding"))?;
        let position_embedding = candle_nn::embedding(cfg.grid() * cfg.grid(), d, e.pp("position_embedding"))?;
        let layers = (0..cfg.num_layers)
            .map(|i| EncoderLayer::load(&cfg.block, vb.pp("encoder").pp("layers").pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let post_layernorm = layer_norm(d, cfg.block.layer_norm_eps, vb.pp("post_layernorm"))?;
        Ok(Self { patch_embedding, position_embedding, layers, post_layernorm, cfg: cfg.clone() })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// `[0]` = patch + position embeddings, `[i]` = after block `i - 1`; each `[1, patches, hidden]`.
    pub fn hidden_states(&self, pixel_values: &Tensor, probe: &mut dyn Probe) -> candle_core::Result<Vec<Tensor>> {
        let dtype = self.position_embedding.embeddings().dtype();
        let patches = self.patch_embedding.forward(&pixel_values.to_dtype(dtype)?)?; // [1, d, g, g]
        let x = patches.flatten_from(2)?.transpose(1, 2)?; // [1, g*g, d], row-major over (row, col)
        let positions = Tensor::arange(0u32, x.dim(1)? as u32, x.device())?;
        let mut states = vec![x.broadcast_add(&self.position_embedding.forward(&positions)?)?];
        for (i, layer) in self.layers.iter().enumerate() {
            let next = layer.forward(&states[states.len() - 1], i, probe)?;
            states.push(next);
        }
        Ok(states)
    }

    /// The last block's output after `post_layernorm`, `[1, patches, hidden]`.
    pub fn forward(&self, pixel_values: &Tensor, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        let states = self.hidden_states(pixel_values, probe)?;
        self.post_norm(&states[states.len() - 1])
    }

    /// `post_layernorm` of the last block's output.
    pub fn post_norm(&self, last: &Tensor) -> candle_core::Result<Tensor> {
        self.post_layernorm.forward(last)
    }
}
