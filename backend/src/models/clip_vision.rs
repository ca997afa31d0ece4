//! The CLIP vision tower (LLaVA's ViT-L/14): patch embedding + CLS + positions, pre-layernorm,
//! pre-norm encoder blocks with quick_gelu MLPs. Math only; which block's output feeds the
//! projector is the caller's choice ([`VisionFeature`]).

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Embedding, VarBuilder};
use serde::Deserialize;

pub use super::activation::Activation;
use super::norm::{LayerNorm, layer_norm};
use super::probe::Probe;
use super::vit_block::{BlockConfig, EncoderLayer};

/// `vision_config` as written; defaults are transformers' `CLIPVisionConfig` defaults.
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
    32
}
fn d_act() -> String {
    "quick_gelu".into()
}
fn d_eps() -> f64 {
    1e-5
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub activation: Activation,
    pub layer_norm_eps: f64,
}

impl Config {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    pub fn block(&self) -> BlockConfig {
        BlockConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_heads: self.num_heads,
            layer_norm_eps: self.layer_norm_eps,
            activation: self.activation,
        }
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
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_channels: self.num_channels,
            image_size: self.image_size,
            patch_size: self.patch_size,
            activation: Activation::parse(&self.hidden_act).map_err(|e| format!("vision_config.hidden_act: {e}"))?,
            layer_norm_eps: self.layer_norm_eps,
        })
    }
}

/// Which hidden state of the tower feeds the projector: `BlockOutput(0)` is the embeddings after
/// `pre_layrnorm`, `BlockOutput(i)` the output of encoder block `i - 1`. Never a negative index:
/// `vision_feature_layer = -2` of an `n`-block tower is `BlockOutput(n - 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisionFeature {
    BlockOutput(usize),
}

impl VisionFeature {
    /// Resolves transformers' `vision_feature_layer` (an index into `hidden_states`, which has
    /// `num_layers + 1` entries).
    pub fn from_hf_index(index: i64, num_layers: usize) -> Result<Self, String> {
        let n = num_layers as i64 + 1;
        let resolved = if index < 0 { n + index } else { index };
        if !(0..n).contains(&resolved) {
            return Err(format!("vision_feature_layer {index} is out of range for a {num_layers}-block vision tower"));
        }
        Ok(Self::BlockOutput(resolved as usize))
    }

    pub fn blocks_to_run(self) -> usize {
        match self {
            Self::BlockOutput(n) => n,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClipVision {
    patch_embedding: Conv2d,
    class_embedding: Tensor,
    position_embedding: Embedding,
    pre_layrnorm: LayerNorm,
    layers: Vec<EncoderLayer>,
    cfg: Config,
}

impl ClipVision {
    /// `vb` points at `vision_tower.vision_model`. Loads the first `blocks` encoder blocks
    /// (all of them for intermediates; a model loads only what its feature layer uses).
    pub fn load(cfg: &Config, blocks: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let e = vb.pp("embeddings");
        let conv = candle_nn::Conv2dConfig { stride: cfg.patch_size, ..Default::default() };
        let patch_embedding = candle_nn::conv2d_no_bias(cfg.num_channels, cfg.hidden_size, cfg.patch_size, conv, e.pp("patch_embedding"))?;
        let class_embedding = e.get(cfg.hidden_size, "class_embedding")?;
        let positions = cfg.grid() * cfg.grid() + 1;
        let position_embedding = candle_nn::embedding(positions, cfg.hidden_size, e.pp("position_embedding"))?;
        let pre_layrnorm = layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("pre_layrnorm"))?;
        let layers = (0..blocks.min(cfg.num_layers))
            .map(|i| EncoderLayer::load(&cfg.block(), vb.pp("encoder").pp("layers").pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { patch_embedding, class_embedding, position_embedding, pre_layrnorm, layers, cfg: cfg.clone() })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Every hidden state up to block `blocks`: `[0]` after `pre_layrnorm`, `[i]` after block
    /// `i - 1`; each `[1, 1 + patches, hidden]` with CLS first.
    pub fn hidden_states(&self, pixel_values: &Tensor, blocks: usize, probe: &mut dyn Probe) -> candle_core::Result<Vec<Tensor>> {
        if blocks > self.layers.len() {
            candle_core::bail!("vision block {blocks} requested but only {} are loaded", self.layers.len());
        }
        let patches = self.patch_embedding.forward(&pixel_values.to_dtype(self.class_embedding.dtype())?)?; // [1, d, g, g]
        let patches = patches.flatten_from(2)?.transpose(1, 2)?; // [1, g*g, d]
        // One CLS row per image of the batch (occlusion encodes many images at once).
        let cls = self.class_embedding.reshape((1, 1, self.cfg.hidden_size))?.repeat((patches.dim(0)?, 1, 1))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?;
        let positions = Tensor::arange(0u32, x.dim(1)? as u32, x.device())?;
        let x = x.broadcast_add(&self.position_embedding.forward(&positions)?)?;
        let mut states = vec![self.pre_layrnorm.forward(&x)?];
        for (i, layer) in self.layers[..blocks].iter().enumerate() {
            let next = layer.forward(&states[states.len() - 1], i, probe)?;
            states.push(next);
        }
        Ok(states)
    }

    /// The hidden state that `feature` names, `[1, 1 + patches, hidden]`.
    pub fn forward(&self, pixel_values: &Tensor, feature: VisionFeature, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        let mut states = self.hidden_states(pixel_values, feature.blocks_to_run(), probe)?;
        Ok(states.pop().expect("hidden_states holds at least the embeddings"))
    }
}

#[cfg(test)]
mod tests {
    use super::VisionFeature;

    #[test]
    fn minus_two_is_the_penultimate_block_output() {
        // 24 blocks: hidden_states has 25 entries; [-2] is the output of block 22, i.e. 23 blocks run.
        assert_eq!(VisionFeature::from_hf_index(-2, 24).unwrap(), VisionFeature::BlockOutput(23));
        assert_eq!(VisionFeature::from_hf_index(-1, 3).unwrap(), VisionFeature::BlockOutput(3));
        assert_eq!(VisionFeature::from_hf_index(0, 3).unwrap(), VisionFeature::BlockOutput(0));
        assert!(VisionFeature::from_hf_index(-5, 3).is_err());
    }
}
