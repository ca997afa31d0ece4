//! LLaVA-Rad's native release, assembled into one LLaVA model:
//! - `base/`: the Vicuna LM (safetensors, or `pytorch_model-*.bin` shards with an index);
//! - `llava-rad/`: `config.json` (Llama fields + `mm_*`), the PEFT LoRA adapter merged at load
//!   (`W += alpha/r * B A`), the projector in `non_lora_trainables.bin`, and the BiomedCLIP-CXR
//!   open_clip checkpoint whose `state_dict` holds the timm trunk (`module.visual.trunk.*`).
//!
//! Keys land under the canonical LLaVA names (`language_model.*`, `multi_modal_projector.*`) and
//! `vision_tower.trunk.*` for the DINOv2-style tower.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::lora::{self, AdapterConfig};
use super::pickle::read_tensors;
use super::{TensorStore, safetensors_files};
use crate::models::activation::Activation;
use crate::models::clip_vision::VisionFeature;
use crate::models::config::{generation_eos_ids, read_json};
use crate::models::dino_vision;
use crate::models::error::{ModelError, Result};
use crate::models::linear::WeightFormat;
use crate::models::llama_text;
use crate::models::llava::{Config, FeatureSelect, IMAGE_PLACEHOLDER, Llava, ProjectorKind, VisionConfig};

/// The real release's file names, the fallback when `config.json` names paths that do not exist.
const REAL_VISION_CHECKPOINT: &str = "biomedclipcxr_518_checkpoint.pt";
const REAL_VISION_CONFIG: &str = "biomedclipcxr_518.json";

/// Where the three parts are.
#[derive(Debug, Clone, PartialEq)]
pub struct LlavaRadParts {
    /// The Vicuna directory.
    pub base: PathBuf,
    /// The `microsoft/llava-rad` directory (config, adapter, projector, vision files).
    pub repo: PathBuf,
    pub vision_checkpoint: PathBuf,
    pub vision_config: PathBuf,
}

/// Flags that name parts explicitly, overriding what the directory layout implies.
#[derive(Debug, Clone, Default)]
pub struct PartOverrides {
    pub base: Option<PathBuf>,
    pub vision_checkpoint: Option<PathBuf>,
}

/// `config.json` of the llava-rad directory: the LM's Llama fields plus the `mm_*` fields.
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    #[serde(flatten)]
    pub text: llama_text::RawConfig,
    pub mm_vision_tower_config: Option<String>,
    pub mm_vision_tower_checkpoint: Option<String>,
    #[serde(default = "d_select_layer")]
    pub mm_vision_select_layer: i64,
    #[serde(default = "d_select_feature")]
    pub mm_vision_select_feature: String,
    #[serde(default = "d_projector")]
    pub mm_projector_type: String,
    pub mm_hidden_size: Option<usize>,
    #[serde(default)]
    pub mm_use_im_start_end: bool,
}

fn d_select_layer() -> i64 {
    -2
}
fn d_select_feature() -> String {
    "patch".into()
}
fn d_projector() -> String {
    "mlp2x_gelu".into()
}

/// The open_clip model config (`biomedclipcxr_518.json`).
#[derive(Debug, Clone, Deserialize)]
struct OpenClipConfig {
    vision_cfg: OpenClipVision,
}

#[derive(Debug, Clone, Deserialize)]
struct OpenClipVision {
    timm_model_name: Option<String>,
    image_size: Option<usize>,
    width: Option<usize>,
    layers: Option<usize>,
    head_width: Option<usize>,
    mlp_ratio: Option<f64>,
    patch_size: Option<usize>,
}

/// Resolves a file named in `config.json`: as given, else by its base name inside `repo`, else
/// the real release's name.
fn resolve_named(repo: &Path, named: Option<&str>, real: &str) -> PathBuf {
    if let Some(n) = named {
        let p = PathBuf::from(n);
        if p.is_absolute() && p.exists() {
            return p;
        }
        if let Some(base) = p.file_name() {
            let inside = repo.join(base);
            if inside.exists() {
                return inside;
            }
        }
    }
    repo.join(real)
}

