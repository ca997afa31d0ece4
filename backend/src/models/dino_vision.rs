//! The DINOv2 ViT: LLaVA-Rad's BiomedCLIP-CXR trunk (timm `vit_base_patch14_dinov2` at 518 px:
//! 37 x 37 patches + CLS) and MAIRA-2's RAD-DINO (transformers' `Dinov2Backbone`). Conv patch
//! embedding with bias, CLS first, `+ pos_embed`, no pre-norm, pre-norm blocks with LayerScale
//! (`x + gamma * f(x)`), erf GELU, LayerNorm eps 1e-6; MAIRA-2 also takes the final LayerNorm
//! (`feature_maps`). timm names (`blocks.{i}.attn.qkv`, `ls1.gamma`, ...) under the trunk: the
//! transformers names are mapped onto them in `checkpoint::layout` (q/k/v as `attn.{q,k,v}`,
//! fused here at load).
//!
//! Position embeddings: the learned table covers `pos_grid x pos_grid` patches. An input with
//! another grid takes the table resized bicubically, as transformers' `Dinov2Embeddings.
//! interpolate_pos_encoding` (`F.interpolate(mode="bicubic", align_corners=False)` in f32, the
//! CLS row untouched); the table is used as is when the input has exactly its patch count and
//! is square (MAIRA-2 at 518 px = 37 x 37).

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Linear, VarBuilder};

use super::activation::Activation;
use super::attention::{AttnSpec, attend};
use super::norm::{LayerNorm, layer_norm};
use super::probe::{Probe, SiteName};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub width: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub mlp_hidden: usize,
    pub patch_size: usize,
    /// The input side in pixels (the processor's crop), which sets the image-token grid.
    pub image_size: usize,
    /// Side of the learned position table in patches (`vision_config.image_size / patch_size`);
    /// equal to [`Config::grid`] for LLaVA-Rad.
    pub pos_grid: usize,
    pub layer_norm_eps: f64,
    /// Whether the features take the final LayerNorm (`norm`; transformers' `layernorm`), as
    /// `Dinov2Backbone.feature_maps` with `apply_layernorm` (MAIRA-2). LLaVA-Rad takes a block's
    /// output as is.
    pub final_norm: bool,
}

impl Config {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}

