//! The Qwen2 decoder of Qwen2.5-VL. Its layers are Llama's with a bias on q/k/v (none on
//! o_proj), so they run in [`super::llama_text`]; what is Qwen's own is the config and the
//! multimodal rotary position (`mrope`): every position has a (temporal, row, column) triple,
//! and the rotary frequencies are split into `mrope_section` groups, each rotated by one
//! component of the triple. Text tokens have three equal components, i.e. plain RoPE.

use candle_core::{DType, Device};
use serde::Deserialize;

use super::config::OneOrMany;
use super::llama_text;
use super::rope::{RopeTables, RotaryEmbedding};

/// `rope_parameters` (transformers 5) or `rope_scaling` (hub configs, `"type": "mrope"`).
#[derive(Debug, Clone, Deserialize)]
pub struct RawRope {
    pub rope_theta: Option<f64>,
    /// Some hub configs carry both spellings (`"rope_type": "default", "type": "default"`).
    pub rope_type: Option<String>,
    #[serde(rename = "type")]
    pub legacy_type: Option<String>,
    pub mrope_section: Option<Vec<usize>>,
}

/// The text fields, from `text_config` (transformers 5) or the top level of config.json (hub
/// configs); defaults are transformers' `Qwen2_5_VLTextConfig` defaults.
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
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default = "d_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_eps")]
    pub rms_norm_eps: f64,
    pub rope_theta: Option<f64>,
    pub rope_parameters: Option<RawRope>,
    pub rope_scaling: Option<RawRope>,
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<OneOrMany>,
}

fn d_vocab() -> usize {
    152_064
}
fn d_hidden() -> usize {
    8192
}
fn d_intermediate() -> usize {
    29_568
}
fn d_layers() -> usize {
    80
}
fn d_heads() -> usize {
    64
}
fn d_act() -> String {
    "silu".into()
}
fn d_max_pos() -> usize {
    32_768
}
fn d_eps() -> f64 {
    1e-5
}

/// The resolved decoder config: Llama's, plus the mrope split.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub llama: llama_text::Config,
    /// Rotary frequencies rotated by the temporal, row and column components; sums to
    /// `head_dim / 2`.
    pub mrope_section: [usize; 3],
}

impl RawConfig {
    /// `tie_word_embeddings` may also sit at the top level (`tie_top`).
    pub fn resolve(self, tie_top: bool) -> Result<Config, String> {
        if self.hidden_act != "silu" {
            return Err(format!("text hidden_act = {:?}: only silu is supported", self.hidden_act));
        }
        if self.use_sliding_window {
            return Err("use_sliding_window = true is not supported (transformers' eager attention ignores it too)".into());
        }
        let heads = self.num_attention_heads;
        let kv = self.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv == 0 || !heads.is_multiple_of(kv) || !self.hidden_size.is_multiple_of(heads) {
            return Err(format!("text: hidden_size {} with {heads} heads and {kv} key/value heads", self.hidden_size));
        }
        let head_dim = self.hidden_size / heads;
        let rope = self.rope_parameters.as_ref().or(self.rope_scaling.as_ref());
        for t in rope.iter().flat_map(|r| [r.rope_type.as_deref(), r.legacy_type.as_deref()]).flatten() {
            if !matches!(t, "default" | "mrope") {
                return Err(format!("text RoPE type {t:?} is not supported (default, mrope)"));
            }
        }
        let rope_theta = rope.and_then(|r| r.rope_theta).or(self.rope_theta).unwrap_or(1_000_000.0);
        let section = rope.and_then(|r| r.mrope_section.clone()).unwrap_or_else(|| vec![16, 24, 24]);
        let mrope_section: [usize; 3] =
            section.as_slice().try_into().map_err(|_| format!("mrope_section {section:?} must have 3 entries (temporal, row, column)"))?;
        if mrope_section.iter().sum::<usize>() != head_dim / 2 {
            return Err(format!("mrope_section {section:?} must sum to head_dim / 2 = {}", head_dim / 2));
        }
        Ok(Config {
            llama: llama_text::Config {
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
                rope_linear_factor: 1.0,
                tie_word_embeddings: self.tie_word_embeddings || tie_top,
                attention_bias: true,
                o_proj_bias: false,
                mlp_bias: false,
                bos_token_id: self.bos_token_id.unwrap_or(151_643),
                eos_token_ids: self.eos_token_id.map(OneOrMany::into_vec).unwrap_or_else(|| vec![151_645]),
            },
            mrope_section,
        })
    }
}

