//! LLaVA's multimodal projector: `linear_2(gelu(linear_1(x)))` (mlp2x_gelu), exact-erf GELU.

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::activation::Activation;

#[derive(Debug, Clone)]
pub struct Mlp2xGelu {
    linear_1: Linear,
    linear_2: Linear,
    activation: Activation,
}

impl Mlp2xGelu {
    /// `vb` points at `multi_modal_projector`.
    pub fn load(vision_hidden: usize, text_hidden: usize, bias: bool, activation: Activation, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            linear_1: candle_nn::linear_b(vision_hidden, text_hidden, bias, vb.pp("linear_1"))?,
            linear_2: candle_nn::linear_b(text_hidden, text_hidden, bias, vb.pp("linear_2"))?,
            activation,
        })
    }
}

impl Module for Mlp2xGelu {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.linear_2.forward(&self.activation.apply(&self.linear_1.forward(x)?)?)
    }
}
