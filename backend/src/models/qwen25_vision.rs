//! The Qwen2.5-VL vision tower (`visual.*`): 14-pixel patches with two identical frames
//! (Conv3d as one matmul over flattened patches), 2D rotary positions, RMSNorm blocks with a
//! biased SwiGLU MLP, window attention except in the `fullatt_block_indexes` blocks, and the 2x2
//! patch merger.
//!
//! Order of positions. The processor flattens patches 2x2 merge unit by merge unit (units
//! row-major over the `grid_h/2 x grid_w/2` token grid, patches row-major inside a unit). As
//! transformers, the blocks run in window order (the units permuted so that each window is a
//! contiguous run, [`windows`]), so a window block attends within each run: `O(patches x
//! window)` rather than `O(patches^2)`. What this tower returns is back in unit order. Captured
//! vision rows (`vision.blocks.N.attn.pattern`) are indexed in window order, and in a window
//! block each run's rows come with that window's keys only.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::Deserialize;

use super::activation::Activation;
use super::attention::{AttnSpec, attend};
use super::config::RopeParameters;
use super::norm::RmsNorm;
use super::probe::{Probe, SiteName};
use super::rope::{RopeTables, RotaryEmbedding};

/// transformers hard-codes the vision norms' epsilon.
const NORM_EPS: f64 = 1e-6;

/// `vision_config` as written (hub configs say `in_chans`, transformers 5 `in_channels`);
/// defaults are transformers' `Qwen2_5_VLVisionConfig` defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    #[serde(default = "d_depth")]
    pub depth: usize,
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default = "d_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_heads")]
    pub num_heads: usize,
    pub in_channels: Option<usize>,
    /// The hub's name for `in_channels` (a config may carry both).
    pub in_chans: Option<usize>,
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    #[serde(default = "d_merge")]
    pub spatial_merge_size: usize,
    #[serde(default = "d_temporal")]
    pub temporal_patch_size: usize,
    #[serde(default = "d_window")]
    pub window_size: usize,
    #[serde(default = "d_hidden")]
    pub out_hidden_size: usize,
    #[serde(default = "d_fullatt")]
    pub fullatt_block_indexes: Vec<usize>,
    pub rope_parameters: Option<RopeParameters>,
}

fn d_depth() -> usize {
    32
}
fn d_hidden() -> usize {
    3584
}
fn d_act() -> String {
    "silu".into()
}
fn d_intermediate() -> usize {
    3420
}
fn d_heads() -> usize {
    16
}
fn d_patch() -> usize {
    14
}
fn d_merge() -> usize {
    2
}
fn d_temporal() -> usize {
    2
}
fn d_window() -> usize {
    112
}
fn d_fullatt() -> Vec<usize> {
    vec![7, 15, 23, 31]
}

/// The resolved vision config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub depth: usize,
    pub hidden_size: usize,
    pub activation: Activation,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub in_channels: usize,
    pub patch_size: usize,
    pub spatial_merge_size: usize,
    pub temporal_patch_size: usize,
    /// Window side in pixels (112: 4 x 4 tokens of 28 pixels).
    pub window_size: usize,
    pub out_hidden_size: usize,
    pub fullatt_block_indexes: Vec<usize>,
    pub rope_theta: f64,
}