/// One position's (temporal, row, column) rotary components.
pub type MropePosition = [i64; 3];

/// The cos/sin tables of `positions`: frequency `j` is rotated by component 0 for the first
/// `section[0]` frequencies, 1 for the next `section[1]`, 2 for the rest (transformers'
/// `recomposition_frequencies`).
pub fn mrope_tables(
    rotary: &RotaryEmbedding,
    positions: &[MropePosition],
    section: [usize; 3],
    dtype: DType,
    device: &Device,
) -> candle_core::Result<RopeTables> {
    let freqs = rotary.inv_freq();
    let component: Vec<usize> =
        (0..freqs.len()).map(|j| usize::from(j >= section[0]) + usize::from(j >= section[0] + section[1])).collect();
    let mut angles = Vec::with_capacity(positions.len() * freqs.len());
    for p in positions {
        angles.extend(freqs.iter().zip(&component).map(|(f, &c)| p[c] as f32 * f));
    }
    RopeTables::from_angles(angles, positions.len(), freqs.len(), dtype, device)
}

/// transformers' `get_rope_index` for a prompt with at most one image: text tokens count up
/// from 0 in all three components; the image's `rows x cols` tokens (row-major) take
/// `(start, start + r, start + c)`, and the text after it continues from `start + max(rows,
/// cols)`. Returns the positions and `rope_delta` (max position + 1 - length), what a decoded
/// token adds to its sequence position.
pub fn rope_index(input_ids: &[u32], image_token_id: u32, grid: Option<(usize, usize)>) -> Result<(Vec<MropePosition>, i64), String> {
    let mut positions = Vec::with_capacity(input_ids.len());
    let mut next = 0i64;
    let mut i = 0;
    let mut images = 0;
    while i < input_ids.len() {
        if input_ids[i] != image_token_id {
            positions.push([next; 3]);
            next += 1;
            i += 1;
            continue;
        }
        let run = input_ids[i..].iter().take_while(|&&t| t == image_token_id).count();
        images += 1;
        let (rows, cols) = grid.ok_or("the prompt has image tokens but no image grid was given")?;
        if images > 1 || run != rows * cols {
            return Err(format!(
                "the prompt's image tokens ({run} in run {images}) do not match one {rows} x {cols} image (one image per prompt is supported)"
            ));
        }
        for r in 0..rows as i64 {
            for c in 0..cols as i64 {
                positions.push([next, next + r, next + c]);
            }
        }
        next += rows.max(cols) as i64;
        i += run;
    }
    let max = positions.iter().flat_map(|p| p.iter().copied()).max().unwrap_or(-1);
    Ok((positions, max + 1 - input_ids.len() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tokens_take_row_and_column_positions() {
        // 2 text, a 2 x 3 image, 1 text.
        let ids = [1, 2, 9, 9, 9, 9, 9, 9, 3];
        let (pos, delta) = rope_index(&ids, 9, Some((2, 3))).unwrap();
        assert_eq!(&pos[..3], &[[0, 0, 0], [1, 1, 1], [2, 2, 2]]);
        assert_eq!(pos[2 + 5], [2, 3, 4]);
        // After the image: 2 + max(2, 3).
        assert_eq!(pos[8], [5, 5, 5]);
        assert_eq!(delta, 6 - 9);
        assert!(rope_index(&ids, 9, Some((2, 2))).is_err());
        assert_eq!(rope_index(&[1, 2], 9, None).unwrap().1, 0);
    }
}