/// PyTorch's cubic convolution weights (A = -0.75) for a fractional offset `t`, taps -1..=2.
fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// `F.interpolate(x, size=(out_h, out_w), mode="bicubic", align_corners=False)` of one
/// `[in_h, in_w]` plane per channel, `table` row-major `[in_h * in_w, channels]` (the position
/// table's layout): source `(i + 0.5) * in / out - 0.5`, not clamped, taps clamped to the edge.
pub fn bicubic_resize(table: &[f32], in_h: usize, in_w: usize, channels: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let taps = |out: usize, inp: usize| -> Vec<([usize; 4], [f32; 4])> {
        let scale = inp as f32 / out as f32;
        (0..out)
            .map(|o| {
                let src = (o as f32 + 0.5) * scale - 0.5;
                let floor = src.floor();
                let idx = std::array::from_fn(|k| (floor as i64 - 1 + k as i64).clamp(0, inp as i64 - 1) as usize);
                (idx, cubic_weights(src - floor))
            })
            .collect()
    };
    let (ys, xs) = (taps(out_h, in_h), taps(out_w, in_w));
    let mut out = vec![0f32; out_h * out_w * channels];
    for (oy, (yi, yw)) in ys.iter().enumerate() {
        for (ox, (xi, xw)) in xs.iter().enumerate() {
            let dst = &mut out[(oy * out_w + ox) * channels..][..channels];
            for (&y, &wy) in yi.iter().zip(yw) {
                // Along x first, then y, as PyTorch's separable kernel.
                for c in 0..channels {
                    let row: f32 = xi.iter().zip(xw).map(|(&x, &wx)| table[(y * in_w + x) * channels + c] * wx).sum();
                    dst[c] += row * wy;
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ls1: Tensor,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    ls2: Tensor,
    num_heads: usize,
}

impl Block {
    fn load(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.width;
        Ok(Self {
            norm1: layer_norm(d, cfg.layer_norm_eps, vb.pp("norm1"))?,
            qkv: Self::qkv(d, vb.pp("attn"))?,
            proj: candle_nn::linear(d, d, vb.pp("attn").pp("proj"))?,
            ls1: vb.pp("ls1").get(d, "gamma")?,
            norm2: layer_norm(d, cfg.layer_norm_eps, vb.pp("norm2"))?,
            fc1: candle_nn::linear(d, cfg.mlp_hidden, vb.pp("mlp").pp("fc1"))?,
            fc2: candle_nn::linear(cfg.mlp_hidden, d, vb.pp("mlp").pp("fc2"))?,
            ls2: vb.pp("ls2").get(d, "gamma")?,
            num_heads: cfg.num_heads,
        })
    }

    /// timm's fused `qkv`, or transformers' separate `q`, `k`, `v` (renamed from
    /// `attention.attention.{query,key,value}`) stacked in that order.
    fn qkv(d: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
        if vb.contains_tensor("qkv.weight") || !vb.contains_tensor("q.weight") {
            return candle_nn::linear(d, 3 * d, vb.pp("qkv"));
        }
        let part = |n: &str| -> candle_core::Result<(Tensor, Tensor)> { Ok((vb.pp(n).get((d, d), "weight")?, vb.pp(n).get(d, "bias")?)) };
        let ((wq, bq), (wk, bk), (wv, bv)) = (part("q")?, part("k")?, part("v")?);
        Ok(Linear::new(Tensor::cat(&[wq, wk, wv], 0)?, Some(Tensor::cat(&[bq, bk, bv], 0)?)))
    }

    fn attention(&self, x: &Tensor, layer: usize, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        let (b, seq, d) = x.dims3()?;
        let head_dim = d / self.num_heads;
        // qkv rows are q, then k, then v: [b, seq, 3, heads, hd] -> 3 x [b, heads, seq, hd].
        let qkv = self.qkv.forward(x)?.reshape((b, seq, 3, self.num_heads, head_dim))?.permute((2, 0, 3, 1, 4))?;
        let (q, k, v) = (qkv.get(0)?.contiguous()?, qkv.get(1)?.contiguous()?, qkv.get(2)?.contiguous()?);
        let spec = AttnSpec { scale: 1.0 / (head_dim as f64).sqrt(), softcap: None, mask: None };
        let out = attend(&q, &k, &v, &spec, SiteName::vision_attn(layer), 0, probe)?;
        self.proj.forward(&out.transpose(1, 2)?.reshape((b, seq, d))?)
    }

    fn forward(&self, x: &Tensor, layer: usize, probe: &mut dyn Probe) -> candle_core::Result<Tensor> {
        let x = (x + self.attention(&self.norm1.forward(x)?, layer, probe)?.broadcast_mul(&self.ls1)?)?;
        let mlp = self.fc2.forward(&Activation::Gelu.apply(&self.fc1.forward(&self.norm2.forward(&x)?)?)?)?;
        x + mlp.broadcast_mul(&self.ls2)?
    }
}

#[derive(Debug, Clone)]
pub struct DinoVision {
    patch_embed: Conv2d,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: Option<LayerNorm>,
    cfg: Config,
}

impl DinoVision {
    /// `vb` points at the trunk. Loads the first `blocks` blocks (the final `norm` is never used).
    pub fn load(cfg: &Config, blocks: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let conv = candle_nn::Conv2dConfig { stride: cfg.patch_size, ..Default::default() };
        let patch_embed = candle_nn::conv2d(3, cfg.width, cfg.patch_size, conv, vb.pp("patch_embed").pp("proj"))?;
        let cls_token = vb.get((1, 1, cfg.width), "cls_token")?;
        let pos_embed = vb.get((1, cfg.pos_grid * cfg.pos_grid + 1, cfg.width), "pos_embed")?;
        let blocks =
            (0..blocks.min(cfg.depth)).map(|i| Block::load(cfg, vb.pp("blocks").pp(i))).collect::<candle_core::Result<Vec<_>>>()?;
        let norm = if cfg.final_norm { Some(layer_norm(cfg.width, cfg.layer_norm_eps, vb.pp("norm"))?) } else { None };
        Ok(Self { patch_embed, cls_token, pos_embed, blocks, norm, cfg: cfg.clone() })
    }

    /// The position embeddings for a `grid_h x grid_w` patch grid of an `h x w` px input,
    /// `[1, 1 + grid_h * grid_w, width]`, CLS first: the table itself when the patch count is
    /// the table's and the input square (transformers' condition), else the table resized
    /// bicubically.
    pub fn position_embeddings(&self, grid_h: usize, grid_w: usize, h: usize, w: usize) -> candle_core::Result<Tensor> {
        let g0 = self.cfg.pos_grid;
        if grid_h * grid_w == g0 * g0 && h == w {
            return Ok(self.pos_embed.clone());
        }
        let d = self.cfg.width;
        let cls = self.pos_embed.narrow(1, 0, 1)?;
        let table: Vec<f32> = self.pos_embed.narrow(1, 1, g0 * g0)?.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1()?;
        let resized = bicubic_resize(&table, g0, g0, d, grid_h, grid_w);
        let patches = Tensor::from_vec(resized, (1, grid_h * grid_w, d), self.pos_embed.device())?.to_dtype(self.pos_embed.dtype())?;
        Tensor::cat(&[&cls, &patches], 1)
    }

    /// The final LayerNorm where the features take it (MAIRA-2's `feature_maps`), else `x`.
    pub fn feature_norm(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.norm {
            Some(norm) => norm.forward(x),
            None => Ok(x.clone()),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn loaded_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// `[0]` = embeddings + pos_embed, `[i]` = after block `i - 1`, up to `blocks`; each
    /// `[1, 1 + patches, width]`, CLS first.
    pub fn hidden_states(&self, pixel_values: &Tensor, blocks: usize, probe: &mut dyn Probe) -> candle_core::Result<Vec<Tensor>> {
        if blocks > self.blocks.len() {
            candle_core::bail!("vision block {blocks} requested but only {} are loaded", self.blocks.len());
        }
        let (_, _, h, w) = pixel_values.dims4()?;
        let patches = self.patch_embed.forward(&pixel_values.to_dtype(self.cls_token.dtype())?)?; // [b, d, gh, gw]
        let (_, _, gh, gw) = patches.dims4()?;
        let patches = patches.flatten_from(2)?.transpose(1, 2)?; // [b, gh*gw, d], row-major
        // One CLS row per image of the batch (occlusion encodes many images at once).
        let cls = self.cls_token.repeat((patches.dim(0)?, 1, 1))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.position_embeddings(gh, gw, h, w)?)?;
        let mut states = vec![x];
        for (i, block) in self.blocks[..blocks].iter().enumerate() {
            let next = block.forward(&states[states.len() - 1], i, probe)?;
            states.push(next);
        }
        Ok(states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real RAD-DINO grid (37 x 37 at 518 px) and the tiny one (4 x 4 table, 5 x 5 input).
    #[test]
    fn bicubic_resize_shapes_and_the_identity() {
        let (g, d) = (37, 3);
        let table: Vec<f32> = (0..g * g * d).map(|i| (i as f32 * 0.37).sin()).collect();
        // Same size: align_corners=False with scale 1 samples the grid points exactly.
        let same = bicubic_resize(&table, g, g, d, g, g);
        assert!(same.iter().zip(&table).all(|(a, b)| (a - b).abs() < 1e-5));
        assert_eq!(bicubic_resize(&table, g, g, d, 40, 30).len(), 40 * 30 * d);
        assert_eq!(bicubic_resize(&table[..16 * d], 4, 4, d, 5, 5).len(), 25 * d);
        // A constant plane stays constant (the weights sum to 1, edges clamp).
        let flat = vec![2.5f32; 16];
        assert!(bicubic_resize(&flat, 4, 4, 1, 5, 7).iter().all(|v| (v - 2.5).abs() < 1e-5));
    }

    fn tower(pos_grid: usize, image_size: usize) -> DinoVision {
        let cfg = Config {
            width: 8,
            depth: 1,
            num_heads: 2,
            mlp_hidden: 16,
            patch_size: 14,
            image_size,
            pos_grid,
            layer_norm_eps: 1e-6,
            final_norm: true,
        };
        let vb = crate::models::checkpoint::random::RandomWeights::var_builder(0, candle_core::DType::F32, &candle_core::Device::Cpu);
        DinoVision::load(&cfg, 1, vb).unwrap()
    }

    /// 518 px on a 37 x 37 table takes the table unchanged; 70 px on a 4 x 4 table takes 5 x 5
    /// interpolated rows; a non-square input always interpolates.
    #[test]
    fn position_embeddings_skip_or_interpolate_as_transformers() {
        let t = tower(37, 518);
        let same = t.position_embeddings(37, 37, 518, 518).unwrap();
        assert_eq!(same.dims(), &[1, 37 * 37 + 1, 8]);
        let diff = (same - &t.pos_embed).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0);
        assert_eq!(t.position_embeddings(40, 30, 560, 420).unwrap().dims(), &[1, 40 * 30 + 1, 8]);
        let tiny = tower(4, 70);
        assert_eq!(tiny.position_embeddings(5, 5, 70, 70).unwrap().dims(), &[1, 26, 8]);
        let pixels = Tensor::zeros((2, 3, 70, 70), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let states = tiny.hidden_states(&pixels, 1, &mut crate::models::probe::NoProbe).unwrap();
        assert_eq!(states[1].dims(), &[2, 26, 8]);
    }
}
