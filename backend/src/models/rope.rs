//! Rotary position embeddings in the rotate-half (non-interleaved) layout. Tables are computed
//! in f32 for the positions at hand, never sized to `max_position_embeddings`.

use candle_core::{DType, Device, Tensor};

/// `inv_freq = theta^(-2i/d) / factor` (linear RoPE scaling divides the frequencies).
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    inv_freq: Tensor, // [1, head_dim / 2] f32
    inv_freq_values: Vec<f32>,
}

impl RotaryEmbedding {
    pub fn new(head_dim: usize, theta: f64, linear_factor: f64, device: &Device) -> candle_core::Result<Self> {
        let half = head_dim / 2;
        // As transformers: the exponent in f32, the power in f32.
        let inv_freq: Vec<f32> =
            (0..half).map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32) / linear_factor as f32).collect();
        Ok(Self { inv_freq: Tensor::from_vec(inv_freq.clone(), (1, half), device)?, inv_freq_values: inv_freq })
    }

    /// The frequencies, `head_dim / 2` of them.
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq_values
    }

    pub fn device(&self) -> &Device {
        self.inv_freq.device()
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
    /// Tables from rotation angles `[len, head_dim / 2]` f32 (row-major), for position schemes
    /// other than one position per row (Qwen2.5-VL's multimodal and 2D rotary). As transformers,
    /// the angles are products in f32 and cos/sin are taken in f32 before the cast to `dtype`.
    pub fn from_angles(angles: Vec<f32>, len: usize, half: usize, dtype: DType, device: &Device) -> candle_core::Result<Self> {
        let freqs = Tensor::from_vec(angles, (len, half), device)?;
        Ok(Self { cos: freqs.cos()?.to_dtype(dtype)?, sin: freqs.sin()?.to_dtype(dtype)? })
    }

    /// Rotates `x` `[1, heads, seq, head_dim]`. candle's fused kernel has no backward: a forward
    /// tracked for gradients (Grad-CAM) takes the composed rotation, which computes the same.
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.track_op() {
            return candle_nn::rotary_emb::rope_slow(&x.contiguous()?, &self.cos, &self.sin);
        }
        candle_nn::rotary_emb::rope(&x.contiguous()?, &self.cos, &self.sin)
    }
}
