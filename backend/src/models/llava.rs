//! LLaVA-1.5 composition: CLIP tower -> feature block (CLS dropped) -> projector -> spliced into
//! the prompt's `<image>` positions -> Llama. The same composition carries LLaVA-Rad (DINOv2-style
//! trunk) and MAIRA-2 (RAD-DINO with its final LayerNorm, a 4-layer projector, see
//! [`super::maira2`]); several images splice their features in prompt order.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use serde::Deserialize;

use super::checkpoint::{TensorStore, safetensors_files};
use super::clip_vision::{self, Activation, ClipVision, VisionFeature};
use super::config::{generation_eos_ids, read_json};
use super::dino_vision::{self, DinoVision};
use super::error::{ModelError, Result};
use super::linear::WeightFormat;
use super::llama_text::{self, KvCache, LlamaText};
use super::probe::{NoProbe, Probe, SiteName};
use super::projector::{Mlp2xGelu, Projector, SequentialMlp};
use super::{GradcamSite, ModelSummary, VisionLanguageModel};

/// config.json of a llava-hf checkpoint; defaults are transformers' `LlavaConfig` defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    pub text_config: llama_text::RawConfig,
    pub vision_config: clip_vision::RawConfig,
    #[serde(default = "d_image_token", alias = "image_token_id")]
    pub image_token_index: u32,
    #[serde(default = "d_projector_act")]
    pub projector_hidden_act: String,
    #[serde(default = "d_feature_layer")]
    pub vision_feature_layer: serde_json::Value,
    #[serde(default = "d_strategy")]
    pub vision_feature_select_strategy: String,
    #[serde(default = "d_true")]
    pub multimodal_projector_bias: bool,
    /// Older configs keep the tie flag at the top level.
    pub tie_word_embeddings: Option<bool>,
}

fn d_image_token() -> u32 {
    32000
}
fn d_projector_act() -> String {
    "gelu".into()
}
fn d_feature_layer() -> serde_json::Value {
    serde_json::json!(-2)
}
fn d_strategy() -> String {
    "default".into()
}
fn d_true() -> bool {
    true
}

/// Whether the CLS position is kept among the image features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureSelect {
    /// Drop CLS: one image token per patch.
    Default,
    /// Keep CLS.
    Full,
}

/// An image id that no vocabulary holds: LLaVA-Rad's prompts mark the image with `-200`, which is
/// spliced out before any embedding lookup.
pub const IMAGE_PLACEHOLDER: u32 = u32::MAX;

/// The vision tower a LLaVA model carries: CLIP (llava-hf) or the DINOv2-style trunk (LLaVA-Rad).
#[derive(Debug, Clone, PartialEq)]
pub enum VisionConfig {
    Clip(clip_vision::Config),
    Dino(dino_vision::Config),
}

impl VisionConfig {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        match self {
            Self::Clip(c) => c.grid(),
            Self::Dino(c) => c.grid(),
        }
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            Self::Clip(c) => c.hidden_size,
            Self::Dino(c) => c.width,
        }
    }

    pub fn num_layers(&self) -> usize {
        match self {
            Self::Clip(c) => c.num_layers,
            Self::Dino(c) => c.depth,
        }
    }

    pub fn image_size(&self) -> usize {
        match self {
            Self::Clip(c) => c.image_size,
            Self::Dino(c) => c.image_size,
        }
    }
}

pub enum VisionTower {
    Clip(ClipVision),
    Dino(DinoVision),
}

impl VisionTower {
    pub fn num_layers(&self) -> usize {
        match self {
            Self::Clip(t) => t.config().num_layers,
            Self::Dino(t) => t.loaded_blocks(),
        }
    }

    /// Hidden states up to block `blocks` (`[0]` = the embeddings), CLS first.
    pub fn hidden_states(&self, pixel_values: &Tensor, blocks: usize, probe: &mut dyn Probe) -> candle_core::Result<Vec<Tensor>> {
        match self {
            Self::Clip(t) => t.hidden_states(pixel_values, blocks, probe),
            Self::Dino(t) => t.hidden_states(pixel_values, blocks, probe),
        }
    }

