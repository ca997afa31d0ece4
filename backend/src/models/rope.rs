//! Rotary position embeddings in the rotate-half (non-interleaved) layout. Tables are computed
//! in f32 for the positions at hand, never sized to `max_position_embeddings`.

use candle_core::{DType, Device, Tensor};

/// `inv_freq = theta^(-2i/d) / factor` (linear RoPE scaling divides the frequencies).
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    inv_freq: Tensor, // [1, head_dim / 2] f32
}

impl RotaryEmbedding {
    pub fn new(head_dim: usize, theta: f64, linear_factor: f64, device: &Device) -> candle_core::Result<Self> {
        let half = head_dim / 2;
        // As transformers: the exponent in f32, the power in f32.
        let inv_freq: Vec<f32> =
            (0..half).map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32) / linear_factor as f32).collect();
        Ok(Self { inv_freq: Tensor::from_vec(inv_freq, (1, half), device)? })
    }

    /// cos/sin for positions `start .. start + len`, in `dtype`.
    pub fn tables(&self, start: usize, len: usize, dtype: DType) -> candle_core::Result<RopeTables> {
        let positions =
            Tensor::arange(start as u32, (start + len) as u32, self.inv_freq.device())?.to_dtype(DType::F32)?.reshape((len, 1))?;
        let freqs = positions.matmul(&self.inv_freq)?; // [len, half]
        Ok(RopeTables { cos: freqs.cos()?.to_dtype(dtype)?, sin: freqs.sin()?.to_dtype(dtype)? })
    }
}

/// The cos/sin of one forward's positions, shared by every layer of one RoPE kind.
#[derive(Debug, Clone)]
pub struct RopeTables {
    cos: Tensor,
    sin: Tensor,
}

impl RopeTables {
    /// Rotates `x` `[1, heads, seq, head_dim]`. candle's fused kernel has no backward: a forward
    /// tracked for gradients (Grad-CAM) takes the composed rotation, which computes the same.
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.track_op() {
            return candle_nn::rotary_emb::rope_slow(&x.contiguous()?, &self.cos, &self.sin);
        }
        candle_nn::rotary_emb::rope(&x.contiguous()?, &self.cos, &self.sin)
    }
}
