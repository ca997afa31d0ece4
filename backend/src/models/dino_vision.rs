//! The DINOv2-style timm ViT of LLaVA-Rad's BiomedCLIP-CXR tower (`vit_base_patch14_dinov2` at
//! 518 px: 37 x 37 patches + CLS): conv patch embedding with bias, CLS first, `+ pos_embed`, no
//! pre-norm, pre-norm blocks with fused qkv and LayerScale (`x + gamma * f(x)`), erf GELU,
//! LayerNorm eps 1e-6. timm names (`blocks.{i}.attn.qkv`, `ls1.gamma`, ...) under the trunk.

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Linear, VarBuilder};

use super::activation::Activation;
use super::attention::{AttnSpec, attend};
use super::norm::{LayerNorm, layer_norm};
use super::probe::{Probe, SiteName};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub width: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub mlp_hidden: usize,
    pub patch_size: usize,
    pub image_size: usize,
    pub layer_norm_eps: f64,
}

impl Config {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}

#[derive(Debug, Clone)]
struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ls1: Tensor,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    ls2: Tensor,
    num_heads: usize,
}

impl Block {
    fn load(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.width;
        Ok(Self {
            norm1: layer_norm(d, cfg.layer_norm_eps, vb.pp("norm1"))?,
            qkv: candle_nn::linear(d, 3 * d, vb.pp("attn").pp("qkv"))?,
            proj: candle_nn::linear(d, d, vb.pp("attn").pp("proj"))?,
            ls1: vb.pp("ls1").get(d, "gamma")?,
            norm2: layer_norm(d, cfg.layer_norm_eps, vb.pp("norm2"))?,
            fc1: candle_nn::linear(d, cfg.mlp_hidden, vb.pp("mlp").pp("fc1"))?,
            fc2: candle_nn::linear(cfg.mlp_hidden, d, vb.pp("mlp").pp("fc2"))?,
            ls2: vb.pp("ls2").get(d, "gamma")?,
            num_heads: cfg.num_heads,
        })
    }

    fn attention(&self, x: &Tensor, layer: usize, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        let (b, seq, d) = x.dims3()?;
        let head_dim = d / self.num_heads;
        // qkv rows are q, then k, then v: [b, seq, 3, heads, hd] -> 3 x [b, heads, seq, hd].
        let qkv = self.qkv.forward(x)?.reshape((b, seq, 3, self.num_heads, head_dim))?.permute((2, 0, 3, 1, 4))?;
        let (q, k, v) = (qkv.get(0)?.contiguous()?, qkv.get(1)?.contiguous()?, qkv.get(2)?.contiguous()?);
        let spec = AttnSpec { scale: 1.0 / (head_dim as f64).sqrt(), softcap: None, mask: None };
        let out = attend(&q, &k, &v, &spec, SiteName::vision_attn(layer), 0, probe)?;
        self.proj.forward(&out.transpose(1, 2)?.reshape((b, seq, d))?)
    }

    fn forward(&self, x: &Tensor, layer: usize, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        let x = (x + self.attention(&self.norm1.forward(x)?, layer, probe)?.broadcast_mul(&self.ls1)?)?;
        let mlp = self.fc2.forward(&Activation::Gelu.apply(&self.fc1.forward(&self.norm2.forward(&x)?)?)?)?;
        x + mlp.broadcast_mul(&self.ls2)?
    }
}

#[derive(Debug, Clone)]
pub struct DinoVision {
    patch_embed: Conv2d,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    cfg: Config,
}

impl DinoVision {
    /// `vb` points at the trunk. Loads the first `blocks` blocks (the final `norm` is never used).
    pub fn load(cfg: &Config, blocks: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let conv = candle_nn::Conv2dConfig { stride: cfg.patch_size, ..Default::default() };
        let patch_embed = candle_nn::conv2d(3, cfg.width, cfg.patch_size, conv, vb.pp("patch_embed").pp("proj"))?;
        let cls_token = vb.get((1, 1, cfg.width), "cls_token")?;
        // No interpolation: the checkpoint must hold exactly grid^2 + 1 positions.
        let pos_embed = vb.get((1, cfg.grid() * cfg.grid() + 1, cfg.width), "pos_embed")?;
        let blocks =
            (0..blocks.min(cfg.depth)).map(|i| Block::load(cfg, vb.pp("blocks").pp(i))).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { patch_embed, cls_token, pos_embed, blocks, cfg: cfg.clone() })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn loaded_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// `[0]` = embeddings + pos_embed, `[i]` = after block `i - 1`, up to `blocks`; each
    /// `[1, 1 + patches, width]`, CLS first.
    pub fn hidden_states(&self, pixel_values: &Tensor, blocks: usize, probe: &mut dyn Probe) -> candle_core::Result<Vec<Tensor>> {
        if blocks > self.blocks.len() {
            candle_core::bail!("vision block {blocks} requested but only {} are loaded", self.blocks.len());
        }
        let patches = self.patch_embed.forward(&pixel_values.to_dtype(self.cls_token.dtype())?)?; // [1, d, g, g]
        let patches = patches.flatten_from(2)?.transpose(1, 2)?; // [1, g*g, d], row-major
        // One CLS row per image of the batch (occlusion encodes many images at once).
        let cls = self.cls_token.repeat((patches.dim(0)?, 1, 1))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.pos_embed)?;
        let mut states = vec![x];
        for (i, block) in self.blocks[..blocks].iter().enumerate() {
            let next = block.forward(&states[states.len() - 1], i, probe)?;
            states.push(next);
        }
        Ok(states)
    }
}
