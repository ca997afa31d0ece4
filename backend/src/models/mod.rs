//! The models: one file per component, one attention for all ([`attention`]), one probe
//! mechanism ([`probe`]), and checkpoint layouts kept apart from the math ([`checkpoint`]).
//!
//! Capture sites, for a newcomer looking for one: every attention pattern is captured in
//! `attention::attend`, named `text.blocks.N.attn.pattern` (called from `llama_text::Attention`
//! and `gemma3_text`'s decoder layer) or `vision.blocks.N.attn.pattern` (called from
//! `vit_block::VitBlock`, shared by the CLIP and SigLIP towers, and `dino_vision`'s block). The
//! names are `radlens_shared::site::SiteName`. What a case captures, and how the rows become a
//! map, is decided in `crate::case` (`CasePlan`), never here.

pub mod activation;
pub mod attention;
pub mod checkpoint;
pub mod clip_vision;
pub mod config;
pub mod dino_vision;
pub mod error;
pub mod gemma3;
pub mod gemma3_text;
pub mod generate;
pub mod kv_cache;
pub mod linear;
pub mod llama_text;
pub mod llava;
pub mod loader;
pub mod maira2;
pub mod mask;
pub mod norm;
pub mod presets;
pub mod probe;
pub mod processor;
pub mod projector;
pub mod qwen25_vision;
pub mod qwen25vl;
pub mod qwen2_text;
pub mod rope;
pub mod siglip_vision;
pub mod vit_block;

use candle_core::{DType, Tensor};

use error::Result;
use llama_text::KvCache;
use probe::Probe;

/// What the study and the CLI need to know about a loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    pub architecture: &'static str,
    pub num_layers: usize,
    pub num_heads: usize,
    /// The image-token grid (maps are `grid_h x grid_w`).
    pub grid_h: usize,
    pub grid_w: usize,
    pub image_token_id: u32,
    pub image_tokens: usize,
    pub dtype: DType,
}

/// Where Grad-CAM differentiates: one vision block's output, and how its positions lie on the
/// image-token grid that attention maps use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradcamSite {
    /// `vision.blocks.N.output` (or `vision.embeddings` when the features are the embeddings).
    pub name: probe::SiteName,
    /// Leading positions that are not patches (CLS), left out of the map.
    pub skip: usize,
    /// Patches `(rows, cols)`, row-major after `skip`: square and fixed for LLaVA and Gemma3,
    /// the image's own for Qwen2.5-VL.
    pub patch_grid: (usize, usize),
    /// Patches per image token per side (Gemma3's 4x4 average pool; 1 for LLaVA).
    pub pool: usize,
}

/// The seam between a VLM and generation: a prompt forward with the image, then one token at a
/// time. The caller owns the cache and the probe.
pub trait VisionLanguageModel {
    fn summary(&self) -> ModelSummary;
    /// The image-token grid `(rows, cols)` of this input `[1, C, H, W]`, on which its maps are
    /// drawn: the summary's fixed grid, except for models with dynamic resolution (Qwen2.5-VL),
    /// whose grid follows the image.
    fn image_grid(&self, pixel_values: &Tensor) -> Result<(usize, usize)> {
        let _ = pixel_values;
        let s = self.summary();
        Ok((s.grid_h, s.grid_w))
    }
    fn eos_token_ids(&self) -> &[u32];
    fn new_cache(&self) -> KvCache;
    /// The image's features as they replace the image tokens, `[image_tokens, hidden]`, or
    /// `[rows, cols, hidden]` where the prompt positions depend on the grid (Qwen2.5-VL).
    fn encode_image(&self, pixel_values: &Tensor, probe: &mut dyn Probe) -> Result<Tensor>;
    /// [`Self::encode_image`] of each of `pixel_values` `[B, C, S, S]`, without capture. One
    /// image at a time unless the model batches its vision tower (LLaVA does).
    fn encode_images(&self, pixel_values: &Tensor) -> Result<Vec<Tensor>> {
        (0..pixel_values.dim(0)?).map(|b| self.encode_image(&pixel_values.narrow(0, b, 1)?, &mut probe::NoProbe)).collect()
    }
    /// Several images of one prompt, each `[1, C, H, W]`, in prompt order: their
    /// [`Self::encode_image`] features concatenated, `[sum of tokens, hidden]`, ready for
    /// [`Self::prefill_from`] (image token `k` of the prompt takes row `k`). Each image runs
    /// through the tower on its own (no attention across images), under `probe` in turn, so a
    /// vision capture site is visited once per image.
    fn encode_image_list(&self, pixel_values: &[Tensor], probe: &mut dyn Probe) -> Result<Tensor> {
        let features = pixel_values.iter().map(|pv| self.encode_image(pv, probe)).collect::<Result<Vec<_>>>()?;
        concat_features(&features)
    }
    /// Runs `input_ids[start..]` after `cache`, which holds `input_ids[..start]`; image tokens
    /// in that range take their rows of `features` (several images: concatenated in prompt
    /// order, [`Self::encode_image_list`]). Returns the last position's logits `[V]` f32.
    fn prefill_from(
        &self,
        input_ids: &[u32],
        start: usize,
        features: &Tensor,
        cache: &mut KvCache,
        probe: &mut dyn Probe,
    ) -> Result<Tensor>;
    /// The whole prompt with the image: `encode_image` then `prefill_from(.., 0, ..)`.
    fn prefill(&self, input_ids: &[u32], pixel_values: &Tensor, cache: &mut KvCache, probe: &mut dyn Probe) -> Result<Tensor> {
        let features = self.encode_image(pixel_values, probe)?;
        self.prefill_from(input_ids, 0, &features, cache, probe)
    }
    /// Feeds one token after what `cache` holds and returns its logits `[V]` in f32.
    fn decode_step(&self, token: u32, cache: &mut KvCache, probe: &mut dyn Probe) -> Result<Tensor>;
    /// The vision block Grad-CAM differentiates at, for this input `[1, C, H, W]`.
    fn gradcam_site(&self, pixel_values: &Tensor) -> Result<GradcamSite>;
    /// That block's output, `[1, positions, vision_hidden]`.
    fn gradcam_activations(&self, pixel_values: &Tensor) -> Result<Tensor>;
    /// From that block's output to what `encode_image` returns, with differentiable ops only (so
    /// `encode_image(x) == features_from_gradcam_block(gradcam_activations(x), gradcam_site(x))`);
    /// `site` is [`Self::gradcam_site`] of the same input.
    fn features_from_gradcam_block(&self, activations: &Tensor, site: &GradcamSite) -> Result<Tensor>;
}

