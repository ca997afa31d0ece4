//! The pre-norm ViT encoder block shared by the CLIP and SigLIP towers (checkpoint names
//! `layer_norm1`, `self_attn.{q,k,v,out}_proj`, `layer_norm2`, `mlp.fc{1,2}`).

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::activation::Activation;
use super::attention::{AttnSpec, attend};
use super::norm::{LayerNorm, layer_norm};
use super::probe::{Probe, SiteName};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub layer_norm_eps: f64,
    pub activation: Activation,
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn forward(&self, x: &Tensor, layer: usize, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        let (b, seq, d) = x.dims3()?;
        let split = |t: Tensor| t.reshape((b, seq, self.num_heads, self.head_dim))?.transpose(1, 2)?.contiguous(); // [b, heads, seq, d]
        let q = split(self.q_proj.forward(x)?)?;
        let k = split(self.k_proj.forward(x)?)?;
        let v = split(self.v_proj.forward(x)?)?;
        let spec = AttnSpec { scale: 1.0 / (self.head_dim as f64).sqrt(), softcap: None, mask: None };
        let out = attend(&q, &k, &v, &spec, SiteName::vision_attn(layer), 0, probe)?;
        self.out_proj.forward(&out.transpose(1, 2)?.reshape((b, seq, d))?)
    }
}

#[derive(Debug, Clone)]
pub struct EncoderLayer {
    self_attn: Attention,
    layer_norm1: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    layer_norm2: LayerNorm,
    activation: Activation,
}

impl EncoderLayer {
    pub fn load(cfg: &BlockConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.hidden_size;
        let a = vb.pp("self_attn");
        Ok(Self {
            self_attn: Attention {
                q_proj: candle_nn::linear(d, d, a.pp("q_proj"))?,
                k_proj: candle_nn::linear(d, d, a.pp("k_proj"))?,
                v_proj: candle_nn::linear(d, d, a.pp("v_proj"))?,
                out_proj: candle_nn::linear(d, d, a.pp("out_proj"))?,
                num_heads: cfg.num_heads,
                head_dim: d / cfg.num_heads,
            },
            layer_norm1: layer_norm(d, cfg.layer_norm_eps, vb.pp("layer_norm1"))?,
            fc1: candle_nn::linear(d, cfg.intermediate_size, vb.pp("mlp").pp("fc1"))?,
            fc2: candle_nn::linear(cfg.intermediate_size, d, vb.pp("mlp").pp("fc2"))?,
            layer_norm2: layer_norm(d, cfg.layer_norm_eps, vb.pp("layer_norm2"))?,
            activation: cfg.activation,
        })
    }

    /// `layer` names the capture site `vision.blocks.{layer}.attn.pattern`.
    pub fn forward(&self, x: &Tensor, layer: usize, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        let x = (x + self.self_attn.forward(&self.layer_norm1.forward(x)?, layer, probe)?)?;
        let h = self.fc2.forward(&self.activation.apply(&self.fc1.forward(&self.layer_norm2.forward(&x)?)?)?)?;
        x + h
    }
}
