//! Qwen2.5-VL composition: the vision tower ([`super::qwen25_vision`]) -> merged tokens spliced
//! into the `<|image_pad|>` rows -> the Qwen2 decoder ([`super::qwen2_text`]) with multimodal
//! rotary positions.
//!
//! Inputs. `pixel_values` is the resized, normalised image `[1, 3, H, W]` (H and W multiples of
//! 28, not necessarily equal); the tower patchifies it. The image's token grid is
//! `(H / 28, W / 28)` ([`VisionLanguageModel::image_grid`]), and [`Qwen25Vl::encode_image`]
//! returns the features as `[rows, cols, hidden]` so that the grid travels with them into
//! `prefill_from`, which needs it for the rotary positions; the model itself keeps no state of
//! the last image.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::checkpoint::layout::qwen25vl_canonical_name;
use super::checkpoint::{TensorStore, safetensors_files};
use super::config::{generation_eos_ids, read_json};
use super::error::{ModelError, Result};
use super::kv_cache::KvCache;
use super::linear::WeightFormat;
use super::llama_text::LlamaText;
use super::probe::{NoProbe, Probe, SiteName};
use super::qwen2_text::{self, MropePosition, mrope_tables, rope_index};
use super::qwen25_vision::{self, QwenVision, patch_positions};
use super::{GradcamSite, ModelSummary, VisionLanguageModel};

pub const MODEL_TYPE: &str = "qwen2_5_vl";

/// The top level of config.json; the text fields are read from `text_config` when present
/// (transformers 5) and from the top level otherwise (hub configs).
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    pub vision_config: qwen25_vision::RawConfig,
    #[serde(default = "d_image_token")]
    pub image_token_id: u32,
    #[serde(default = "d_vision_start")]
    pub vision_start_token_id: u32,
    #[serde(default = "d_vision_end")]
    pub vision_end_token_id: u32,
    #[serde(default)]
    pub tie_word_embeddings: bool,
}

fn d_image_token() -> u32 {
    151_655
}
fn d_vision_start() -> u32 {
    151_652
}
fn d_vision_end() -> u32 {
    151_653
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub text: qwen2_text::Config,
    pub vision: qwen25_vision::Config,
    pub image_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
}

impl Config {
    /// Parses config.json's value; errors name the field.
    pub fn from_json(value: &serde_json::Value) -> std::result::Result<Self, String> {
        let top = RawConfig::deserialize(value).map_err(|e| e.to_string())?;
        let text_value = value.get("text_config").unwrap_or(value);
        let text = qwen2_text::RawConfig::deserialize(text_value).map_err(|e| format!("text config: {e}"))?;
        let vision = top.vision_config.resolve()?;
        let text = text.resolve(top.tie_word_embeddings)?;
        if vision.out_hidden_size != text.llama.hidden_size {
            return Err(format!(
                "vision_config.out_hidden_size {} differs from the text hidden_size {}",
                vision.out_hidden_size, text.llama.hidden_size
            ));
        }
        Ok(Self {
            text,
            vision,
            image_token_id: top.image_token_id,
            vision_start_token_id: top.vision_start_token_id,
            vision_end_token_id: top.vision_end_token_id,
        })
    }
}

pub struct Qwen25Vl {
    vision: QwenVision,
    text: LlamaText,
    cfg: Config,
}

