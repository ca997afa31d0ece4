//! Capture sites and the probe that reads them.
//!
//! A capture site is a named place on the forward path (`text.blocks.12.attn.pattern`). The
//! caller decides before the forward which sites and which query rows to keep (a
//! [`CapturePolicy`]) and passes a [`Probe`] into the forward as an argument; the model never
//! stores it. Where the probe wants nothing, the attention takes exactly the path it takes with
//! [`NoProbe`], and nothing is materialised that was not asked for.

use std::collections::BTreeMap;
use std::ops::Range;

use candle_core::Tensor;

pub use radlens_shared::site::{Site, SiteName, Tower};

/// Receives the slices of activations that it asked for.
pub trait Probe {
    /// Which of this forward's query rows to keep at `at`, as indices into `query_positions`
    /// (the absolute sequence positions of the rows being computed). Empty: keep nothing.
    fn rows_wanted(&self, at: &SiteName, query_positions: Range<usize>) -> Vec<usize>;

    /// The kept rows: `probs` is `[heads, rows, keys]` f32, `positions` their absolute positions.
    fn take(&mut self, at: &SiteName, positions: &[usize], probs: &Tensor) -> candle_core::Result<()>;
}

/// Keeps nothing: the forward runs as if no capture existed.
pub struct NoProbe;

impl Probe for NoProbe {
    fn rows_wanted(&self, _: &SiteName, _: Range<usize>) -> Vec<usize> {
        Vec::new()
    }

    fn take(&mut self, _: &SiteName, _: &[usize], _: &Tensor) -> candle_core::Result<()> {
        Ok(())
    }
}

/// Which query rows of the text model to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSelection {
    /// Prompt positions to keep during the prompt forward (e.g. the last prompt token, or the
    /// tokens of a term).
    pub prompt_positions: Vec<usize>,
    /// Keep the row of every token fed during decoding (the rows that predict answer tokens 2..).
    pub decode_steps: bool,
}

/// Decided before the forward: which text layers and which rows to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturePolicy {
    pub layers: Vec<usize>,
    pub rows: RowSelection,
    /// Length of the prompt: rows at positions >= it are decode steps.
    pub prompt_len: usize,
}

/// One kept attention row block: `[heads, keys]` probabilities, f32, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedRow {
    pub heads: usize,
    pub keys: usize,
    pub probs: Vec<f32>,
}

impl CapturedRow {
    pub fn head(&self, h: usize) -> &[f32] {
        &self.probs[h * self.keys..(h + 1) * self.keys]
    }
}

/// A probe that records the text attention rows its policy names, keyed by (layer, position).
#[derive(Debug, Clone)]
pub struct AttentionRecorder {
    policy: CapturePolicy,
    rows: BTreeMap<(usize, usize), CapturedRow>,
}

impl AttentionRecorder {
    pub fn new(policy: CapturePolicy) -> Self {
        Self { policy, rows: BTreeMap::new() }
    }

    pub fn policy(&self) -> &CapturePolicy {
        &self.policy
    }

    pub fn row(&self, layer: usize, position: usize) -> Option<&CapturedRow> {
        self.rows.get(&(layer, position))
    }

    /// Positions that have a row at `layer`, ascending.
    pub fn positions(&self, layer: usize) -> Vec<usize> {
        self.rows.keys().filter(|(l, _)| *l == layer).map(|(_, p)| *p).collect()
    }

    /// Number of f32 values held: what capture costs in memory.
    pub fn stored_values(&self) -> usize {
        self.rows.values().map(|r| r.probs.len()).sum()
    }
}

impl Probe for AttentionRecorder {
    fn rows_wanted(&self, at: &SiteName, query_positions: Range<usize>) -> Vec<usize> {
        if at.tower != Tower::Text || at.site != Site::AttnPattern || !self.policy.layers.contains(&at.layer) {
            return Vec::new();
        }
        let start = query_positions.start;
        query_positions
            .filter(
                |&p| {
                    if p < self.policy.prompt_len { self.policy.rows.prompt_positions.contains(&p) } else { self.policy.rows.decode_steps }
                },
            )
            .map(|p| p - start)
            .collect()
    }

    fn take(&mut self, at: &SiteName, positions: &[usize], probs: &Tensor) -> candle_core::Result<()> {
        let (heads, rows, keys) = probs.dims3()?;
        debug_assert_eq!(rows, positions.len());
        // [heads, rows, keys] -> per row [heads, keys]
        let per_row = probs.transpose(0, 1)?.contiguous()?;
        for (r, &pos) in positions.iter().enumerate() {
            let probs = per_row.get(r)?.flatten_all()?.to_vec1::<f32>()?;
            self.rows.insert((at.layer, pos), CapturedRow { heads, keys, probs });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_wants_only_its_layers_and_rows() {
        let rec = AttentionRecorder::new(CapturePolicy {
            layers: vec![2],
            rows: RowSelection { prompt_positions: vec![9], decode_steps: true },
            prompt_len: 10,
        });
        // Prompt forward over positions 0..10: only the last prompt row (index 9).
        assert_eq!(rec.rows_wanted(&SiteName::text_attn(2), 0..10), vec![9]);
        assert!(rec.rows_wanted(&SiteName::text_attn(1), 0..10).is_empty());
        assert!(rec.rows_wanted(&SiteName::vision_attn(2), 0..10).is_empty());
        // A decode step at position 11: its single row.
        assert_eq!(rec.rows_wanted(&SiteName::text_attn(2), 11..12), vec![0]);
    }
}