impl RawConfig {
    pub fn resolve(self) -> Result<Config, String> {
        let activation = Activation::parse(&self.hidden_act).map_err(|e| format!("vision_config.hidden_act: {e}"))?;
        if self.num_heads == 0 || !self.hidden_size.is_multiple_of(self.num_heads) || !(self.hidden_size / self.num_heads).is_multiple_of(4)
        {
            return Err(format!(
                "vision_config: hidden_size {} must split into {} heads whose size is a multiple of 4 (2D rotary)",
                self.hidden_size, self.num_heads
            ));
        }
        let factor = self.patch_size * self.spatial_merge_size;
        if factor == 0 || !self.window_size.is_multiple_of(factor) {
            return Err(format!(
                "vision_config: window_size {} must be a multiple of patch_size x spatial_merge_size = {factor}",
                self.window_size
            ));
        }
        if let Some(&bad) = self.fullatt_block_indexes.iter().find(|&&i| i >= self.depth) {
            return Err(format!("vision_config.fullatt_block_indexes names block {bad}, but depth is {}", self.depth));
        }
        let in_channels = self.in_channels.or(self.in_chans).unwrap_or(3);
        let rope_theta = self.rope_parameters.as_ref().and_then(|r| r.rope_theta).unwrap_or(10000.0);
        Ok(Config {
            depth: self.depth,
            hidden_size: self.hidden_size,
            activation,
            intermediate_size: self.intermediate_size,
            num_heads: self.num_heads,
            in_channels,
            patch_size: self.patch_size,
            spatial_merge_size: self.spatial_merge_size,
            temporal_patch_size: self.temporal_patch_size,
            window_size: self.window_size,
            out_hidden_size: self.out_hidden_size,
            fullatt_block_indexes: self.fullatt_block_indexes,
            rope_theta,
        })
    }
}

impl Config {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Pixels per image token per side (28): resized images are multiples of it.
    pub fn factor(&self) -> usize {
        self.patch_size * self.spatial_merge_size
    }

    /// Values per flattened patch: channels x frames x patch x patch (1176).
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }

    /// The image-token grid `(rows, cols)` of an `height x width` pixel input.
    pub fn token_grid(&self, height: usize, width: usize) -> (usize, usize) {
        (height / self.factor(), width / self.factor())
    }
}

/// Window attention's partition of one image, as transformers' `get_vision_window_index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Windows {
    /// Merge units (row-major over the token grid) in window order.
    pub window_index: Vec<usize>,
    /// Cumulative window lengths in patches, starting at 0.
    pub cu_window_seqlens: Vec<usize>,
    /// The window of each merge unit.
    pub unit_window: Vec<usize>,
}

/// Windows of `window_tokens x window_tokens` merge units tile the `rows x cols` token grid from
/// the top left; the last row and column of windows are cut short by the grid.
pub fn windows(rows: usize, cols: usize, window_tokens: usize, merge_unit: usize) -> Windows {
    let (nwh, nww) = (rows.div_ceil(window_tokens), cols.div_ceil(window_tokens));
    let mut out = Windows { window_index: Vec::new(), cu_window_seqlens: vec![0], unit_window: vec![0; rows * cols] };
    for (w, (wr, wc)) in (0..nwh).flat_map(|r| (0..nww).map(move |c| (r, c))).enumerate() {
        for r in wr * window_tokens..((wr + 1) * window_tokens).min(rows) {
            for c in wc * window_tokens..((wc + 1) * window_tokens).min(cols) {
                out.window_index.push(r * cols + c);
                out.unit_window[r * cols + c] = w;
            }
        }
        let end = out.window_index.len() * merge_unit;
        // transformers drops repeated boundaries (`unique_consecutive`); every window here is
        // non-empty, so none repeat.
        out.cu_window_seqlens.push(end);
    }
    out
}

