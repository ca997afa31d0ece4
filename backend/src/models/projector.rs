//! LLaVA's multimodal projectors: llava-hf's `linear_2(gelu(linear_1(x)))` (mlp2x_gelu) and
//! MAIRA-2's `layers` (`Linear(Dv, Dt)`, then `projector_n_layers - 1` x (GELU, `Linear(Dt, Dt)`),
//! an `nn.Sequential` whose Linears sit at indices 0, 2, 4, ...). Exact-erf GELU.

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

/// MAIRA-2's `Maira2MultiModalProjector`: `layers.0`, then (act, `layers.{2i}`) for i in 1..n.
#[derive(Debug, Clone)]
pub struct SequentialMlp {
    layers: Vec<Linear>,
    activation: Activation,
}

impl SequentialMlp {
    /// `vb` points at `multi_modal_projector`; `n_layers` Linears (`projector_n_layers`).
    pub fn load(
        vision_hidden: usize,
        text_hidden: usize,
        n_layers: usize,
        bias: bool,
        activation: Activation,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let layers = (0..n_layers)
            .map(|i| {
                let fan_in = if i == 0 { vision_hidden } else { text_hidden };
                candle_nn::linear_b(fan_in, text_hidden, bias, vb.pp("layers").pp(2 * i))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { layers, activation })
    }

    /// Each Linear's output, before the activation that follows it (a debugging intermediate).
    pub fn linear_outputs(&self, x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let mut outs: Vec<Tensor> = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let input = if i == 0 { x.clone() } else { self.activation.apply(&outs[i - 1])? };
            outs.push(layer.forward(&input)?);
        }
        Ok(outs)
    }
}

impl Module for SequentialMlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = self.layers[0].forward(x)?;
        for layer in &self.layers[1..] {
            h = layer.forward(&self.activation.apply(&h)?)?;
        }
        Ok(h)
    }
}

/// Which projector a LLaVA-family model carries.
#[derive(Debug, Clone)]
pub enum Projector {
    Mlp2xGelu(Mlp2xGelu),
    Sequential(SequentialMlp),
}

impl Module for Projector {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Mlp2xGelu(p) => p.forward(x),
            Self::Sequential(p) => p.forward(x),
        }
    }
}
