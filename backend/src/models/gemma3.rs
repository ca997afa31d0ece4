//! Gemma3 / MedGemma composition: SigLIP tower -> post-norm -> 4x4 average pool ->
//! `mm_soft_emb_norm` (1 + w) -> `x @ mm_input_projection_weight` -> spliced unscaled into the
//! `<image_soft_token>` rows -> Gemma3 text model with bidirectional image blocks.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::checkpoint::{TensorStore, safetensors_files};
use super::config::{generation_eos_ids, read_json};
use super::error::{ModelError, Result};
use super::gemma3_text::{self, Gemma3Text, ImageBlocks};
use super::kv_cache::KvCache;
use super::linear::WeightFormat;
use super::norm::RmsNorm;
use super::probe::{NoProbe, Probe, SiteName};
use super::siglip_vision::{self, SiglipVision};
use super::{GradcamSite, ModelSummary, VisionLanguageModel};

/// config.json of a `Gemma3ForConditionalGeneration` checkpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    pub text_config: gemma3_text::RawConfig,
    pub vision_config: siglip_vision::RawConfig,
    #[serde(default = "d_image_token", alias = "image_token_id")]
    pub image_token_index: u32,
    #[serde(default = "d_boi", alias = "boi_token_id")]
    pub boi_token_index: u32,
    #[serde(default = "d_eoi", alias = "eoi_token_id")]
    pub eoi_token_index: u32,
    #[serde(default = "d_mm_tokens")]
    pub mm_tokens_per_image: usize,
}

fn d_image_token() -> u32 {
    262_144
}
fn d_boi() -> u32 {
    255_999
}
fn d_eoi() -> u32 {
    256_000
}
fn d_mm_tokens() -> usize {
    256
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub text: gemma3_text::Config,
    pub vision: siglip_vision::Config,
    pub image_token_id: u32,
    pub boi_token_id: u32,
    pub eoi_token_id: u32,
    /// Image tokens per side after pooling (`sqrt(mm_tokens_per_image)`).
    pub tokens_per_side: usize,
}

impl Config {
    pub fn image_tokens(&self) -> usize {
        self.tokens_per_side * self.tokens_per_side
    }

    /// Patches pooled into one token, per side.
    pub fn pool_kernel(&self) -> usize {
        self.vision.grid() / self.tokens_per_side
    }
}

impl RawConfig {
    pub fn resolve(self) -> std::result::Result<Config, String> {
        let vision = self.vision_config.resolve()?;
        let side = (self.mm_tokens_per_image as f64).sqrt().round() as usize;
        if side * side != self.mm_tokens_per_image || side == 0 || vision.grid() % side != 0 {
            return Err(format!(
                "mm_tokens_per_image = {} must be a square whose side divides the {}x{} patch grid",
                self.mm_tokens_per_image,
                vision.grid(),
                vision.grid()
            ));
        }
        Ok(Config {
            text: self.text_config.resolve()?,
            vision,
            image_token_id: self.image_token_index,
            boi_token_id: self.boi_token_index,
            eoi_token_id: self.eoi_token_index,
            tokens_per_side: side,
        })
    }
}

/// `mm_soft_emb_norm` then `mm_input_projection_weight` (`[vision, text]`, used untransposed).
#[derive(Debug, Clone)]
struct Projector {
    mm_soft_emb_norm: RmsNorm,
    mm_input_projection_weight: Tensor,
}

pub struct Gemma3 {
    vision: SiglipVision,
    projector: Projector,
    text: Gemma3Text,
    cfg: Config,
}