    /// The final LayerNorm where the features take it (MAIRA-2), else `x` unchanged.
    pub fn feature_norm(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Clip(_) => Ok(x.clone()),
            Self::Dino(t) => t.feature_norm(x),
        }
    }

    pub fn forward(&self, pixel_values: &Tensor, feature: VisionFeature, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        let mut states = self.hidden_states(pixel_values, feature.blocks_to_run(), probe)?;
        Ok(states.pop().expect("hidden_states holds at least the embeddings"))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub text: llama_text::Config,
    pub vision: VisionConfig,
    pub image_token_id: u32,
    pub projector_activation: Activation,
    pub projector_bias: bool,
    pub projector: ProjectorKind,
    pub feature: VisionFeature,
    pub select: FeatureSelect,
}

/// The projector's layout: llava-hf's `linear_1`/`linear_2`, or MAIRA-2's `layers` with
/// `projector_n_layers` Linears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectorKind {
    Mlp2xGelu,
    Sequential(usize),
}

impl Config {
    /// Image tokens per image.
    pub fn image_tokens(&self) -> usize {
        let patches = self.vision.grid() * self.vision.grid();
        match self.select {
            FeatureSelect::Default => patches,
            FeatureSelect::Full => patches + 1,
        }
    }
}

impl RawConfig {
    pub fn resolve(self) -> std::result::Result<Config, String> {
        let mut text = self.text_config.resolve()?;
        if let Some(tie) = self.tie_word_embeddings {
            text.tie_word_embeddings |= tie;
        }
        let vision = self.vision_config.resolve()?;
        let layer = self
            .vision_feature_layer
            .as_i64()
            .ok_or_else(|| format!("vision_feature_layer = {}: only a single layer index is supported", self.vision_feature_layer))?;
        let select = match self.vision_feature_select_strategy.as_str() {
            "default" => FeatureSelect::Default,
            "full" => FeatureSelect::Full,
            other => return Err(format!("vision_feature_select_strategy {other:?} is not supported (default, full)")),
        };
        Ok(Config {
            feature: VisionFeature::from_hf_index(layer, vision.num_layers)?,
            text,
            vision: VisionConfig::Clip(vision),
            image_token_id: self.image_token_index,
            projector_activation: Activation::parse(&self.projector_hidden_act).map_err(|e| format!("projector_hidden_act: {e}"))?,
            projector_bias: self.multimodal_projector_bias,
            projector: ProjectorKind::Mlp2xGelu,
            select,
        })
    }
}

pub struct Llava {
    vision: VisionTower,
    projector: Projector,
    text: LlamaText,
    cfg: Config,
}

