//! The language model's linear layers, dense or 8-bit.
//!
//! `--quantize q8` holds the decoder's projection weights as GGML Q8_0 blocks (32 weights and
//! one f16 scale per block: 8.5 bits per weight), as the prototype's 8-bit loading did, so a 7B
//! model fits a 16 GB GPU. Each weight is quantised as it is loaded, so the dense copy of the
//! whole model never exists on the device. Embeddings, the LM head and the vision tower stay
//! dense (bitsandbytes' 8-bit loading also skips the LM head).

use std::fmt;
use std::str::FromStr;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

/// How the decoder's projection weights are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// In the model's dtype.
    #[default]
    Dense,
    /// GGML Q8_0 blocks; matmuls run in f32 against them.
    Q8,
}

impl WeightFormat {
    /// The name the manifest and the CLI use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dense => "none",
            Self::Q8 => "q8",
        }
    }
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WeightFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::Dense),
            "q8" | "q8_0" => Ok(Self::Q8),
            other => Err(format!("unknown quantization {other:?} (none, q8)")),
        }
    }
}

/// `y = x W^T + b` with `W` dense or quantised.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

#[derive(Debug, Clone)]
enum Weight {
    Dense(candle_nn::Linear),
    Quantized(QMatMul),
}

impl Linear {
    /// Loads `weight` `[out, in]` (and `bias` `[out]` when `bias`) from `vb`.
    pub fn load(in_dim: usize, out_dim: usize, bias: bool, format: WeightFormat, vb: VarBuilder) -> candle_core::Result<Self> {
        match format {
            WeightFormat::Dense => Ok(Self { weight: Weight::Dense(candle_nn::linear_b(in_dim, out_dim, bias, vb)?), bias: None }),
            WeightFormat::Q8 => {
                let dense = vb.get((out_dim, in_dim), "weight")?;
                let device = dense.device().clone();
                let q = quantize_q8(&dense, &device)?;
                drop(dense);
                let bias = if bias { Some(vb.get(out_dim, "bias")?) } else { None };
                Ok(Self { weight: Weight::Quantized(QMatMul::from_qtensor(q)?), bias })
            }
        }
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self.weight, Weight::Quantized(_))
    }
}

/// Q8_0 needs rows that are whole blocks of 32; every projection of the supported models is.
fn quantize_q8(dense: &Tensor, device: &Device) -> candle_core::Result<QTensor> {
    let in_dim = dense.dim(1)?;
    if in_dim % GgmlDType::Q8_0.block_size() != 0 {
        candle_core::bail!("q8 needs input widths that are multiples of 32, this weight is {:?}", dense.shape());
    }
    // Quantise on the CPU and move the blocks, so no f32 copy of the weight lands on a GPU.
    QTensor::quantize_onto(&dense.to_device(&Device::Cpu)?, GgmlDType::Q8_0, device)
}

/// The f32 weight `[out, in]` a quantised matmul stands for.
fn dequantized(q: &QMatMul, device: &Device) -> candle_core::Result<Tensor> {
    match q {
        QMatMul::QTensor(t) => t.dequantize(device),
        QMatMul::Tensor(w) => w.to_dtype(DType::F32),
        QMatMul::TensorF16(w) => w.to_dtype(DType::F32),
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.weight {
            Weight::Dense(l) => l.forward(x),
            Weight::Quantized(q) => {
                // The quantised kernels take f32 activations; the result goes back to the
                // model's dtype so the rest of the layer is unchanged. They have no backward: a
                // forward tracked for gradients (Grad-CAM) multiplies by the dequantised weight,
                // the same function, one layer at a time.
                let xf = x.to_dtype(DType::F32)?;
                let y = if x.track_op() { xf.broadcast_matmul(&dequantized(q, x.device())?.t()?)? } else { q.forward(&xf)? };
                let y = y.to_dtype(x.dtype())?;
                match &self.bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::checkpoint::random::RandomWeights;

    #[test]
    fn q8_matmul_stays_close_to_the_dense_one() {
        let vb = RandomWeights::var_builder(7, DType::F32, &Device::Cpu);
        let dense = Linear::load(64, 48, true, WeightFormat::Dense, vb.pp("proj")).unwrap();
        let q8 = Linear::load(64, 48, true, WeightFormat::Q8, vb.pp("proj")).unwrap();
        assert!(q8.is_quantized() && !dense.is_quantized());
        let x = Tensor::randn(0f32, 1.0, (1, 5, 64), &Device::Cpu).unwrap();
        let (a, b) = (dense.forward(&x).unwrap(), q8.forward(&x).unwrap());
        assert_eq!(a.dims(), b.dims());
        let err = (&a - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        // Q8_0 keeps ~2-3 significant digits per weight; random errors partly cancel in the sum.
        assert!(err < 0.02 * scale, "q8 error {err} vs output scale {scale}");
        assert!(err > 0.0, "the quantised path must not be the dense one");
    }

    /// Gradients flow through a q8 layer (via its dequantised weight) and match the dense
    /// layer's up to the quantisation error.
    #[test]
    fn q8_layers_pass_gradients() {
        let vb = RandomWeights::var_builder(3, DType::F32, &Device::Cpu);
        let dense = Linear::load(64, 32, false, WeightFormat::Dense, vb.pp("p")).unwrap();
        let q8 = Linear::load(64, 32, false, WeightFormat::Q8, vb.pp("p")).unwrap();
        let x = candle_core::Var::new(Tensor::randn(0f32, 1.0, (1, 3, 64), &Device::Cpu).unwrap().to_vec3::<f32>().unwrap(), &Device::Cpu)
            .unwrap();
        let grad = |l: &Linear| {
            let g = l.forward(x.as_tensor()).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
            g.get(x.as_tensor()).expect("a gradient reaches the input").flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let (a, b) = (grad(&dense), grad(&q8));
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = a.iter().zip(&b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(err < 0.03 * scale, "q8 gradient off by {err} (scale {scale})");
    }

    #[test]
    fn q8_refuses_widths_that_are_not_whole_blocks() {
        let vb = RandomWeights::var_builder(7, DType::F32, &Device::Cpu);
        let err = Linear::load(40, 8, false, WeightFormat::Q8, vb.pp("odd")).unwrap_err().to_string();
        assert!(err.contains("multiples of 32"), "{err}");
    }

    #[test]
    fn weight_format_names_round_trip() {
        for f in [WeightFormat::Dense, WeightFormat::Q8] {
            assert_eq!(f.name().parse::<WeightFormat>().unwrap(), f);
        }
        assert!("q4".parse::<WeightFormat>().is_err());
    }
}
