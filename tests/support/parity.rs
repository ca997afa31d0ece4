//! Reference cases of `fixtures/reference-v1` and tolerant comparisons that say where they fail.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use super::fixture;

/// fp32 CPU tolerances of the reference README.
pub const LOGITS_TOL: f32 = 1e-4;
pub const ATTN_TOL: f32 = 1e-5;
pub const HIDDEN_TOL: f32 = 1e-4;

pub struct Case {
    pub name: String,
    pub manifest: Value,
    pub tensors: HashMap<String, Tensor>,
}

impl Case {
    pub fn load(model: &str, name: &str) -> Self {
        Self::load_from(&format!("reference-v1/reference/{model}/{name}"), &format!("{model}/{name}"))
    }

    /// A case under `fixtures/<rel>`.
    pub fn load_from(rel: &str, label: &str) -> Self {
        let dir = fixture(rel);
        let manifest = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
        let tensors = candle_core::safetensors::load(dir.join("tensors.safetensors"), &Device::Cpu).unwrap();
        Self { name: label.to_string(), manifest, tensors }
    }

    pub fn t(&self, key: &str) -> &Tensor {
        self.tensors.get(key).unwrap_or_else(|| panic!("{}: no tensor {key}", self.name))
    }

    /// Ids as the engines take them; LLaVA-Rad's `-200` image marker becomes the placeholder id.
    pub fn ids(&self, key: &str) -> Vec<u32> {
        self.t(key)
            .to_dtype(DType::I64)
            .unwrap()
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|x| if x == -200 { radlens::models::llava::IMAGE_PLACEHOLDER } else { x as u32 })
            .collect()
    }
}

/// Max |a - b| with the location of the worst element, so a failure says where.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (i, diff) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .enumerate()
        .fold((0, 0.0f32), |acc, (i, d)| if d > acc.1 || d.is_nan() { (i, d) } else { acc });
    assert!(diff <= tol, "{what}: max abs diff {diff:e} at index {i} (expected {}, got {}), tolerance {tol:e}", want[i], got[i]);
}

pub fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap()
}