/// `cpu`, or `cuda` / `cuda:N` in a build with the `cuda` feature.
pub fn parse_device(name: &str) -> std::result::Result<candle_core::Device, String> {
    match name {
        "cpu" => Ok(candle_core::Device::Cpu),
        cuda if cuda == "cuda" || cuda.starts_with("cuda:") => {
            let ordinal = cuda.strip_prefix("cuda:").map_or(Ok(0), |n| n.parse::<usize>().map_err(|_| format!("bad device {name:?}")))?;
            candle_core::Device::new_cuda(ordinal).map_err(|e| format!("{name}: {e} (this radlens may be built without the cuda feature)"))
        }
        other => Err(format!("unknown device {other:?} (cpu, cuda, cuda:N)")),
    }
}

/// `auto` (f32 on the CPU, bf16 on a GPU), `f32` (exact), `bf16` or `f16`.
pub fn resolve_dtype(name: &str, device: &candle_core::Device) -> std::result::Result<DType, String> {
    match name {
        "auto" if device.is_cpu() => Ok(DType::F32),
        "auto" => Ok(DType::BF16),
        other => parse_dtype(other),
    }
}

/// The name `parse_dtype` reads back.
pub fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        DType::F64 => "f64",
        _ => "f32",
    }
}

/// `f32` (exact), `bf16` or `f16`.
pub fn parse_dtype(name: &str) -> std::result::Result<DType, String> {
    match name {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" => Ok(DType::F16),
        other => Err(format!("unknown dtype {other:?} (auto, f32, bf16, f16)")),
    }
}

/// Image features of several images, each `[tokens, hidden]` or `[rows, cols, hidden]`, as one
/// `[sum of tokens, hidden]` in the order given (the prompt's). One image's features are
/// returned as they are (Qwen2.5-VL's prefill reads its grid from their shape).
pub fn concat_features(features: &[Tensor]) -> Result<Tensor> {
    match features {
        [] => return Err(error::ModelError::Invalid("no image features to concatenate".into())),
        [one] => return Ok(one.clone()),
        _ => {}
    }
    let flat = features.iter().map(|f| f.flatten_to(f.rank().saturating_sub(2))).collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::cat(&flat, 0)?)
}

/// Embeddings of `input_ids[start..]` with the image rows spliced in: image token `k` of the
/// whole prompt takes row `k` of `features`, so several images' features concatenated in prompt
/// order fill each image's run in turn. `embed` maps ids to `[1, n, hidden]`.
pub(crate) fn spliced_embeddings(
    input_ids: &[u32],
    start: usize,
    image_token_id: u32,
    features: &Tensor,
    embed: impl Fn(&[u32]) -> candle_core::Result<Tensor>,
) -> Result<Tensor> {
    let image_positions: Vec<usize> = input_ids.iter().enumerate().filter(|(_, t)| **t == image_token_id).map(|(i, _)| i).collect();
    // `[rows, cols, hidden]` features are row-major tokens.
    let features = &features.flatten_to(features.rank().saturating_sub(2))?;
    let n = features.dim(0)?;
    // A run of text without image tokens (the prompt before the image) splices nothing.
    if !image_positions.is_empty() && image_positions.len() != n {
        return Err(error::ModelError::Invalid(format!(
            "the prompt has {} image tokens (id {image_token_id}) but the image features have {n} rows (all images together)",
            image_positions.len()
        )));
    }
    let tail = &input_ids[start..];
    // Image ids may lie outside the vocabulary (LLaVA-Rad): look up id 0; the row is replaced.
    let lookup: Vec<u32> = tail.iter().map(|&t| if t == image_token_id { 0 } else { t }).collect();
    let embeds = embed(&lookup)?.squeeze(0)?;
    let (local, rows): (Vec<usize>, Vec<u32>) =
        image_positions.iter().enumerate().filter(|(_, p)| **p >= start).map(|(k, p)| (p - start, k as u32)).unzip();
    if local.is_empty() {
        return Ok(embeds.unsqueeze(0)?);
    }
    let rows = features.index_select(&Tensor::new(rows, features.device())?, 0)?.to_dtype(embeds.dtype())?;
    Ok(llava::splice_rows(&embeds, &local, &rows)?.unsqueeze(0)?)
}
