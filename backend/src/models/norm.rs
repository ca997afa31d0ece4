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
        // Llama in half precision: candle's fused kernel (one launch instead of nine; it
        // normalises in f32 and scales before the final rounding, which differs from the
        // composed form by at most one rounding of the product). Never when gradients flow:
        // the fused kernel has no backward.
        if dtype != DType::F32 && !self.gemma && !x.track_op() {
            return candle_nn::ops::rms_norm(&x.contiguous()?, &self.scale, self.eps as f32);
        }
        let xf = x.to_dtype(DType::F32)?;
        let inv_rms = (xf.sqr()?.mean_keepdim(candle_core::D::Minus1)? + self.eps)?.sqrt()?.recip()?;
        let normed = xf.broadcast_mul(&inv_rms)?;
        if self.gemma { normed.broadcast_mul(&self.scale)?.to_dtype(dtype) } else { normed.to_dtype(dtype)?.broadcast_mul(&self.scale) }
    }
}

/// LayerNorm with weight and bias (CLIP, SigLIP, the DINOv2 trunk). candle's fused kernel has no
/// backward: a forward tracked for gradients (Grad-CAM) takes the composed normalisation.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    inner: candle_nn::LayerNorm,
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if !x.track_op() {
            return self.inner.forward(x);
        }
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let centred = xf.broadcast_sub(&xf.mean_keepdim(candle_core::D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(candle_core::D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.inner.eps())?.sqrt()?)?.to_dtype(dtype)?;
        let scaled = normed.broadcast_mul(self.inner.weight())?;
        match self.inner.bias() {
            Some(b) => scaled.broadcast_add(b),
            None => Ok(scaled),
        }
    }
}

pub fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<LayerNorm> {
    Ok(LayerNorm { inner: candle_nn::layer_norm(size, candle_nn::LayerNormConfig { eps, ..Default::default() }, vb)? })
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// The tracked path normalises as the fused kernel does.
    #[test]
    fn tracked_layer_norm_matches_the_kernel() {
        let dev = Device::Cpu;
        let vb = VarBuilder::from_tensors(
            [
                ("weight".to_string(), Tensor::new(&[1.5f32, -0.5, 2.0], &dev).unwrap()),
                ("bias".to_string(), Tensor::new(&[0.1f32, 0.2, -0.3], &dev).unwrap()),
            ]
            .into_iter()
            .collect(),
            DType::F32,
            &dev,
        );
        let ln = layer_norm(3, 1e-5, vb).unwrap();
        let x = Var::new(&[[1.0f32, 4.0, -2.0], [0.3, 0.3, 0.9]], &dev).unwrap();
        let fused = ln.forward(&x.as_tensor().detach()).unwrap().to_vec2::<f32>().unwrap();
        let tracked = ln.forward(x.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        for (a, b) in fused.iter().flatten().zip(tracked.iter().flatten()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    /// The fused half-precision path stays within f16 rounding of the f32 one.
    #[test]
    fn fused_half_precision_rms_norm_matches_f32() {
        let dev = Device::Cpu;
        let w = (Tensor::randn(0f32, 0.1, 64, &dev).unwrap() + 1.0).unwrap();
        let x = Tensor::randn(0f32, 2.0, (1, 3, 64), &dev).unwrap();
        let exact = RmsNorm { scale: w.clone(), eps: 1e-5, gemma: false }.forward(&x).unwrap();
        let half =
            RmsNorm { scale: w.to_dtype(DType::F16).unwrap(), eps: 1e-5, gemma: false }.forward(&x.to_dtype(DType::F16).unwrap()).unwrap();
        assert_eq!(half.dtype(), DType::F16);
        let err = (half.to_dtype(DType::F32).unwrap() - &exact).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(err < 1e-2, "fused f16 rms norm off by {err}");
    }
}