impl LlavaRadParts {
    /// Whether `dir` is a LLaVA-Rad layout: `dir/llava-rad/` (beside `dir/base/`), or `dir`
    /// itself holding the adapter and projector.
    pub fn looks_like(dir: &Path) -> bool {
        dir.join("llava-rad").join("adapter_config.json").exists()
            || (dir.join("adapter_config.json").exists() && dir.join("non_lora_trainables.bin").exists())
    }

    pub fn locate(dir: &Path, overrides: &PartOverrides) -> Result<Self> {
        let (repo, default_base) = if dir.join("llava-rad").is_dir() {
            (dir.join("llava-rad"), Some(dir.join("base")))
        } else {
            (dir.to_path_buf(), dir.parent().map(|p| p.join("base")).filter(|p| p.is_dir()))
        };
        let base = overrides.base.clone().or(default_base).ok_or_else(|| ModelError::MissingFile {
            path: dir.join("base"),
            hint: " (LLaVA-Rad needs its Vicuna base model: put it in base/ or pass --base DIR)".into(),
        })?;
        if !base.is_dir() {
            return Err(ModelError::MissingFile { path: base, hint: " (the Vicuna base model directory)".into() });
        }
        let raw: RawConfig = read_json(&repo.join("config.json"))?;
        let vision_checkpoint = overrides
            .vision_checkpoint
            .clone()
            .unwrap_or_else(|| resolve_named(&repo, raw.mm_vision_tower_checkpoint.as_deref(), REAL_VISION_CHECKPOINT));
        let vision_config = resolve_named(&repo, raw.mm_vision_tower_config.as_deref(), REAL_VISION_CONFIG);
        for (path, what) in [(&vision_checkpoint, "the vision-tower checkpoint"), (&vision_config, "the vision-tower config")] {
            if !path.exists() {
                return Err(ModelError::MissingFile {
                    path: path.clone(),
                    hint: format!(" ({what}, named by {})", repo.join("config.json").display()),
                });
            }
        }
        Ok(Self { base, repo, vision_checkpoint, vision_config })
    }
}

/// A plain `LlamaForCausalLM` key under the LLaVA prefix: `model.*` -> `language_model.model.*`,
/// `lm_head.*` -> `language_model.lm_head.*`.
fn base_canonical(key: &str) -> String {
    format!("language_model.{key}")
}

/// Loads LLaVA-Rad's native release (Vicuna base + LoRA adapter + projector + open_clip
/// trunk) as a [`Llava`], merging the adapter at load time.
pub fn load(parts: &LlavaRadParts, dtype: DType, device: &Device) -> Result<Llava> {
    load_as(parts, dtype, device, WeightFormat::Dense)
}

/// [`load`] with the decoder's projections held as `format`.
pub fn load_as(parts: &LlavaRadParts, dtype: DType, device: &Device, format: WeightFormat) -> Result<Llava> {
    let (cfg, store) = assemble(parts, dtype)?;
    Llava::from_store(cfg, store, dtype, device, format)
        .map_err(|e| ModelError::Checkpoint { path: parts.repo.clone(), message: e.to_string() })
}

