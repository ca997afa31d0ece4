//! The Gemma3 text model (MedGemma-4B's decoder): embeddings x sqrt(hidden), RMSNorm with
//! `1 + w`, q/k norms, attention scaled by `query_pre_attn_scalar^-0.5`, four norms per layer,
//! gelu-tanh MLP, RoPE per layer type, sliding-window and full layers, image tokens attending to
//! their whole image block in both directions during the prompt.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::Deserialize;

use super::activation::Activation;
use super::attention::{AttnSpec, attend};
use super::config::{OneOrMany, RopeParameters};
use super::kv_cache::KvCache;
use super::linear::{Linear as ProjLinear, WeightFormat};
use super::mask::{MaskKind, attention_mask};
use super::norm::RmsNorm;
use super::probe::{Probe, SiteName};
use super::rope::RotaryEmbedding;

/// `text_config` as written, in either the hub (transformers 4.x) or the transformers 5 style;
/// defaults are transformers' `Gemma3TextConfig` defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_kv_heads")]
    pub num_key_value_heads: usize,
    #[serde(default = "d_head_dim")]
    pub head_dim: usize,
    #[serde(default = "d_act", alias = "hidden_act")]
    pub hidden_activation: String,
    #[serde(default = "d_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "d_scalar")]
    pub query_pre_attn_scalar: f64,
    #[serde(default = "d_window")]
    pub sliding_window: usize,
    /// transformers 5: explicit per-layer `sliding_attention` / `full_attention`.
    pub layer_types: Option<Vec<String>>,
    /// Hub configs: every `n`-th layer is full.
    pub sliding_window_pattern: Option<usize>,
    /// transformers 5 saves the legacy pattern under this name (beside `layer_types`).
    #[serde(rename = "_sliding_window_pattern")]
    pub saved_sliding_window_pattern: Option<usize>,
    /// Hub style: the full layers' base, the sliding layers' base, and the full layers' scaling.
    pub rope_theta: Option<f64>,
    pub rope_local_base_freq: Option<f64>,
    pub rope_scaling: Option<RopeParameters>,
    /// transformers 5 style: `{"full_attention": {...}, "sliding_attention": {...}}`.
    pub rope_parameters: Option<std::collections::HashMap<String, RopeParameters>>,
    pub attn_logit_softcapping: Option<f64>,
    pub final_logit_softcapping: Option<f64>,
    #[serde(default = "d_true")]
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<OneOrMany>,
}

fn d_vocab() -> usize {
    262_208
}
fn d_hidden() -> usize {
    2304
}
fn d_intermediate() -> usize {
    9216
}
fn d_layers() -> usize {
    26
}
fn d_heads() -> usize {
    8
}
fn d_kv_heads() -> usize {
    4
}
fn d_head_dim() -> usize {
    256
}
fn d_act() -> String {
    "gelu_pytorch_tanh".into()
}
fn d_eps() -> f64 {
    1e-6
}
fn d_scalar() -> f64 {
    256.0
}
fn d_window() -> usize {
    4096
}
fn d_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerType {
    Sliding,
    Full,
}

/// One layer type's RoPE: base and linear scaling factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    pub theta: f64,
    pub linear_factor: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub activation: Activation,
    pub rms_norm_eps: f64,
    pub query_pre_attn_scalar: f64,
    pub sliding_window: usize,
    pub layer_types: Vec<LayerType>,
    pub rope_full: Rope,
    pub rope_sliding: Rope,
    pub attn_logit_softcapping: Option<f64>,
    pub final_logit_softcapping: Option<f64>,
    pub tie_word_embeddings: bool,
    pub bos_token_id: u32,
    pub eos_token_ids: Vec<u32>,
}

impl Config {
    pub fn num_layers(&self) -> usize {
        self.layer_types.len()
    }
}

fn rope_of(p: &RopeParameters, default_theta: f64, what: &str) -> Result<Rope, String> {
    Ok(Rope { theta: p.rope_theta.unwrap_or(default_theta), linear_factor: p.linear_factor(&format!("text_config {what}"))? })
}

