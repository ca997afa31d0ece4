//! Normalisation layers, loaded by their checkpoint names.

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;

/// `x * rsqrt(mean(x^2) + eps) * w`, computed in f32 (Llama's RMSNorm).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn load(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self { weight: vb.get(size, "weight")?, eps })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let inv_rms = (xf.sqr()?.mean_keepdim(candle_core::D::Minus1)? + self.eps)?.sqrt()?.recip()?;
        let normed = xf.broadcast_mul(&inv_rms)?.to_dtype(dtype)?;
        normed.broadcast_mul(&self.weight)
    }
}

/// LayerNorm with weight and bias (CLIP).
pub fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<candle_nn::LayerNorm> {
    candle_nn::layer_norm(size, candle_nn::LayerNormConfig { eps, ..Default::default() }, vb)
}