/// The assembled config and tensors (LoRA already merged, in `dtype`).
pub fn assemble(parts: &LlavaRadParts, dtype: DType) -> Result<(Config, TensorStore)> {
    let config_path = parts.repo.join("config.json");
    let raw: RawConfig = read_json(&config_path)?;
    let cfg_err = |message: String| ModelError::Config { file: config_path.clone(), message };
    if raw.mm_projector_type != "mlp2x_gelu" {
        return Err(cfg_err(format!("mm_projector_type {:?} is not supported (mlp2x_gelu)", raw.mm_projector_type)));
    }
    if raw.mm_use_im_start_end {
        return Err(cfg_err("mm_use_im_start_end = true is not supported".into()));
    }
    let select = match raw.mm_vision_select_feature.as_str() {
        "patch" => FeatureSelect::Default,
        "cls_patch" => FeatureSelect::Full,
        other => return Err(cfg_err(format!("mm_vision_select_feature {other:?} is not supported (patch, cls_patch)"))),
    };
    let (select_layer, mm_hidden) = (raw.mm_vision_select_layer, raw.mm_hidden_size);
    let mut text = raw.text.resolve().map_err(cfg_err)?;
    for id in generation_eos_ids(&parts.base)? {
        if !text.eos_token_ids.contains(&id) {
            text.eos_token_ids.push(id);
        }
    }

    let mut store = TensorStore::empty();
    load_base(&mut store, &parts.base)?;

    let adapter_cfg_path = parts.repo.join("adapter_config.json");
    let adapter_cfg = AdapterConfig::load(&adapter_cfg_path)?;
    let adapter_path = parts.repo.join("adapter_model.bin");
    let adapter_st = parts.repo.join("adapter_model.safetensors");
    let (adapter, adapter_file) = if adapter_st.exists() {
        let t = candle_core::safetensors::load(&adapter_st, &candle_core::Device::Cpu)
            .map_err(|e| ModelError::Checkpoint { path: adapter_st.clone(), message: e.to_string() })?;
        (t.into_iter().collect::<Vec<_>>(), adapter_st)
    } else {
        (read_tensors(&adapter_path, None)?, adapter_path)
    };
    lora::merge(&mut store, &adapter, &adapter_file, &adapter_cfg, base_canonical, dtype)?;

    let projector_path = parts.repo.join("non_lora_trainables.bin");
    let projector: Vec<(String, String, Tensor)> = read_tensors(&projector_path, None)?
        .into_iter()
        .filter_map(|(key, t)| {
            let rest = &key[key.find("mm_projector.")? + "mm_projector.".len()..];
            let canonical = if let Some(r) = rest.strip_prefix("0.") {
                format!("multi_modal_projector.linear_1.{r}")
            } else if let Some(r) = rest.strip_prefix("2.") {
                format!("multi_modal_projector.linear_2.{r}")
            } else {
                return None;
            };
            Some((canonical, key, t))
        })
        .collect();
    if projector.len() != 4 {
        return Err(ModelError::Checkpoint {
            path: projector_path,
            message: format!("expected mm_projector.{{0,2}}.{{weight,bias}}, found {} projector tensors", projector.len()),
        });
    }
    store.add_loaded(&projector_path, projector)?;

    let trunk: Vec<(String, String, Tensor)> = read_tensors(&parts.vision_checkpoint, Some("state_dict"))?
        .into_iter()
        .filter_map(|(key, t)| {
            // DDP saves carry `module.`; a plain open_clip save does not.
            let rest = key.strip_prefix("module.").unwrap_or(&key).strip_prefix("visual.trunk.")?.to_string();
            Some((format!("vision_tower.trunk.{rest}"), key, t))
        })
        .collect();
    if trunk.is_empty() {
        return Err(ModelError::Checkpoint {
            path: parts.vision_checkpoint.clone(),
            message: "no module.visual.trunk.* tensors in its state_dict".into(),
        });
    }
    let shapes: HashMap<String, Vec<usize>> = trunk.iter().map(|(k, _, t)| (k.clone(), t.dims().to_vec())).collect();
    store.add_loaded(&parts.vision_checkpoint, trunk)?;
    let vision = vision_config(&parts.vision_config, &shapes)?;
    if let Some(h) = mm_hidden
        && h != vision.width
    {
        return Err(cfg_err(format!("mm_hidden_size {h} but the vision trunk is {} wide", vision.width)));
    }
    let feature = VisionFeature::from_hf_index(select_layer, vision.depth).map_err(cfg_err)?;
    let cfg = Config {
        text,
        vision: VisionConfig::Dino(vision),
        image_token_id: IMAGE_PLACEHOLDER,
        projector_activation: Activation::Gelu,
        projector_bias: true,
        projector: ProjectorKind::Mlp2xGelu,
        feature,
        select,
    };
    Ok((cfg, store))
}