impl Llava {
    /// Loads a llava-hf model directory (`config.json` + safetensors, any of the three layouts).
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Self::load_as(dir, dtype, device, WeightFormat::Dense)
    }

    /// [`Llava::load`] with the decoder's projections held as `format`.
    pub fn load_as(dir: &Path, dtype: DType, device: &Device, format: WeightFormat) -> Result<Self> {
        let (cfg, store) = Self::open(dir)?;
        Self::from_store(cfg, store, dtype, device, format)
            .map_err(|e| ModelError::Checkpoint { path: dir.to_path_buf(), message: e.to_string() })
    }

    /// A llava-hf directory's resolved config and its tensors under canonical names, not yet
    /// built into a model (a caller may edit them first, e.g. [`TensorStore::redraw`]).
    pub fn open(dir: &Path) -> Result<(Config, TensorStore)> {
        let config_path = dir.join("config.json");
        let raw: RawConfig = read_json(&config_path)?;
        let mut cfg = raw.resolve().map_err(|message| ModelError::Config { file: config_path.clone(), message })?;
        for id in generation_eos_ids(dir)? {
            if !cfg.text.eos_token_ids.contains(&id) {
                cfg.text.eos_token_ids.push(id);
            }
        }
        Ok((cfg, TensorStore::open(&safetensors_files(dir)?)?))
    }

    /// Builds the model from a checkpoint's canonical tensor names.
    pub fn from_store(cfg: Config, store: TensorStore, dtype: DType, device: &Device, format: WeightFormat) -> candle_core::Result<Self> {
        Self::from_var_builder_as(cfg, store.into_var_builder(dtype, device), format)
    }

    /// Builds the model from any source of canonical tensor names (a checkpoint, or random
    /// weights for benchmarks).
    pub fn from_var_builder(cfg: Config, vb: candle_nn::VarBuilder) -> candle_core::Result<Self> {
        Self::from_var_builder_as(cfg, vb, WeightFormat::Dense)
    }

    /// [`Llava::from_var_builder`] with the decoder's projections held as `format`.
    pub fn from_var_builder_as(cfg: Config, vb: candle_nn::VarBuilder, format: WeightFormat) -> candle_core::Result<Self> {
        // Every block is loaded so intermediates can be inspected; the forward stops at the
        // feature block.
        let vision = match &cfg.vision {
            VisionConfig::Clip(c) => VisionTower::Clip(ClipVision::load(c, c.num_layers, vb.pp("vision_tower").pp("vision_model"))?),
            VisionConfig::Dino(c) => VisionTower::Dino(DinoVision::load(c, c.depth, vb.pp("vision_tower").pp("trunk"))?),
        };
        let (dv, dt, p) = (cfg.vision.hidden_size(), cfg.text.hidden_size, vb.pp("multi_modal_projector"));
        let projector = match cfg.projector {
            ProjectorKind::Mlp2xGelu => Projector::Mlp2xGelu(Mlp2xGelu::load(dv, dt, cfg.projector_bias, cfg.projector_activation, p)?),
            ProjectorKind::Sequential(n) => {
                Projector::Sequential(SequentialMlp::load(dv, dt, n, cfg.projector_bias, cfg.projector_activation, p)?)
            }
        };
        let text = LlamaText::load(&cfg.text, vb.pp("language_model"), format)?;
        Ok(Self { vision, projector, text, cfg })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn vision(&self) -> &VisionTower {
        &self.vision
    }

    pub fn text(&self) -> &LlamaText {
        &self.text
    }

    pub fn projector(&self) -> &Projector {
        &self.projector
    }

    /// The selected vision features before projection, `[tokens, vision_hidden]`.
    pub fn selected_features(&self, pixel_values: &Tensor, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        self.select(&self.vision.forward(pixel_values, self.cfg.feature, probe)?)
    }

    /// The feature block's output `[1, 1 + patches, hidden]` -> the image tokens' rows (after
    /// the tower's final LayerNorm where the model takes it: MAIRA-2's `feature_maps`).
    fn select(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        let hidden = self.vision.feature_norm(&hidden.squeeze(0)?)?;
        match self.cfg.select {
            FeatureSelect::Default => hidden.narrow(0, 1, hidden.dim(0)? - 1),
            FeatureSelect::Full => Ok(hidden),
        }
    }

    /// What replaces the `<image>` embeddings, `[tokens, text_hidden]`.
    pub fn image_features(&self, pixel_values: &Tensor, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        self.projector.forward(&self.selected_features(pixel_values, probe)?)
    }
}

/// `base` `[L, D]` with rows `positions` replaced by the rows of `rows` `[N, D]`, in order.
/// Image tokens are one contiguous run in LLaVA prompts, but nothing here relies on it.
pub fn splice_rows(base: &Tensor, positions: &[usize], rows: &Tensor) -> candle_core::Result<Tensor> {
    let mut parts = Vec::new();
    let mut next = 0usize;
    for (i, &p) in positions.iter().enumerate() {
        if p > next {
            parts.push(base.narrow(0, next, p - next)?);
        }
        parts.push(rows.narrow(0, i, 1)?);
        next = p + 1;
    }
    let len = base.dim(0)?;
    if next < len {
        parts.push(base.narrow(0, next, len - next)?);
    }
    Tensor::cat(&parts, 0)
}