/// The `(row, col)` patch coordinates in unit order (transformers' vision `position_ids`).
pub fn patch_positions(grid_h: usize, grid_w: usize, merge: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(grid_h * grid_w);
    for bh in 0..grid_h / merge {
        for bw in 0..grid_w / merge {
            for i in 0..merge {
                for j in 0..merge {
                    out.push((bh * merge + i, bw * merge + j));
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Attention {
    qkv: Linear,
    proj: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// `x`: `[seq, hidden]` in window order; `windows`: each window's `(start, len)`, `None` in
    /// full-attention blocks.
    fn forward(
        &self,
        x: &Tensor,
        rope: &RopeTables,
        windows: Option<&[(usize, usize)]>,
        layer: usize,
        probe: &mut dyn Probe,
    ) -> candle_core::Result<Tensor> {
        let (seq, hidden) = x.dims2()?;
        let qkv = self.qkv.forward(x)?.reshape((seq, 3, self.num_heads, self.head_dim))?.permute((1, 2, 0, 3))?; // [3, heads, seq, d]
        // As transformers, q and k are rotated in f32 and cast back.
        let rotate = |t: Tensor| rope.apply(&t.unsqueeze(0)?.to_dtype(DType::F32)?)?.to_dtype(x.dtype());
        let q = rotate(qkv.get(0)?)?;
        let k = rotate(qkv.get(1)?)?;
        let v = qkv.get(2)?.unsqueeze(0)?.contiguous()?;
        let spec = AttnSpec { scale: 1.0 / (self.head_dim as f64).sqrt(), softcap: None, mask: None };
        let at = SiteName::vision_attn(layer);
        let out = match windows {
            None => attend(&q, &k, &v, &spec, at, 0, probe)?,
            Some(runs) => {
                let part = |t: &Tensor, s: usize, n: usize| t.narrow(2, s, n)?.contiguous();
                let outs = runs
                    .iter()
                    .map(|&(s, n)| attend(&part(&q, s, n)?, &part(&k, s, n)?, &part(&v, s, n)?, &spec, at, s, probe))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::cat(&outs, 2)?
            }
        }; // [1, heads, seq, d]
        self.proj.forward(&out.squeeze(0)?.transpose(0, 1)?.reshape((seq, hidden))?)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    activation: Activation,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let gate = self.activation.apply(&self.gate_proj.forward(x)?)?;
        self.down_proj.forward(&(gate * self.up_proj.forward(x)?)?)
    }
}

#[derive(Debug, Clone)]
struct Block {
    norm1: RmsNorm,
    attn: Attention,
    norm2: RmsNorm,
    mlp: Mlp,
}

/// `ln_q`, then 4 neighbouring patches concatenated, then `mlp.0`, GELU (erf), `mlp.2`.
#[derive(Debug, Clone)]
struct Merger {
    ln_q: RmsNorm,
    mlp_0: Linear,
    mlp_2: Linear,
    unit_dim: usize,
}

/// The per-image inputs the blocks share, all in window order.
struct Layout {
    rope: RopeTables,
    /// Each window's `(start, len)` in patches; `None` when one window holds the whole image.
    windows: Option<Vec<(usize, usize)>>,
    /// Unit-order patch index per window-order position, and the converse.
    to_window: Tensor,
    to_unit: Tensor,
}

pub struct QwenVision {
    /// Conv3d kernel flattened to `[hidden, patch_dim]` (stride = kernel, so a matmul).
    patch_embed: Tensor,
    blocks: Vec<Block>,
    merger: Merger,
    rotary: RotaryEmbedding,
    cfg: Config,
}

impl QwenVision {
    /// `vb` points at `visual`.
    pub fn load(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (d, p, t) = (cfg.hidden_size, cfg.patch_size, cfg.temporal_patch_size);
        let patch_embed = vb.pp("patch_embed").pp("proj").get((d, cfg.in_channels, t, p, p), "weight")?.reshape((d, cfg.patch_dim()))?;
        let blocks = (0..cfg.depth)
            .map(|i| {
                let b = vb.pp("blocks").pp(i);
                let (a, m) = (b.pp("attn"), b.pp("mlp"));
                Ok(Block {
                    norm1: RmsNorm::load(d, NORM_EPS, b.pp("norm1"))?,
                    attn: Attention {
                        qkv: candle_nn::linear(d, 3 * d, a.pp("qkv"))?,
                        proj: candle_nn::linear(d, d, a.pp("proj"))?,
                        num_heads: cfg.num_heads,
                        head_dim: cfg.head_dim(),
                    },
                    norm2: RmsNorm::load(d, NORM_EPS, b.pp("norm2"))?,
                    mlp: Mlp {
                        gate_proj: candle_nn::linear(d, cfg.intermediate_size, m.pp("gate_proj"))?,
                        up_proj: candle_nn::linear(d, cfg.intermediate_size, m.pp("up_proj"))?,
                        down_proj: candle_nn::linear(cfg.intermediate_size, d, m.pp("down_proj"))?,
                        activation: cfg.activation,
                    },
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let unit_dim = d * cfg.spatial_merge_size * cfg.spatial_merge_size;
        let mg = vb.pp("merger");
        let merger = Merger {
            ln_q: RmsNorm::load(d, NORM_EPS, mg.pp("ln_q"))?,
            mlp_0: candle_nn::linear(unit_dim, unit_dim, mg.pp("mlp").pp(0))?,
            mlp_2: candle_nn::linear(unit_dim, cfg.out_hidden_size, mg.pp("mlp").pp(2))?,
            unit_dim,
        };
        // The 2D rotary's frequencies: head_dim / 4 of them, shared by rows and columns.
        let rotary = RotaryEmbedding::new(cfg.head_dim() / 2, cfg.rope_theta, 1.0, vb.device())?;
        Ok(Self { patch_embed, blocks, merger, rotary, cfg: cfg.clone() })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Checks that `pixel_values` `[1, C, H, W]` tiles into merge units; returns the patch grid.
    pub fn patch_grid(&self, pixel_values: &Tensor) -> candle_core::Result<(usize, usize)> {
        let (b, c, h, w) = pixel_values.dims4()?;
        let f = self.cfg.factor();
        if b != 1 || c != self.cfg.in_channels || h == 0 || w == 0 || h % f != 0 || w % f != 0 {
            candle_core::bail!(
                "Qwen2.5-VL takes one [1, {}, H, W] image with H and W multiples of {f}, got {:?}",
                self.cfg.in_channels,
                pixel_values.dims()
            );
        }
        Ok((h / self.cfg.patch_size, w / self.cfg.patch_size))
    }

    /// `[1, C, H, W]` -> `[patches, C * T * P * P]` in unit order, each patch's frame repeated
    /// `temporal_patch_size` times, as the processor's `patchify` lays out `pixel_values`.
    /// Differentiable: reshapes and a broadcast only.
    pub fn patchify(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        let (gh, gw) = self.patch_grid(pixel_values)?;
        let (c, p, m, t) = (self.cfg.in_channels, self.cfg.patch_size, self.cfg.spatial_merge_size, self.cfg.temporal_patch_size);
        let x = pixel_values.reshape(vec![c, gh / m, m, p, gw / m, m, p])?;
        let x = x.permute([1, 4, 2, 5, 0, 3, 6])?; // [gh/m, gw/m, m, m, c, p, p]
        let x = x.unsqueeze(5)?.broadcast_as(vec![gh / m, gw / m, m, m, c, t, p, p])?;
        x.contiguous()?.reshape((gh * gw, self.cfg.patch_dim()))
    }

    /// Patch embeddings `[patches, hidden]` of flattened patches.
    pub fn embed_patches(&self, patches: &Tensor) -> candle_core::Result<Tensor> {
        patches.to_dtype(self.patch_embed.dtype())?.matmul(&self.patch_embed.t()?)
    }

    /// The window partition of a `grid_h x grid_w` patch grid.
    pub fn windows(&self, grid_h: usize, grid_w: usize) -> Windows {
        let m = self.cfg.spatial_merge_size;
        windows(grid_h / m, grid_w / m, self.cfg.window_size / self.cfg.factor(), m * m)
    }

    fn layout(&self, grid_h: usize, grid_w: usize, device: &Device) -> candle_core::Result<Layout> {
        let freqs = self.rotary.inv_freq();
        let positions = patch_positions(grid_h, grid_w, self.cfg.spatial_merge_size);
        let per_unit = self.cfg.spatial_merge_size * self.cfg.spatial_merge_size;
        let w = self.windows(grid_h, grid_w);
        let to_window: Vec<u32> = w.window_index.iter().flat_map(|&u| (u * per_unit..(u + 1) * per_unit).map(|p| p as u32)).collect();
        let mut to_unit = vec![0u32; to_window.len()];
        for (k, &p) in to_window.iter().enumerate() {
            to_unit[p as usize] = k as u32;
        }
        let half = 2 * freqs.len();
        let mut angles = Vec::with_capacity(positions.len() * half);
        for &p in &to_window {
            let (r, c) = positions[p as usize];
            angles.extend(freqs.iter().map(|f| r as f32 * f));
            angles.extend(freqs.iter().map(|f| c as f32 * f));
        }
        let rope = RopeTables::from_angles(angles, positions.len(), half, DType::F32, device)?;
        let runs: Vec<(usize, usize)> = w.cu_window_seqlens.windows(2).map(|b| (b[0], b[1] - b[0])).collect();
        let n = to_window.len();
        Ok(Layout {
            rope,
            windows: (runs.len() > 1).then_some(runs),
            to_window: Tensor::from_vec(to_window, n, device)?,
            to_unit: Tensor::from_vec(to_unit, n, device)?,
        })
    }

    /// Every block's output `[patches, hidden]` in unit order, after the patch embedding (first).
    pub fn hidden_states(&self, pixel_values: &Tensor, probe: &mut dyn Probe) -> candle_core::Result<Vec<Tensor>> {
        let (gh, gw) = self.patch_grid(pixel_values)?;
        let layout = self.layout(gh, gw, pixel_values.device())?;
        let embedded = self.embed_patches(&self.patchify(pixel_values)?)?;
        let mut x = embedded.index_select(&layout.to_window, 0)?;
        let mut states = vec![embedded];
        for (i, block) in self.blocks.iter().enumerate() {
            let windows = if self.cfg.fullatt_block_indexes.contains(&i) { None } else { layout.windows.as_deref() };
            let attn = block.attn.forward(&block.norm1.forward(&x)?, &layout.rope, windows, i, probe)?;
            x = (x + attn)?;
            x = (&x + block.mlp.forward(&block.norm2.forward(&x)?)?)?;
            states.push(x.index_select(&layout.to_unit, 0)?);
        }
        Ok(states)
    }

    /// The merger: `[patches, hidden]` (unit order) -> `[tokens, out_hidden]`, tokens row-major
    /// over the token grid.
    pub fn merge(&self, last: &Tensor) -> candle_core::Result<Tensor> {
        let m = &self.merger;
        let x = m.ln_q.forward(last)?.reshape(((), m.unit_dim))?;
        m.mlp_2.forward(&m.mlp_0.forward(&x)?.gelu_erf()?)
    }

    /// What replaces the image tokens, `[tokens, out_hidden]`, row-major over the token grid.
    pub fn forward(&self, pixel_values: &Tensor, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        let states = self.hidden_states(pixel_values, probe)?;
        self.merge(states.last().expect("the embeddings at least"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers' `get_vision_window_index` on a 6 x 10 token grid with 4 x 4 windows:
    /// windows of 16, 16, 8 (top) and 8, 8, 4 units (bottom), unit indices row-major.
    #[test]
    fn windows_tile_a_non_square_grid_as_transformers() {
        let w = windows(6, 10, 4, 4);
        assert_eq!(w.cu_window_seqlens, vec![0, 64, 128, 160, 192, 224, 240]);
        assert_eq!(&w.window_index[..5], &[0, 1, 2, 3, 10]);
        // The third window (top right) holds columns 8..10 of rows 0..4.
        assert_eq!(&w.window_index[32..40], &[8, 9, 18, 19, 28, 29, 38, 39]);
        // The last window (bottom right) holds columns 8..10 of rows 4..6.
        assert_eq!(&w.window_index[56..], &[48, 49, 58, 59]);
        let mut sorted = w.window_index.clone();
        sorted.sort();
        assert_eq!(sorted, (0..60).collect::<Vec<_>>());
        assert_eq!(w.unit_window[59], 5);
        assert_eq!(w.unit_window[7], 1);
    }

    /// A grid that is a whole number of windows: transformers pads a full empty window and
    /// drops its repeated boundary; the result is the plain tiling.
    #[test]
    fn whole_windows_have_no_empty_window() {
        let w = windows(4, 8, 4, 4);
        assert_eq!(w.cu_window_seqlens, vec![0, 64, 128]);
    }

    #[test]
    fn patch_positions_go_unit_by_unit() {
        let p = patch_positions(2, 4, 2);
        assert_eq!(p, vec![(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (0, 3), (1, 2), (1, 3)]);
    }
}