impl Qwen25Vl {
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Self::load_as(dir, dtype, device, WeightFormat::Dense)
    }

    /// [`Qwen25Vl::load`] with the decoder's projections held as `format`.
    pub fn load_as(dir: &Path, dtype: DType, device: &Device, format: WeightFormat) -> Result<Self> {
        let (cfg, store) = Self::open(dir)?;
        Self::from_store(cfg, store, dtype, device, format)
            .map_err(|e| ModelError::Checkpoint { path: dir.to_path_buf(), message: e.to_string() })
    }

    /// The resolved config and the tensors under canonical names (`visual.*`, `model.*`,
    /// `lm_head.*`), whichever of the hub or transformers 5 layouts the files use.
    pub fn open(dir: &Path) -> Result<(Config, TensorStore)> {
        let config_path = dir.join("config.json");
        let value: serde_json::Value = read_json(&config_path)?;
        let mut cfg = Config::from_json(&value).map_err(|message| ModelError::Config { file: config_path.clone(), message })?;
        for id in generation_eos_ids(dir)? {
            if !cfg.text.llama.eos_token_ids.contains(&id) {
                cfg.text.llama.eos_token_ids.push(id);
            }
        }
        let mut store = TensorStore::empty();
        for file in safetensors_files(dir)? {
            store.add_safetensors(&file, qwen25vl_canonical_name)?;
        }
        Ok((cfg, store))
    }

    pub fn from_store(cfg: Config, store: TensorStore, dtype: DType, device: &Device, format: WeightFormat) -> candle_core::Result<Self> {
        Self::from_var_builder_as(cfg, store.into_var_builder(dtype, device), format)
    }

    pub fn from_var_builder_as(cfg: Config, vb: VarBuilder, format: WeightFormat) -> candle_core::Result<Self> {
        let vision = QwenVision::load(&cfg.vision, vb.pp("visual"))?;
        let text = LlamaText::load(&cfg.text.llama, vb, format)?;
        Ok(Self { vision, text, cfg })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn vision(&self) -> &QwenVision {
        &self.vision
    }

    /// Features `[rows, cols, hidden]` -> the grid and `[tokens, hidden]`. `[tokens, hidden]`
    /// carry no grid: they serve only prompts without image tokens (`rope_index` says so).
    fn grid_of(features: &Tensor) -> Result<(Option<(usize, usize)>, Tensor)> {
        match features.dims() {
            &[rows, cols, hidden] => Ok((Some((rows, cols)), features.reshape((rows * cols, hidden))?)),
            &[_, _] => Ok((None, features.clone())),
            other => Err(ModelError::Shape {
                site: "qwen2_5_vl image features".into(),
                expected: "[rows, cols, hidden] (from encode_image)".into(),
                got: format!("{other:?}"),
            }),
        }
    }

    /// transformers' mrope positions of the whole prompt and its `rope_delta`.
    pub fn positions(&self, input_ids: &[u32], grid: Option<(usize, usize)>) -> Result<(Vec<MropePosition>, i64)> {
        rope_index(input_ids, self.cfg.image_token_id, grid).map_err(ModelError::Invalid)
    }

    /// Index tensors between the tower's merge-unit patch order and row-major order:
    /// `to_row_major` gives, per row-major patch, its unit-order index; else the converse.
    fn order(&self, gh: usize, gw: usize, device: &Device, to_row_major: bool) -> candle_core::Result<Tensor> {
        let positions = patch_positions(gh, gw, self.cfg.vision.spatial_merge_size);
        let mut index = vec![0u32; positions.len()];
        for (unit_order, &(r, c)) in positions.iter().enumerate() {
            let row_major = r * gw + c;
            if to_row_major {
                index[row_major] = unit_order as u32;
            } else {
                index[unit_order] = row_major as u32;
            }
        }
        Tensor::from_vec(index, positions.len(), device)
    }

    /// Runs embeddings at the given positions after what `cache` holds; returns last logits.
    fn run(&self, embeds: &Tensor, positions: &[MropePosition], cache: &mut KvCache, probe: &mut dyn Probe) -> Result<Tensor> {
        let rope = mrope_tables(self.text.rotary(), positions, self.cfg.text.mrope_section, embeds.dtype(), embeds.device())?;
        let hidden = self.text.forward_embeds_rotated(embeds, &rope, cache, probe)?;
        Ok(self.text.last_logits(&hidden)?)
    }
}

impl VisionLanguageModel for Qwen25Vl {
    /// The grid depends on the image: `grid_h`, `grid_w` and `image_tokens` are 0 here; see
    /// [`VisionLanguageModel::image_grid`].
    fn summary(&self) -> ModelSummary {
        ModelSummary {
            architecture: MODEL_TYPE,
            num_layers: self.cfg.text.llama.num_layers,
            num_heads: self.cfg.text.llama.num_heads,
            grid_h: 0,
            grid_w: 0,
            image_token_id: self.cfg.image_token_id,
            image_tokens: 0,
            dtype: self.text.dtype(),
        }
    }

    fn image_grid(&self, pixel_values: &Tensor) -> Result<(usize, usize)> {
        let (gh, gw) = self.vision.patch_grid(pixel_values)?;
        let m = self.cfg.vision.spatial_merge_size;
        Ok((gh / m, gw / m))
    }

    fn eos_token_ids(&self) -> &[u32] {
        &self.cfg.text.llama.eos_token_ids
    }

    fn new_cache(&self) -> KvCache {
        self.text.new_cache()
    }

    /// `[rows, cols, hidden]`: the merged tokens on the image's token grid.
    fn encode_image(&self, pixel_values: &Tensor, probe: &mut dyn Probe) -> Result<Tensor> {
        let (rows, cols) = self.image_grid(pixel_values)?;
        let features = self.vision.forward(pixel_values, probe)?;
        Ok(features.reshape((rows, cols, self.cfg.vision.out_hidden_size))?)
    }