/// The Vicuna weights: safetensors when present, else the PyTorch pickles (by index, or one
/// file). `rotary_emb.inv_freq` buffers are derived values and are skipped.
fn load_base(store: &mut TensorStore, base: &Path) -> Result<()> {
    let has_safetensors = base.join("model.safetensors.index.json").exists()
        || std::fs::read_dir(base)
            .map_err(|source| ModelError::Io { path: base.to_path_buf(), source })?
            .filter_map(|e| e.ok())
            .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"));
    if has_safetensors {
        for file in safetensors_files(base)? {
            store.add_safetensors(&file, base_canonical)?;
        }
        return Ok(());
    }
    let index = base.join("pytorch_model.bin.index.json");
    let shards: Vec<PathBuf> = if index.exists() {
        #[derive(Deserialize)]
        struct Index {
            weight_map: HashMap<String, String>,
        }
        let parsed: Index = read_json(&index)?;
        let mut names: Vec<String> = parsed.weight_map.into_values().collect();
        names.sort();
        names.dedup();
        names.into_iter().map(|n| base.join(n)).collect()
    } else {
        vec![base.join("pytorch_model.bin")]
    };
    for shard in shards {
        let tensors = read_tensors(&shard, None)?
            .into_iter()
            .filter(|(k, _)| !k.ends_with("rotary_emb.inv_freq"))
            .map(|(k, t)| (base_canonical(&k), k, t))
            .collect();
        store.add_loaded(&shard, tensors)?;
    }
    Ok(())
}

/// The trunk's architecture: explicit open_clip fields when present, else the known timm model,
/// checked against the tensor shapes (the head count is the one thing shapes cannot tell).
fn vision_config(path: &Path, shapes: &HashMap<String, Vec<usize>>) -> Result<dino_vision::Config> {
    let raw: OpenClipConfig = read_json(path)?;
    let v = raw.vision_cfg;
    let err = |message: String| ModelError::Config { file: path.to_path_buf(), message };
    let known_dinov2_base = v.timm_model_name.as_deref().is_some_and(|n| n.starts_with("vit_base_patch14_dinov2"));
    let (width, depth, head_width, mlp_ratio, patch) = match (v.width, v.layers, v.head_width) {
        (Some(w), Some(l), Some(hw)) => (w, l, hw, v.mlp_ratio.unwrap_or(4.0), v.patch_size.unwrap_or(14)),
        _ if known_dinov2_base => (768, 12, 64, 4.0, 14),
        _ => {
            return Err(err(format!(
                "vision_cfg names timm model {:?}, whose architecture radlens does not know; add width, layers, head_width, patch_size",
                v.timm_model_name
            )));
        }
    };
    let image_size = v.image_size.ok_or_else(|| err("vision_cfg.image_size is missing".into()))?;
    if head_width == 0 || width % head_width != 0 {
        return Err(err(format!("width {width} does not split into heads of {head_width}")));
    }
    let cfg = dino_vision::Config {
        width,
        depth,
        num_heads: width / head_width,
        mlp_hidden: (width as f64 * mlp_ratio).round() as usize,
        patch_size: patch,
        image_size,
        pos_grid: image_size / patch,
        layer_norm_eps: 1e-6,
        final_norm: false,
    };
    let blocks = shapes
        .keys()
        .filter_map(|k| k.strip_prefix("vision_tower.trunk.blocks.")?.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |m| m + 1);
    let checks = [
        ("vision_tower.trunk.cls_token", vec![1, 1, cfg.width]),
        ("vision_tower.trunk.pos_embed", vec![1, cfg.grid() * cfg.grid() + 1, cfg.width]),
        ("vision_tower.trunk.patch_embed.proj.weight", vec![cfg.width, 3, cfg.patch_size, cfg.patch_size]),
        ("vision_tower.trunk.blocks.0.mlp.fc1.weight", vec![cfg.mlp_hidden, cfg.width]),
    ];
    for (name, want) in checks {
        match shapes.get(name) {
            Some(got) if *got == want => {}
            Some(got) => {
                return Err(err(format!(
                    "{name} has shape {got:?} but this config implies {want:?} (image_size {image_size}: no pos_embed interpolation is done)"
                )));
            }
            None => return Err(err(format!("the checkpoint has no {name}"))),
        }
    }
    if blocks != cfg.depth {
        return Err(err(format!("config says {} blocks, the checkpoint has {blocks}", cfg.depth)));
    }
    Ok(cfg)
}
