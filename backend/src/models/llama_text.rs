//! The Llama text model (LLaVA-1.5's Vicuna): GQA, RoPE, RMSNorm, SiLU MLP, KV cache.
//! Field names are the checkpoint's leaf names, so one grep finds code and key.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::Deserialize;

use super::attention::{AttnSpec, attend};
use super::config::{OneOrMany, RopeParameters};
pub use super::kv_cache::KvCache;
use super::linear::{Linear as ProjLinear, WeightFormat};
use super::mask::{MaskKind, attention_mask};
use super::norm::RmsNorm;
use super::probe::{Probe, SiteName};
use super::rope::{RopeTables, RotaryEmbedding};

/// `text_config` as written in config.json; defaults are transformers' `LlamaConfig` defaults,
/// which real LLaVA-1.5 configs rely on (they omit most fields).
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
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default = "d_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_eps")]
    pub rms_norm_eps: f64,
    pub rope_theta: Option<f64>,
    /// transformers 5.x: `{"rope_theta": .., "rope_type": "default"}`.
    pub rope_parameters: Option<RopeParameters>,
    /// transformers 4.x: `{"rope_type": "linear", "factor": ..}`.
    pub rope_scaling: Option<RopeParameters>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<OneOrMany>,
}

fn d_vocab() -> usize {
    32000
}
fn d_hidden() -> usize {
    4096
}
fn d_intermediate() -> usize {
    11008
}
fn d_layers() -> usize {
    32
}
fn d_heads() -> usize {
    32
}
fn d_act() -> String {
    "silu".into()
}
fn d_max_pos() -> usize {
    2048
}
fn d_eps() -> f64 {
    1e-6
}

/// The resolved text config: every default settled, nothing optional.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub max_positions: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_linear_factor: f64,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v (Llama's `attention_bias`; always on in Qwen2).
    pub attention_bias: bool,
    /// Bias on o_proj: Llama's `attention_bias` covers it, Qwen2 has none there.
    pub o_proj_bias: bool,
    pub mlp_bias: bool,
    pub bos_token_id: u32,
    pub eos_token_ids: Vec<u32>,
}

