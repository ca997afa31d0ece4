//! The activations the supported models use, by their config names.

use candle_core::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)` (CLIP).
    QuickGelu,
    /// Exact (erf) GELU.
    Gelu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`: SigLIP, Gemma).
    GeluTanh,
    Silu,
}

impl Activation {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "quick_gelu" => Ok(Self::QuickGelu),
            "gelu" => Ok(Self::Gelu),
            "gelu_pytorch_tanh" | "gelu_new" => Ok(Self::GeluTanh),
            "silu" | "swish" => Ok(Self::Silu),
            other => Err(format!("activation {other:?} is not supported (quick_gelu, gelu, gelu_pytorch_tanh, silu)")),
        }
    }

    pub fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            Self::Gelu => x.gelu_erf(),
            // candle's `gelu` is the tanh approximation.
            Self::GeluTanh => x.gelu(),
            Self::Silu => x.silu(),
        }
    }
}
