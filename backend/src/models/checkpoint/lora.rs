//! Merging a PEFT LoRA adapter into base weights at load time: `W += (alpha / r) * B @ A`, in f32.

use std::path::Path;

use candle_core::{DType, Tensor};
use serde::Deserialize;

use super::TensorStore;
use crate::models::config::read_json;
use crate::models::error::{ModelError, Result};

/// The fields of `adapter_config.json` the merge needs.
#[derive(Debug, Clone, Deserialize)]
pub struct AdapterConfig {
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub fan_in_fan_out: bool,
}

impl AdapterConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let cfg: Self = read_json(path)?;
        if cfg.r == 0 {
            return Err(ModelError::Config { file: path.to_path_buf(), message: "r must be positive".into() });
        }
        if cfg.fan_in_fan_out {
            return Err(ModelError::Config { file: path.to_path_buf(), message: "fan_in_fan_out adapters are not supported".into() });
        }
        Ok(cfg)
    }

    /// `alpha / r` (or `alpha / sqrt(r)` for rsLoRA).
    pub fn scale(&self) -> f64 {
        if self.use_rslora { self.lora_alpha / (self.r as f64).sqrt() } else { self.lora_alpha / self.r as f64 }
    }
}

/// Merges every `*.lora_A.weight` / `*.lora_B.weight` pair of `adapter` (PEFT names, e.g.
/// `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`) into `store`. `canonical`
/// maps the stem's weight name (`model.layers.0.self_attn.q_proj.weight`) to the store's name.
/// Returns how many weights were merged.
pub fn merge(
    store: &mut TensorStore,
    adapter: &[(String, Tensor)],
    adapter_path: &Path,
    cfg: &AdapterConfig,
    canonical: impl Fn(&str) -> String,
    target_dtype: DType,
) -> Result<usize> {
    let by_name: std::collections::HashMap<&str, &Tensor> = adapter.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let bad = |message: String| ModelError::Checkpoint { path: adapter_path.to_path_buf(), message };
    let mut merged = 0;
    for (name, a) in adapter {
        let Some(stem) = name.strip_suffix(".lora_A.weight") else { continue };
        let b_name = format!("{stem}.lora_B.weight");
        let b = by_name.get(b_name.as_str()).ok_or_else(|| bad(format!("{name} has no matching {b_name}")))?;
        let base_name = format!("{}.weight", stem.strip_prefix("base_model.model.").unwrap_or(stem));
        let target = canonical(&base_name);
        let (w, _, _) = store.load(&target, &candle_core::Device::Cpu).map_err(|e| bad(format!("{name}: {e}")))?;
        let (a, b, w) = (a.to_dtype(DType::F32)?, b.to_dtype(DType::F32)?, w.to_dtype(DType::F32)?);
        let delta = b.matmul(&a).map_err(|e| bad(format!("{name} x {b_name}: {e}")))?;
        if delta.dims() != w.dims() {
            return Err(bad(format!("B @ A of {stem} has shape {:?} but {target} has {:?}", delta.dims(), w.dims())));
        }
        let merged_w = (w + (delta * cfg.scale())?)?.to_dtype(target_dtype)?;
        store.replace(&target, merged_w)?;
        merged += 1;
    }
    if merged == 0 {
        return Err(bad("no lora_A/lora_B pairs found".into()));
    }
    Ok(merged)
}
