//! Seeded random weights for any canonical tensor name, so benchmarks can build mid-size models
//! without a checkpoint. Scales keep activations O(1): N(0, 1/fan_in) for matrices, 1 + N(0, 0.1)
//! for norm weights, N(0, 0.05) for biases.

use std::hash::{DefaultHasher, Hash, Hasher};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use candle_nn::var_builder::SimpleBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

pub struct RandomWeights {
    seed: u64,
}

impl RandomWeights {
    pub fn var_builder(seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(Self { seed }), dtype, device.clone())
    }
}

impl SimpleBackend for RandomWeights {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        // A per-name seed: the same name gets the same values whatever the load order.
        let mut h = DefaultHasher::new();
        (self.seed, name).hash(&mut h);
        let dims = s.dims().to_vec();
        let is_norm = name.contains("norm") || name.contains("layrnorm");
        let (mean, std) = if is_norm && name.ends_with("weight") {
            (1.0, 0.1)
        } else if name.ends_with("bias") || dims.len() == 1 {
            (0.0, 0.05)
        } else {
            let fan_in: usize = dims[1..].iter().product();
            (0.0, (1.0 / fan_in.max(1) as f32).sqrt())
        };
        if !dev.is_cpu() {
            // Billions of draws: the device's generator takes seconds where the CPU's takes
            // minutes. (Per-name reproducibility only matters for the CPU's tests.)
            return Tensor::randn(mean, std, dims, dev)?.to_dtype(dtype);
        }
        Tensor::from_vec(normal_values(h.finish(), s.elem_count(), mean, std), dims, dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape for {name}")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// `n` seeded draws from N(mean, std^2). (candle's CPU device cannot be seeded.)
pub fn normal_values(seed: u64, n: usize, mean: f32, std: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(mean, std).expect("finite, non-negative std");
    (0..n).map(|_| normal.sample(&mut rng)).collect()
}

/// Every tensor a broadcast zero of its shape: builds a model of any size without memory, to
/// count its parameters.
#[derive(Default, Clone)]
pub struct ShapeOnly {
    elements: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ShapeOnly {
    pub fn var_builder(&self, dtype: DType) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, Device::Cpu)
    }

    /// Elements of every tensor asked for so far.
    pub fn elements(&self) -> usize {
        self.elements.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl SimpleBackend for ShapeOnly {
    fn get(&self, s: Shape, _: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.elements.fetch_add(s.elem_count(), std::sync::atomic::Ordering::Relaxed);
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("shape-only weights need a shape for {name}")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}