impl RawConfig {
    pub fn resolve(self) -> Result<Config, String> {
        let n = self.num_hidden_layers;
        let layer_types = match &self.layer_types {
            Some(types) => {
                if types.len() != n {
                    return Err(format!("text_config.layer_types has {} entries for {n} layers", types.len()));
                }
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        "sliding_attention" => Ok(LayerType::Sliding),
                        "full_attention" => Ok(LayerType::Full),
                        other => Err(format!("text_config.layer_types: unknown layer type {other:?}")),
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => {
                let pattern = self.sliding_window_pattern.or(self.saved_sliding_window_pattern).unwrap_or(6).max(1);
                (0..n).map(|i| if (i + 1) % pattern == 0 { LayerType::Full } else { LayerType::Sliding }).collect()
            }
        };
        let (rope_full, rope_sliding) = match &self.rope_parameters {
            Some(per_type) => {
                let get = |key: &str| per_type.get(key).ok_or_else(|| format!("text_config.rope_parameters has no {key:?} entry"));
                (rope_of(get("full_attention")?, 1e6, "full_attention")?, rope_of(get("sliding_attention")?, 1e4, "sliding_attention")?)
            }
            None => {
                let theta = self.rope_theta.unwrap_or(1e6);
                let full = match &self.rope_scaling {
                    Some(s) => rope_of(s, theta, "rope_scaling")?,
                    None => Rope { theta, linear_factor: 1.0 },
                };
                (Rope { theta, ..full }, Rope { theta: self.rope_local_base_freq.unwrap_or(1e4), linear_factor: 1.0 })
            }
        };
        let (h, kv) = (self.num_attention_heads, self.num_key_value_heads);
        if h == 0 || kv == 0 || h % kv != 0 {
            return Err(format!("text_config: {h} attention heads cannot share {kv} key/value heads"));
        }
        Ok(Config {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_heads: h,
            num_kv_heads: kv,
            head_dim: self.head_dim,
            activation: Activation::parse(&self.hidden_activation).map_err(|e| format!("text_config.hidden_activation: {e}"))?,
            rms_norm_eps: self.rms_norm_eps,
            query_pre_attn_scalar: self.query_pre_attn_scalar,
            sliding_window: self.sliding_window,
            layer_types,
            rope_full,
            rope_sliding,
            attn_logit_softcapping: self.attn_logit_softcapping,
            final_logit_softcapping: self.final_logit_softcapping,
            tie_word_embeddings: self.tie_word_embeddings,
            bos_token_id: self.bos_token_id.unwrap_or(2),
            eos_token_ids: self.eos_token_id.map(OneOrMany::into_vec).unwrap_or_else(|| vec![1]),
        })
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: ProjLinear,
    k_proj: ProjLinear,
    v_proj: ProjLinear,
    o_proj: ProjLinear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(cfg: &Config, vb: VarBuilder, format: WeightFormat) -> candle_core::Result<Self> {
        let (h, kv, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        Ok(Self {
            q_proj: ProjLinear::load(cfg.hidden_size, h * d, false, format, vb.pp("q_proj"))?,
            k_proj: ProjLinear::load(cfg.hidden_size, kv * d, false, format, vb.pp("k_proj"))?,
            v_proj: ProjLinear::load(cfg.hidden_size, kv * d, false, format, vb.pp("v_proj"))?,
            o_proj: ProjLinear::load(h * d, cfg.hidden_size, false, format, vb.pp("o_proj"))?,
            q_norm: RmsNorm::load_gemma(d, cfg.rms_norm_eps, vb.pp("q_norm"))?,
            k_norm: RmsNorm::load_gemma(d, cfg.rms_norm_eps, vb.pp("k_norm"))?,
            num_heads: h,
            num_kv_heads: kv,
            head_dim: d,
        })
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: Attention,
    gate_proj: ProjLinear,
    up_proj: ProjLinear,
    down_proj: ProjLinear,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    pre_feedforward_layernorm: RmsNorm,
    post_feedforward_layernorm: RmsNorm,
    layer_type: LayerType,
}

/// Per-prompt context of a forward: which prompt positions belong to which image block.
#[derive(Debug, Clone, Default)]
pub struct ImageBlocks {
    /// `block[pos]` = image-block index for image tokens, `-1` otherwise (prompt positions only).
    pub block: Vec<i32>,
}

#[derive(Debug, Clone)]
pub struct Gemma3Text {
    embed_tokens: Embedding,
    embed_scale: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope_full: RotaryEmbedding,
    rope_sliding: RotaryEmbedding,
    cfg: Config,
}

impl Gemma3Text {
    /// `vb` points at `language_model` (holding `model.*`, and `lm_head` when untied);
    /// `format` is how the decoder layers' projections are held.
    pub fn load(cfg: &Config, vb: VarBuilder, format: WeightFormat) -> candle_core::Result<Self> {
        let m = vb.pp("model");
        let embed_tokens = candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, m.pp("embed_tokens"))?;
        // sqrt(hidden) rounded to the weights' dtype, as transformers does (bf16: sqrt(2560) -> 50.5).
        let embed_scale = Tensor::new((cfg.hidden_size as f32).sqrt(), vb.device())?.to_dtype(vb.dtype())?;
        let layers = cfg
            .layer_types
            .iter()
            .enumerate()
            .map(|(i, &layer_type)| {
                let l = m.pp("layers").pp(i);
                let mlp = l.pp("mlp");
                let norm = |name: &str| RmsNorm::load_gemma(cfg.hidden_size, cfg.rms_norm_eps, l.pp(name));
                Ok(DecoderLayer {
                    self_attn: Attention::load(cfg, l.pp("self_attn"), format)?,
                    gate_proj: ProjLinear::load(cfg.hidden_size, cfg.intermediate_size, false, format, mlp.pp("gate_proj"))?,
                    up_proj: ProjLinear::load(cfg.hidden_size, cfg.intermediate_size, false, format, mlp.pp("up_proj"))?,
                    down_proj: ProjLinear::load(cfg.intermediate_size, cfg.hidden_size, false, format, mlp.pp("down_proj"))?,
                    input_layernorm: norm("input_layernorm")?,
                    post_attention_layernorm: norm("post_attention_layernorm")?,
                    pre_feedforward_layernorm: norm("pre_feedforward_layernorm")?,
                    post_feedforward_layernorm: norm("post_feedforward_layernorm")?,
                    layer_type,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let norm = RmsNorm::load_gemma(cfg.hidden_size, cfg.rms_norm_eps, m.pp("norm"))?;
        let lm_head = if cfg.tie_word_embeddings || !vb.contains_tensor("lm_head.weight") {
            Linear::new(embed_tokens.embeddings().clone(), None)
        } else {
            candle_nn::linear_no_bias(cfg.hidden_size, cfg.vocab_size, vb.pp("lm_head"))?
        };
        let rope = |r: super::gemma3_text::Rope| RotaryEmbedding::new(cfg.head_dim, r.theta, r.linear_factor, vb.device());
        Ok(Self {
            rope_full: rope(cfg.rope_full)?,
            rope_sliding: rope(cfg.rope_sliding)?,
            embed_tokens,
            embed_scale,
            layers,
            norm,
            lm_head,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.embed_tokens.embeddings().dtype()
    }

    pub fn device(&self) -> &Device {
        self.embed_tokens.embeddings().device()
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.cfg.num_layers())
    }

    /// `[seq]` ids -> scaled embeddings `[1, seq, hidden]`.
    pub fn embed(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let ids = Tensor::new(ids, self.device())?;
        self.embed_tokens.forward(&ids)?.broadcast_mul(&self.embed_scale)?.unsqueeze(0)
    }

    /// Runs the decoder over `embeds` `[1, seq, hidden]` following what `cache` holds; `blocks`
    /// marks the prompt's image tokens (bidirectional within a block). Returns hidden states after
    /// the final norm.
    pub fn forward_embeds(
        &self,
        embeds: &Tensor,
        blocks: &ImageBlocks,
        cache: &mut KvCache,
        probe: &mut dyn Probe,
    ) -> candle_core::Result<Tensor> {
        let (b, seq, _) = embeds.dims3()?;
        let start = cache.len();
        let kv_len = start + seq;
        let dev = embeds.device();
        let full_mask = attention_mask(start, seq, kv_len, MaskKind::Causal, &blocks.block, dev)?;
        let sliding_mask = attention_mask(start, seq, kv_len, MaskKind::Sliding(self.cfg.sliding_window), &blocks.block, dev)?;
        let dtype = embeds.dtype();
        let full_rope = self.rope_full.tables(start, seq, dtype)?;
        let sliding_rope = self.rope_sliding.tables(start, seq, dtype)?;
        let scale = 1.0 / self.cfg.query_pre_attn_scalar.sqrt();
        let mut x = embeds.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let (mask, rope) = match layer.layer_type {
                LayerType::Full => (full_mask.as_ref(), &full_rope),
                LayerType::Sliding => (sliding_mask.as_ref(), &sliding_rope),
            };
            let a = &layer.self_attn;
            let h = layer.input_layernorm.forward(&x)?;
            let split = |t: Tensor, heads: usize| t.reshape((b, seq, heads, a.head_dim))?.transpose(1, 2)?.contiguous(); // [b, heads, seq, d]
            // q/k norms act per head over head_dim, before RoPE.
            let q = rope.apply(&a.q_norm.forward(&split(a.q_proj.forward(&h)?, a.num_heads)?)?)?;
            let k = rope.apply(&a.k_norm.forward(&split(a.k_proj.forward(&h)?, a.num_kv_heads)?)?)?;
            let v = split(a.v_proj.forward(&h)?, a.num_kv_heads)?;
            let (k, v) = cache.append(i, k, v)?;
            let spec = AttnSpec { scale, softcap: self.cfg.attn_logit_softcapping, mask };
            let out = attend(&q, &k, &v, &spec, SiteName::text_attn(i), start, probe)?;
            let out = a.o_proj.forward(&out.transpose(1, 2)?.reshape((b, seq, a.num_heads * a.head_dim))?)?;
            x = (x + layer.post_attention_layernorm.forward(&out)?)?;
            let h = layer.pre_feedforward_layernorm.forward(&x)?;
            let gate = self.cfg.activation.apply(&layer.gate_proj.forward(&h)?)?;
            let mlp = layer.down_proj.forward(&(gate * layer.up_proj.forward(&h)?)?)?;
            x = (x + layer.post_feedforward_layernorm.forward(&mlp)?)?;
        }
        self.norm.forward(&x)
    }

    /// Logits `[vocab]` (f32) of the last position, soft-capped when the config says so.
    pub fn last_logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        let last = hidden.narrow(1, hidden.dim(1)? - 1, 1)?;
        let logits = self.lm_head.forward(&last)?.flatten_all()?.to_dtype(DType::F32)?;
        match self.cfg.final_logit_softcapping {
            Some(cap) => (logits / cap)?.tanh()? * cap,
            None => Ok(logits),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hub (transformers 4.x) and transformers 5 spellings of MedGemma's settings resolve to
    /// the same config.
    #[test]
    fn hub_and_v5_configs_resolve_alike() {
        let hub: RawConfig = serde_json::from_value(serde_json::json!({
            "num_hidden_layers": 12, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
            "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "sliding_window_pattern": 6,
            "sliding_window": 1024, "eos_token_id": [1, 106]
        }))
        .unwrap();
        let v5: RawConfig = serde_json::from_value(serde_json::json!({
            "num_hidden_layers": 12,
            "rope_parameters": {
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}
            },
            "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "full_attention",
                            "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
            "_sliding_window_pattern": 6, "sliding_window": 1024, "eos_token_id": [1, 106]
        }))
        .unwrap();
        let (hub, v5) = (hub.resolve().unwrap(), v5.resolve().unwrap());
        assert_eq!(hub, v5);
        assert_eq!(hub.rope_full, Rope { theta: 1e6, linear_factor: 8.0 });
        assert_eq!(hub.rope_sliding, Rope { theta: 1e4, linear_factor: 1.0 });
        assert_eq!(hub.layer_types[5], LayerType::Full);
        assert_eq!(hub.layer_types[4], LayerType::Sliding);
        assert_eq!(hub.eos_token_ids, vec![1, 106]);
    }

    #[test]
    fn bad_layer_types_are_named() {
        let raw: RawConfig = serde_json::from_value(serde_json::json!({"num_hidden_layers": 1, "layer_types": ["chunked"]})).unwrap();
        assert!(raw.resolve().unwrap_err().contains("chunked"));
    }
}