impl RawConfig {
    /// Resolves defaults; an unsupported setting is an error naming the field.
    pub fn resolve(self) -> Result<Config, String> {
        if self.hidden_act != "silu" {
            return Err(format!("text_config.hidden_act = {:?}: only silu is supported", self.hidden_act));
        }
        let heads = self.num_attention_heads;
        let kv = self.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv == 0 || !heads.is_multiple_of(kv) {
            return Err(format!("text_config: {heads} attention heads cannot share {kv} key/value heads"));
        }
        let head_dim = self.head_dim.unwrap_or(self.hidden_size / heads);
        let rope = self.rope_parameters.as_ref().or(self.rope_scaling.as_ref());
        let rope_theta = self.rope_parameters.as_ref().and_then(|r| r.rope_theta).or(self.rope_theta).unwrap_or(10000.0);
        let rope_linear_factor = rope.map_or(Ok(1.0), |r| r.linear_factor("text_config"))?;
        Ok(Config {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: heads,
            num_kv_heads: kv,
            head_dim,
            max_positions: self.max_position_embeddings,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta,
            rope_linear_factor,
            tie_word_embeddings: self.tie_word_embeddings,
            attention_bias: self.attention_bias,
            o_proj_bias: self.attention_bias,
            mlp_bias: self.mlp_bias,
            bos_token_id: self.bos_token_id.unwrap_or(1),
            eos_token_ids: self.eos_token_id.map(OneOrMany::into_vec).unwrap_or_else(|| vec![2]),
        })
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: ProjLinear,
    k_proj: ProjLinear,
    v_proj: ProjLinear,
    o_proj: ProjLinear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(cfg: &Config, vb: VarBuilder, format: WeightFormat) -> candle_core::Result<Self> {
        let (h, kv, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let lin = |i, o, bias, name| ProjLinear::load(i, o, bias, format, vb.pp(name));
        Ok(Self {
            q_proj: lin(cfg.hidden_size, h * d, cfg.attention_bias, "q_proj")?,
            k_proj: lin(cfg.hidden_size, kv * d, cfg.attention_bias, "k_proj")?,
            v_proj: lin(cfg.hidden_size, kv * d, cfg.attention_bias, "v_proj")?,
            o_proj: lin(h * d, cfg.hidden_size, cfg.o_proj_bias, "o_proj")?,
            num_heads: h,
            num_kv_heads: kv,
            head_dim: d,
        })
    }

    /// `start`: absolute position of the first row of `x`.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        rope: &RopeTables,
        start: usize,
        cache: &mut KvCache,
        layer: usize,
        mask: Option<&Tensor>,
        probe: &mut dyn Probe,
    ) -> candle_core::Result<Tensor> {
        let (b, seq, _) = x.dims3()?;
        let split = |t: Tensor, heads: usize| t.reshape((b, seq, heads, self.head_dim))?.transpose(1, 2); // [b, heads, seq, d]
        let q = rope.apply(&split(self.q_proj.forward(x)?, self.num_heads)?)?;
        let k = rope.apply(&split(self.k_proj.forward(x)?, self.num_kv_heads)?)?;
        let v = split(self.v_proj.forward(x)?, self.num_kv_heads)?.contiguous()?;
        let (k, v) = cache.append(layer, k, v)?;
        let spec = AttnSpec { scale: 1.0 / (self.head_dim as f64).sqrt(), softcap: None, mask };
        let out = attend(&q, &k, &v, &spec, SiteName::text_attn(layer), start, probe)?;
        let out = out.transpose(1, 2)?.reshape((b, seq, self.num_heads * self.head_dim))?;
        self.o_proj.forward(&out)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: ProjLinear,
    up_proj: ProjLinear,
    down_proj: ProjLinear,
}

impl Mlp {
    fn load(cfg: &Config, vb: VarBuilder, format: WeightFormat) -> candle_core::Result<Self> {
        let (h, i, bias) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Self {
            gate_proj: ProjLinear::load(h, i, bias, format, vb.pp("gate_proj"))?,
            up_proj: ProjLinear::load(h, i, bias, format, vb.pp("up_proj"))?,
            down_proj: ProjLinear::load(i, h, bias, format, vb.pp("down_proj"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let gate = self.gate_proj.forward(x)?.silu()?;
        self.down_proj.forward(&(gate * self.up_proj.forward(x)?)?)
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

/// The language model: `embed_tokens` and a forward over embeddings (so images can be spliced in).
#[derive(Debug, Clone)]
pub struct LlamaText {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: RotaryEmbedding,
    cfg: Config,
}

impl LlamaText {
    /// `vb` points at `language_model` (holding `model.*` and `lm_head`); `format` is how the
    /// decoder layers' projections are held.
    pub fn load(cfg: &Config, vb: VarBuilder, format: WeightFormat) -> candle_core::Result<Self> {
        let m = vb.pp("model");
        let embed_tokens = candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, m.pp("embed_tokens"))?;
        let layers = (0..cfg.num_layers)
            .map(|i| {
                let l = m.pp("layers").pp(i);
                Ok(DecoderLayer {
                    self_attn: Attention::load(cfg, l.pp("self_attn"), format)?,
                    mlp: Mlp::load(cfg, l.pp("mlp"), format)?,
                    input_layernorm: RmsNorm::load(cfg.hidden_size, cfg.rms_norm_eps, l.pp("input_layernorm"))?,
                    post_attention_layernorm: RmsNorm::load(cfg.hidden_size, cfg.rms_norm_eps, l.pp("post_attention_layernorm"))?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let norm = RmsNorm::load(cfg.hidden_size, cfg.rms_norm_eps, m.pp("norm"))?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::new(embed_tokens.embeddings().clone(), None)
        } else {
            candle_nn::linear_no_bias(cfg.hidden_size, cfg.vocab_size, vb.pp("lm_head"))?
        };
        let rope = RotaryEmbedding::new(cfg.head_dim, cfg.rope_theta, cfg.rope_linear_factor, vb.device())?;
        Ok(Self { embed_tokens, layers, norm, lm_head, rope, cfg: cfg.clone() })
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
        KvCache::new(self.cfg.num_layers)
    }

    /// `[seq]` ids -> `[1, seq, hidden]`.
    pub fn embed(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let ids = Tensor::new(ids, self.device())?;
        self.embed_tokens.forward(&ids)?.unsqueeze(0)
    }

    /// Runs the decoder over `embeds` `[1, seq, hidden]` that follow what `cache` holds; returns
    /// the hidden states after the final norm, `[1, seq, hidden]`.
    pub fn forward_embeds(&self, embeds: &Tensor, cache: &mut KvCache, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        let rope = self.rope.tables(cache.len(), embeds.dim(1)?, embeds.dtype())?;
        self.forward_embeds_rotated(embeds, &rope, cache, probe)
    }

    /// The frequencies RoPE tables are built from (Qwen2.5-VL builds its multimodal tables from
    /// them).
    pub fn rotary(&self) -> &RotaryEmbedding {
        &self.rope
    }

    /// [`Self::forward_embeds`] with the caller's RoPE tables for these rows (Qwen2.5-VL's
    /// multimodal positions); the mask stays causal over sequence positions.
    pub fn forward_embeds_rotated(
        &self,
        embeds: &Tensor,
        rope: &RopeTables,
        cache: &mut KvCache,
        probe: &mut dyn Probe,
    ) -> candle_core::Result<Tensor> {
        let seq = embeds.dim(1)?;
        let start = cache.len();
        // Sequence positions bound the rotary ones (Qwen2.5-VL's never exceed them).
        if start + seq > self.cfg.max_positions {
            candle_core::bail!("position {} is beyond the model's {} positions", start + seq - 1, self.cfg.max_positions);
        }
        let mask = attention_mask(start, seq, start + seq, MaskKind::Causal, &[], embeds.device())?;
        let mut x = embeds.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.input_layernorm.forward(&x)?;
            let attn = layer.self_attn.forward(&h, rope, start, cache, i, mask.as_ref(), probe)?;
            x = (x + attn)?;
            let mlp = layer.mlp.forward(&layer.post_attention_layernorm.forward(&x)?)?;
            x = (x + mlp)?;
        }
        self.norm.forward(&x)
    }

    /// Logits `[vocab]` (f32) of the last position of `hidden` `[1, seq, hidden]`.
    pub fn last_logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        let last = hidden.narrow(1, hidden.dim(1)? - 1, 1)?;
        self.lm_head.forward(&last)?.flatten_all()?.to_dtype(DType::F32)
    }
}