impl VisionLanguageModel for Llava {
    fn summary(&self) -> ModelSummary {
        ModelSummary {
            architecture: match (&self.cfg.vision, self.cfg.projector) {
                (_, ProjectorKind::Sequential(_)) => "maira2",
                (VisionConfig::Dino(_), _) => "llava_rad",
                _ => "llava",
            },
            num_layers: self.cfg.text.num_layers,
            num_heads: self.cfg.text.num_heads,
            grid_h: self.cfg.vision.grid(),
            grid_w: self.cfg.vision.grid(),
            image_token_id: self.cfg.image_token_id,
            image_tokens: self.cfg.image_tokens(),
            dtype: self.text.dtype(),
        }
    }

    fn eos_token_ids(&self) -> &[u32] {
        &self.cfg.text.eos_token_ids
    }

    fn new_cache(&self) -> KvCache {
        self.text.new_cache()
    }

    fn encode_image(&self, pixel_values: &Tensor, probe: &mut dyn Probe) -> Result<Tensor> {
        Ok(self.image_features(pixel_values, probe)?)
    }

    /// One vision forward for the whole batch (the towers take `[B, ..]`), then each image's
    /// tokens through the projector.
    fn encode_images(&self, pixel_values: &Tensor) -> Result<Vec<Tensor>> {
        let hidden = self.vision.forward(pixel_values, self.cfg.feature, &mut NoProbe)?; // [B, 1 + patches, hidden]
        (0..hidden.dim(0)?).map(|b| Ok(self.projector.forward(&self.select(&hidden.narrow(0, b, 1)?)?)?)).collect()
    }

    fn prefill_from(
        &self,
        input_ids: &[u32],
        start: usize,
        features: &Tensor,
        cache: &mut KvCache,
        probe: &mut dyn Probe,
    ) -> Result<Tensor> {
        let embeds = super::spliced_embeddings(input_ids, start, self.cfg.image_token_id, features, |ids| self.text.embed(ids))?;
        let hidden = self.text.forward_embeds(&embeds, cache, probe)?;
        Ok(self.text.last_logits(&hidden)?)
    }

    fn decode_step(&self, token: u32, cache: &mut KvCache, probe: &mut dyn Probe) -> Result<Tensor> {
        let embeds = self.text.embed(&[token])?;
        let hidden = self.text.forward_embeds(&embeds, cache, probe)?;
        Ok(self.text.last_logits(&hidden)?)
    }

    /// The feature block fed to the projector: the last place where positions are still patches
    /// and the only block whose output the language model sees (MAIRA-2: before the tower's
    /// final LayerNorm, which the CAM differentiates through).
    fn gradcam_site(&self, _pixel_values: &Tensor) -> Result<GradcamSite> {
        let VisionFeature::BlockOutput(n) = self.cfg.feature;
        Ok(GradcamSite {
            name: if n == 0 { SiteName::vision_embeddings() } else { SiteName::vision_output(n - 1) },
            skip: 1, // CLS comes first in both towers
            patch_grid: (self.cfg.vision.grid(), self.cfg.vision.grid()),
            pool: 1,
        })
    }

    fn gradcam_activations(&self, pixel_values: &Tensor) -> Result<Tensor> {
        Ok(self.vision.forward(pixel_values, self.cfg.feature, &mut NoProbe)?)
    }

    fn features_from_gradcam_block(&self, activations: &Tensor, _site: &GradcamSite) -> Result<Tensor> {
        Ok(self.projector.forward(&self.select(activations)?)?)
    }
}