    fn prefill_from(
        &self,
        input_ids: &[u32],
        start: usize,
        features: &Tensor,
        cache: &mut KvCache,
        probe: &mut dyn Probe,
    ) -> Result<Tensor> {
        let (grid, flat) = Self::grid_of(features)?;
        let (positions, delta) = self.positions(input_ids, grid)?;
        let embeds = super::spliced_embeddings(input_ids, start, self.cfg.image_token_id, &flat, |ids| self.text.embed(ids))?;
        let logits = self.run(&embeds, &positions[start..], cache, probe)?;
        cache.position_delta = delta;
        Ok(logits)
    }

    fn decode_step(&self, token: u32, cache: &mut KvCache, probe: &mut dyn Probe) -> Result<Tensor> {
        let embeds = self.text.embed(&[token])?;
        let p = cache.len() as i64 + cache.position_delta;
        self.run(&embeds, &[[p; 3]], cache, probe)
    }

    /// The last vision block, before the merger: positions are the image's patches, 2 x 2 of
    /// them per image token. Its activations are handed out row-major over the patch grid (the
    /// tower runs in merge-unit order) so the CAM pools like Gemma3's.
    fn gradcam_site(&self, pixel_values: &Tensor) -> Result<GradcamSite> {
        Ok(GradcamSite {
            name: SiteName::vision_output(self.cfg.vision.depth.saturating_sub(1)),
            skip: 0,
            patch_grid: self.vision.patch_grid(pixel_values)?,
            pool: self.cfg.vision.spatial_merge_size,
        })
    }

    fn gradcam_activations(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let (gh, gw) = self.vision.patch_grid(pixel_values)?;
        let states = self.vision.hidden_states(pixel_values, &mut NoProbe)?;
        let last = states.last().expect("the embeddings at least");
        let order = self.order(gh, gw, last.device(), true)?;
        Ok(last.index_select(&order, 0)?.unsqueeze(0)?)
    }

    fn features_from_gradcam_block(&self, activations: &Tensor, site: &GradcamSite) -> Result<Tensor> {
        let (gh, gw) = site.patch_grid;
        let units = activations.squeeze(0)?.index_select(&self.order(gh, gw, activations.device(), false)?, 0)?;
        let m = self.cfg.vision.spatial_merge_size;
        Ok(self.vision.merge(&units)?.reshape((gh / m, gw / m, self.cfg.vision.out_hidden_size))?)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Qwen/Qwen2.5-VL-3B-Instruct's config.json as the hub ships it (text at the top level).
    fn hub_3b() -> serde_json::Value {
        json!({
            "model_type": "qwen2_5_vl", "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
            "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 151936, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
            "max_position_embeddings": 128000, "use_sliding_window": false, "sliding_window": 32768,
            "tie_word_embeddings": true, "image_token_id": 151655, "vision_start_token_id": 151652,
            "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                "num_heads": 16, "in_chans": 3, "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2,
                "spatial_patch_size": 14, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
                "tokens_per_second": 2, "temporal_patch_size": 2}
        })
    }

    #[test]
    fn the_hub_3b_config_resolves() {
        let cfg = Config::from_json(&hub_3b()).unwrap();
        assert_eq!(cfg.text.mrope_section, [16, 24, 24]);
        assert_eq!((cfg.text.llama.head_dim, cfg.text.llama.num_kv_heads), (128, 2));
        assert!(cfg.text.llama.tie_word_embeddings && cfg.text.llama.attention_bias && !cfg.text.llama.o_proj_bias);
        assert_eq!(cfg.text.llama.rope_theta, 1e6);
        assert_eq!((cfg.vision.in_channels, cfg.vision.factor(), cfg.vision.window_size / cfg.vision.factor()), (3, 28, 4));
        assert_eq!(cfg.vision.fullatt_block_indexes, vec![7, 15, 23, 31]);
    }

    #[test]
    fn unsupported_settings_name_their_field() {
        let bad = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v = hub_3b();
            edit(&mut v);
            Config::from_json(&v).unwrap_err()
        };
        assert!(bad(&|v| v["rope_scaling"]["mrope_section"] = json!([16, 24, 16])).contains("mrope_section"));
        assert!(bad(&|v| v["use_sliding_window"] = json!(true)).contains("use_sliding_window"));
        assert!(bad(&|v| v["vision_config"]["out_hidden_size"] = json!(1024)).contains("out_hidden_size"));
        assert!(bad(&|v| v["vision_config"]["fullatt_block_indexes"] = json!([32])).contains("fullatt_block_indexes"));
        assert!(bad(&|v| v["rope_scaling"]["type"] = json!("yarn")).contains("yarn"));
        // Both spellings of the type, as some hub configs write them.
        let mut both = hub_3b();
        both["rope_scaling"] = json!({"rope_type": "default", "type": "default", "mrope_section": [16, 24, 24]});
        assert_eq!(Config::from_json(&both).unwrap().text.mrope_section, [16, 24, 24]);
    }
}
