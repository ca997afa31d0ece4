//! Rotary position embeddings in the rotate-half (non-interleaved) layout, tables in f32.

use candle_core::{DType, Device, Tensor};

/// cos/sin tables `[max_positions, head_dim / 2]` for `inv_freq = theta^(-2i/d) / factor`.
#[derive(Debug, Clone)]
pub struct RotaryTables {
    cos: Tensor,
    sin: Tensor,
}

impl RotaryTables {
    /// `linear_factor` divides the frequencies (linear RoPE scaling; 1.0 for none).
    pub fn new(head_dim: usize, theta: f64, linear_factor: f64, max_positions: usize, dtype: DType, device: &Device) -> candle_core::Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> =
            (0..half).map(|i| (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64) / linear_factor) as f32).collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let positions = Tensor::arange(0u32, max_positions as u32, device)?.to_dtype(DType::F32)?.reshape((max_positions, 1))?;
        let freqs = positions.matmul(&inv_freq)?;
        Ok(Self { cos: freqs.cos()?.to_dtype(dtype)?, sin: freqs.sin()?.to_dtype(dtype)? })
    }

    /// Rotates `x` `[1, heads, seq, head_dim]` whose first row is at absolute position `start`.
    pub fn apply(&self, x: &Tensor, start: usize) -> candle_core::Result<Tensor> {
        let seq = x.dim(2)?;
        let max = self.cos.dim(0)?;
        if start + seq > max {
            candle_core::bail!("position {} is beyond the model's {max} positions", start + seq - 1);
        }
        let cos = self.cos.narrow(0, start, seq)?;
        let sin = self.sin.narrow(0, start, seq)?;
        candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
    }
}