impl Gemma3 {
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Self::load_as(dir, dtype, device, WeightFormat::Dense)
    }

    /// [`Gemma3::load`] with the decoder's projections held as `format`.
    pub fn load_as(dir: &Path, dtype: DType, device: &Device, format: WeightFormat) -> Result<Self> {
        let (cfg, store) = Self::open(dir)?;
        Self::from_store(cfg, store, dtype, device, format)
            .map_err(|e| ModelError::Checkpoint { path: dir.to_path_buf(), message: e.to_string() })
    }

    /// A Gemma3 directory's resolved config and its tensors under canonical names, not yet built
    /// into a model (a caller may edit them first, e.g. [`TensorStore::redraw`]).
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

    pub fn from_var_builder(cfg: Config, vb: VarBuilder) -> candle_core::Result<Self> {
        Self::from_var_builder_as(cfg, vb, WeightFormat::Dense)
    }

    /// [`Gemma3::from_var_builder`] with the decoder's projections held as `format`.
    pub fn from_var_builder_as(cfg: Config, vb: VarBuilder, format: WeightFormat) -> candle_core::Result<Self> {
        let vision = SiglipVision::load(&cfg.vision, vb.pp("vision_tower").pp("vision_model"))?;
        let p = vb.pp("multi_modal_projector");
        let (dv, dt) = (cfg.vision.block.hidden_size, cfg.text.hidden_size);
        let projector = Projector {
            mm_soft_emb_norm: RmsNorm::load_gemma(dv, cfg.vision.block.layer_norm_eps, p.pp("mm_soft_emb_norm"))?,
            mm_input_projection_weight: p.get((dv, dt), "mm_input_projection_weight")?,
        };
        let text = Gemma3Text::load(&cfg.text, vb.pp("language_model"), format)?;
        Ok(Self { vision, projector, text, cfg })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn vision(&self) -> &SiglipVision {
        &self.vision
    }

    /// The patch grid average-pooled to `tokens_per_side^2` tokens, `[tokens, vision_hidden]`,
    /// row-major over the pooled grid.
    pub fn pooled_features(&self, pixel_values: &Tensor, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        self.pool(&self.vision.forward(pixel_values, probe)?)
    }

    /// `[1, g*g, d]` patches -> `[t*t, d]` tokens.
    fn pool(&self, last: &Tensor) -> candle_core::Result<Tensor> {
        let (g, d, k) = (self.cfg.vision.grid(), self.cfg.vision.block.hidden_size, self.cfg.pool_kernel());
        let grid = last.transpose(1, 2)?.reshape((1, d, g, g))?;
        grid.avg_pool2d(k)?.flatten_from(2)?.squeeze(0)?.t() // [t*t, d]
    }

    /// What replaces the image soft tokens, `[tokens, text_hidden]`.
    pub fn image_features(&self, pixel_values: &Tensor, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        self.project(&self.pooled_features(pixel_values, probe)?)
    }

    /// Pooled `[tokens, vision_hidden]` -> `[tokens, text_hidden]`.
    fn project(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        let normed = self.projector.mm_soft_emb_norm.forward(pooled)?;
        normed.matmul(&self.projector.mm_input_projection_weight)
    }

    /// `mm_soft_emb_norm` of the pooled features (a debugging intermediate).
    pub fn pooled_normed(&self, pixel_values: &Tensor, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        self.projector.mm_soft_emb_norm.forward(&self.pooled_features(pixel_values, probe)?)
    }

    /// Logits `[L, vocab]` (f32) of every prompt position, from a fresh cache without capture (a
    /// debugging intermediate: the multi-image parity test compares them all, which shows the
    /// per-image blocks in every row, not only the last).
    pub fn prompt_logits(&self, input_ids: &[u32], features: &Tensor) -> Result<Tensor> {
        let embeds = super::spliced_embeddings(input_ids, 0, self.cfg.image_token_id, features, |ids| self.text.embed(ids))?;
        let hidden = self.text.forward_embeds(&embeds, &self.image_blocks(input_ids), &mut self.text.new_cache(), &mut NoProbe)?;
        let rows =
            (1..=input_ids.len()).map(|n| self.text.last_logits(&hidden.narrow(1, 0, n)?)).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::stack(&rows, 0)?)
    }

    /// Image-block index per prompt position: each contiguous run of image tokens is one block.
    pub fn image_blocks(&self, input_ids: &[u32]) -> ImageBlocks {
        let mut block = Vec::with_capacity(input_ids.len());
        let mut current = -1i32;
        let mut previous_was_image = false;
        for &id in input_ids {
            let is_image = id == self.cfg.image_token_id;
            if is_image && !previous_was_image {
                current += 1;
            }
            block.push(if is_image { current } else { -1 });
            previous_was_image = is_image;
        }
        ImageBlocks { block }
    }
}

impl VisionLanguageModel for Gemma3 {
    fn summary(&self) -> ModelSummary {
        ModelSummary {
            architecture: "gemma3",
            num_layers: self.cfg.text.num_layers(),
            num_heads: self.cfg.text.num_heads,
            grid_h: self.cfg.tokens_per_side,
            grid_w: self.cfg.tokens_per_side,
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

    fn prefill_from(
        &self,
        input_ids: &[u32],
        start: usize,
        features: &Tensor,
        cache: &mut KvCache,
        probe: &mut dyn Probe,
    ) -> Result<Tensor> {
        // Image features go in unscaled: only token embeddings carry the sqrt(hidden) factor.
        let embeds = super::spliced_embeddings(input_ids, start, self.cfg.image_token_id, features, |ids| self.text.embed(ids))?;
        // The blocks of the whole prompt: keys before `start` may belong to an image block.
        let hidden = self.text.forward_embeds(&embeds, &self.image_blocks(input_ids), cache, probe)?;
        Ok(self.text.last_logits(&hidden)?)
    }

    fn decode_step(&self, token: u32, cache: &mut KvCache, probe: &mut dyn Probe) -> Result<Tensor> {
        let embeds = self.text.embed(&[token])?;
        // Decode steps are causal (plus the window): no image block spans a generated token.
        let hidden = self.text.forward_embeds(&embeds, &ImageBlocks::default(), cache, probe)?;
        Ok(self.text.last_logits(&hidden)?)
    }

    /// The last SigLIP block, before `post_layernorm` and the pool: positions are still the
    /// 64 x 64 patches (for MedGemma), finer than the 16 x 16 tokens the map is drawn on; the CAM
    /// is computed per patch and each token takes the sum of its pooled patches.
    fn gradcam_site(&self, _pixel_values: &Tensor) -> Result<GradcamSite> {
        Ok(GradcamSite {
            name: SiteName::vision_output(self.cfg.vision.num_layers.saturating_sub(1)),
            skip: 0,
            patch_grid: (self.cfg.vision.grid(), self.cfg.vision.grid()),
            pool: self.cfg.pool_kernel(),
        })
    }

    fn gradcam_activations(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let mut states = self.vision.hidden_states(pixel_values, &mut NoProbe)?;
        Ok(states.pop().expect("hidden_states holds at least the embeddings"))
    }

    fn features_from_gradcam_block(&self, activations: &Tensor, _site: &GradcamSite) -> Result<Tensor> {
        Ok(self.project(&self.pool(&self.vision.post_norm(activations)?)?)?)
    }
}
