//! Greedy generation: the prompt forward, then one argmax token at a time until EOS or
//! `max_new_tokens`. The caller owns the probe; the cache lives only for this call.

use std::time::Instant;

use candle_core::{D, Tensor};

use super::VisionLanguageModel;
use super::error::Result;
use super::kv_cache::KvCache;
use super::probe::Probe;

#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated ids, EOS included when it was produced (as transformers' `generate`).
    pub ids: Vec<u32>,
    /// Logits `[V]` that produced each id; `[0]` is the prompt's last position.
    pub step_logits: Vec<Vec<f32>>,
    pub stopped_at_eos: bool,
    /// Until the first id is known (on a GPU, reading it waits for the forward to finish).
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Each decode step until its id is known.
    pub step_ms: Vec<f64>,
}

impl Generation {
    pub fn prompt_last_logits(&self) -> &[f32] {
        &self.step_logits[0]
    }

    /// Ids without a final EOS.
    pub fn answer_ids(&self) -> &[u32] {
        if self.stopped_at_eos { &self.ids[..self.ids.len() - 1] } else { &self.ids }
    }
}

pub fn greedy(
    model: &dyn VisionLanguageModel,
    input_ids: &[u32],
    pixel_values: &Tensor,
    max_new_tokens: usize,
    probe: &mut dyn Probe,
) -> Result<Generation> {
    let features = model.encode_image(pixel_values, probe)?;
    greedy_from(model, input_ids, &features, None, max_new_tokens, probe)
}

/// A prompt prefix already run: its cache and its length in tokens.
pub struct Prefix<'a> {
    pub cache: &'a KvCache,
    pub len: usize,
}

/// Greedy generation from encoded image features, continuing from a cached prompt prefix when
/// given (the prefix's tokens must equal `input_ids[..prefix.len]`).
pub fn greedy_from(
    model: &dyn VisionLanguageModel,
    input_ids: &[u32],
    features: &Tensor,
    prefix: Option<Prefix<'_>>,
    max_new_tokens: usize,
    probe: &mut dyn Probe,
) -> Result<Generation> {
    if max_new_tokens == 0 {
        return Err(super::error::ModelError::Invalid("max_new_tokens must be at least 1".into()));
    }
    let (mut cache, start) = match prefix {
        Some(p) if p.len < input_ids.len() => (p.cache.clone(), p.len),
        _ => (model.new_cache(), 0),
    };
    let t0 = Instant::now();
    let mut logits = model.prefill_from(input_ids, start, features, &mut cache, probe)?;
    let mut next = logits.argmax(D::Minus1)?.to_scalar::<u32>()?;
    let prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let mut out =
        Generation { ids: Vec::new(), step_logits: Vec::new(), stopped_at_eos: false, prefill_ms, decode_ms: 0.0, step_ms: Vec::new() };
    loop {
        out.step_logits.push(logits.to_vec1::<f32>()?);
        out.ids.push(next);
        if model.eos_token_ids().contains(&next) {
            out.stopped_at_eos = true;
            break;
        }
        if out.ids.len() == max_new_tokens {
            break;
        }
        let t = Instant::now();
        logits = model.decode_step(next, &mut cache, probe)?;
        next = logits.argmax(D::Minus1)?.to_scalar::<u32>()?;
        out.step_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    out.decode_ms = t1.elapsed().as_secs_f64() * 1e3;
    Ok(out)
}
