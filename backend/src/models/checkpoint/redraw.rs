//! The weight re-draws of the model-randomisation sanity check (grounding spec G5, after Adebayo
//! et al., NeurIPS 2018): every linear weight of the top `k` language-model layers (and, at the
//! last step, of the vision tower) replaced by draws from `Normal(0, std(W))`, seeded per
//! tensor, so a cascade's steps re-draw a layer the same way each time. It edits a checkpoint's
//! canonical tensors before the model is built; the model code never knows.

use std::hash::{DefaultHasher, Hash, Hasher};

use candle_core::{DType, Device, Tensor};

use super::TensorStore;
use super::random::normal_values;
use crate::models::error::{ModelError, Result};

/// The decoder layers' canonical prefix: LLaVA and Gemma3's, then Qwen2.5-VL's.
const LM_LAYERS: [&str; 2] = ["language_model.model.layers.", "model.layers."];
/// The vision tower's: LLaVA and Gemma3's, Qwen2.5-VL's. Qwen's `visual.merger.` is its
/// projector, left like LLaVA's `multi_modal_projector`.
const VISION_TOWER: [&str; 2] = ["vision_tower.", "visual."];
const QWEN_MERGER: &str = "visual.merger.";

/// Which weights one cascade step re-draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redraw {
    /// Re-draw layers `lm_layers - top_lm_layers .. lm_layers` of the language model.
    pub top_lm_layers: usize,
    pub lm_layers: usize,
    /// Also re-draw the vision tower.
    pub vision: bool,
    pub seed: u64,
}

impl Redraw {
    /// Whether the canonical tensor `name` is re-drawn: a `.weight` in a re-drawn block (only
    /// matrices are linear weights; norms and biases are left, see [`TensorStore::redraw`]).
    pub fn covers(&self, name: &str) -> bool {
        if !name.ends_with(".weight") {
            return false;
        }
        if let Some(rest) = LM_LAYERS.iter().find_map(|p| name.strip_prefix(p)) {
            return rest.split('.').next().and_then(|i| i.parse::<usize>().ok()).is_some_and(|i| i + self.top_lm_layers >= self.lm_layers);
        }
        self.vision && VISION_TOWER.iter().any(|p| name.starts_with(p)) && !name.starts_with(QWEN_MERGER)
    }

    fn seed_of(&self, name: &str) -> u64 {
        let mut h = DefaultHasher::new();
        (self.seed, name).hash(&mut h);
        h.finish()
    }
}

/// The population standard deviation (numpy's default, `ddof = 0`).
fn std_dev(values: &[f32]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    (values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n).sqrt()
}

