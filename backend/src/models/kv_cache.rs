//! Keys and values of every layer so far, grown by concatenation: sized to the sequence at
//! hand, never to `max_position_embeddings`.

use candle_core::Tensor;

#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>, // each [1, kv_heads, seq, head_dim]
    /// What the rotary position of a decoded token adds to its sequence position: Qwen2.5-VL's
    /// `rope_deltas` (an image of h x w tokens advances positions by max(h, w), not h * w), set
    /// by the prompt forward. 0 for the models whose positions are sequence positions.
    pub position_delta: i64,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![None; num_layers], position_delta: 0 }
    }

    /// Positions cached so far (read before a forward appends to any layer).
    pub fn len(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(k, _)| k.dim(2).unwrap_or(0))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends this step's keys and values to `layer` and returns all of them.
    pub fn append(&mut self, layer: usize, k: Tensor, v: Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let kv = match self.layers[layer].take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        self.layers[layer] = Some(kv.clone());
        Ok(kv)
    }
}
