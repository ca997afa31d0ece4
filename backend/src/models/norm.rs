//! Normalisation layers, loaded by their checkpoint names.

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;

/// RMSNorm, normalised in f32: Llama's `w * x_hat` (cast back, then scaled) or Gemma's
/// `(1 + w) * x_hat` (scaled in f32, then cast back).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// The factor applied: `w` (Llama, in the model's dtype) or `1 + w` (Gemma, f32).
    scale: Tensor,
    eps: f64,
    gemma: bool,
}

impl RmsNorm {
    pub fn load(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self { scale: vb.get(size, "weight")?, eps, gemma: false })
    }

    /// Gemma stores `w` and applies `1 + w`.
    pub fn load_gemma(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        let w = vb.get(size, "weight")?.to_dtype(DType::F32)?;
        Ok(Self { scale: (w + 1.0)?, eps, gemma: true })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let inv_rms = (xf.sqr()?.mean_keepdim(candle_core::D::Minus1)? + self.eps)?.sqrt()?.recip()?;
        let normed = xf.broadcast_mul(&inv_rms)?;
        if self.gemma {
            normed.broadcast_mul(&self.scale)?.to_dtype(dtype)
        } else {
            normed.to_dtype(dtype)?.broadcast_mul(&self.scale)
        }
    }
}

/// LayerNorm with weight and bias (CLIP).
pub fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<candle_nn::LayerNorm> {
    candle_nn::layer_norm(size, candle_nn::LayerNormConfig { eps, ..Default::default() }, vb)
}