impl TensorStore {
    /// Re-draws every linear weight `redraw` covers (2-D `.weight` tensors; convolutions and
    /// embeddings outside the blocks are not linear weights); returns how many were re-drawn.
    pub fn redraw(&mut self, redraw: &Redraw) -> Result<usize> {
        let mut names: Vec<String> = self.names().filter(|n| redraw.covers(n)).cloned().collect();
        names.sort();
        let mut count = 0;
        for name in names {
            let err = |e: candle_core::Error| ModelError::Invalid(format!("re-drawing {name}: {e}"));
            let (tensor, _, _) = self.load(&name, &Device::Cpu).map_err(err)?;
            if tensor.rank() != 2 {
                continue;
            }
            let values: Vec<f32> = tensor.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1()).map_err(err)?;
            let drawn = normal_values(redraw.seed_of(&name), values.len(), 0.0, std_dev(&values) as f32);
            let new = Tensor::from_vec(drawn, tensor.shape(), &Device::Cpu).and_then(|t| t.to_dtype(tensor.dtype())).map_err(err)?;
            self.replace(&name, new)?;
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_covers_the_top_layers_linear_weights_and_the_tower_only_when_asked() {
        let step = Redraw { top_lm_layers: 2, lm_layers: 4, vision: false, seed: 0 };
        assert!(step.covers("language_model.model.layers.3.self_attn.q_proj.weight"));
        assert!(step.covers("language_model.model.layers.2.mlp.down_proj.weight"));
        assert!(!step.covers("language_model.model.layers.1.mlp.down_proj.weight"));
        assert!(!step.covers("language_model.model.layers.3.self_attn.q_proj.bias"));
        assert!(!step.covers("language_model.model.embed_tokens.weight"));
        assert!(!step.covers("vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"));
        assert!(Redraw { vision: true, ..step }.covers("vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"));
        assert!(Redraw { vision: true, ..step }.covers("vision_tower.trunk.blocks.0.attn.qkv.weight"));
        assert!(!Redraw { vision: true, ..step }.covers("multi_modal_projector.linear_1.weight"));
        // Qwen2.5-VL's canonical names.
        assert!(step.covers("model.layers.3.self_attn.q_proj.weight"));
        assert!(!step.covers("model.layers.1.self_attn.q_proj.weight"));
        assert!(!step.covers("model.embed_tokens.weight"));
        assert!(Redraw { vision: true, ..step }.covers("visual.blocks.0.attn.qkv.weight"));
        assert!(!step.covers("visual.blocks.0.attn.qkv.weight"));
        assert!(!Redraw { vision: true, ..step }.covers("visual.merger.mlp.0.weight"));
    }

    fn store(weight: &Tensor) -> TensorStore {
        let norm = Tensor::ones(30, DType::F32, &Device::Cpu).unwrap();
        let mut s = TensorStore::empty();
        let entries = vec![
            ("language_model.model.layers.1.mlp.up_proj.weight".into(), "up1".into(), weight.clone()),
            ("language_model.model.layers.1.input_layernorm.weight".into(), "norm1".into(), norm),
            ("language_model.model.layers.0.mlp.up_proj.weight".into(), "up0".into(), weight.clone()),
        ];
        s.add_loaded(std::path::Path::new("in-memory"), entries).unwrap();
        s
    }

    fn values(s: &TensorStore, name: &str) -> Vec<f32> {
        s.load(name, &Device::Cpu).unwrap().0.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn redrawn_weights_keep_shape_and_spread_repeat_per_seed_and_leave_the_rest() {
        let original: Vec<f32> = (0..600).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let weight = Tensor::from_vec(original.clone(), (20, 30), &Device::Cpu).unwrap();
        let step = Redraw { top_lm_layers: 1, lm_layers: 2, vision: false, seed: 7 };
        let (mut a, mut b) = (store(&weight), store(&weight));
        assert_eq!(a.redraw(&step).unwrap(), 1, "only layer 1's matrix; its norm is not a linear weight");
        b.redraw(&step).unwrap();
        let name = "language_model.model.layers.1.mlp.up_proj.weight";
        let drawn = values(&a, name);
        assert_eq!(a.load(name, &Device::Cpu).unwrap().0.dims(), &[20, 30]);
        assert_ne!(drawn, original);
        assert_eq!(drawn, values(&b, name), "the same seed draws the same values");
        assert!((std_dev(&drawn) / std_dev(&original) - 1.0).abs() < 0.15, "N(0, std(W)) keeps the spread");
        assert_eq!(values(&a, "language_model.model.layers.0.mlp.up_proj.weight"), original);
        assert_eq!(values(&a, "language_model.model.layers.1.input_layernorm.weight"), vec![1.0; 30]);
        let mut c = store(&weight);
        c.redraw(&Redraw { seed: 8, ..step }).unwrap();
        assert_ne!(values(&c, name), drawn, "another seed, other draws");
    }

    #[test]
    fn population_std_as_numpy() {
        // numpy.std([1, 2, 3, 4]) = sqrt(1.25)
        assert!((std_dev(&[1.0, 2.0, 3.0, 4.0]) - 1.25f64.sqrt()).abs() < 1e-12);
    }
}
