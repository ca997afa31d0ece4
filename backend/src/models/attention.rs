//! THE attention of every model: f32 scores -> softcap -> mask -> softmax -> probe -> x V.
//!
//! This file owns the precision policy and the only softmax in the crate (a test enforces that).
//! Scores and probabilities are f32 whatever the weights' dtype: bf16 `exp` loses the small
//! probabilities that attention maps are made of.

use candle_core::{DType, Tensor};

use super::probe::{Probe, SiteName};

/// What distinguishes one model's attention from another's.
#[derive(Debug, Clone)]
pub struct AttnSpec<'a> {
    /// Multiplies `q . k` (`head_dim^-0.5`, or Gemma's `query_pre_attn_scalar^-0.5`).
    pub scale: f64,
    /// `tanh` soft cap on the scores, if the model has one.
    pub softcap: Option<f64>,
    /// Additive f32 mask `[query, key]` (0 or -inf), or `None` for full attention.
    pub mask: Option<&'a Tensor>,
}

/// `q`: `[1, heads, query, head_dim]`; `k`, `v`: `[1, kv_heads, key, head_dim]` (grouped-query
/// attention when `kv_heads < heads`: head `h` reads kv head `h / (heads / kv_heads)`).
/// `query_start` is the absolute position of the first query row. Returns `[1, heads, query,
/// head_dim]` in `v`'s dtype.
///
/// Two paths, one result per dtype. In f32 the probabilities that weight `V` are the ones the
/// probe keeps. In half precision (bf16/f16, the GPU default) the layer runs fused in its own
/// dtype (one matmul, the fused softmax kernel, which accumulates in f32, one matmul: what
/// transformers' eager bf16 attention computes), and the rows the probe asked for are computed
/// again, exactly, in f32. Either way the model's output never depends on what is captured.
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    spec: &AttnSpec<'_>,
    at: SiteName,
    query_start: usize,
    probe: &mut dyn Probe,
) -> candle_core::Result<Tensor> {
    let (_, heads, q_len, _) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    let (k, v) = (repeat_kv(k, heads / kv_heads)?, repeat_kv(v, heads / kv_heads)?);
    let rows = probe.rows_wanted(&at, query_start..query_start + q_len);
    if v.dtype() == DType::F32 {
        let probs = probabilities(q, &k, spec, None)?;
        if !rows.is_empty() {
            let kept = probs.squeeze(0)?.index_select(&row_index(&rows, probs.device())?, 1)?; // [heads, rows, key]
            probe.take(&at, &absolute(&rows, query_start), &kept)?;
        }
        return probs.matmul(&v.contiguous()?);
    }
    let q = q.contiguous()?;
    if !rows.is_empty() {
        let index = row_index(&rows, q.device())?;
        let kept = probabilities(&q.index_select(&index, 2)?, &k, spec, Some(&index))?.squeeze(0)?;
        probe.take(&at, &absolute(&rows, query_start), &kept)?;
    }
    softmax_last_dim(&scores(&q, &k, spec, None)?)?.matmul(&v.contiguous()?)
}

/// Exact f32 attention probabilities `[1, heads, query, key]` of `q` (all its rows; `mask_rows`
/// says which rows of the mask they are when `q` holds only some).
fn probabilities(q: &Tensor, k: &Tensor, spec: &AttnSpec<'_>, mask_rows: Option<&Tensor>) -> candle_core::Result<Tensor> {
    softmax_last_dim(&scores(&q.to_dtype(DType::F32)?, &k.to_dtype(DType::F32)?, spec, mask_rows)?)
}

/// Scaled, soft-capped, masked `q . k` in `q`'s dtype, `[1, heads, query, key]`.
fn scores(q: &Tensor, k: &Tensor, spec: &AttnSpec<'_>, mask_rows: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let mut scores = (q.matmul(&k.t()?)? * spec.scale)?;
    if let Some(cap) = spec.softcap {
        scores = ((scores / cap)?.tanh()? * cap)?;
    }
    if let Some(mask) = spec.mask {
        let mask = match mask_rows {
            Some(rows) => mask.index_select(rows, 0)?,
            None => mask.clone(),
        };
        scores = scores.broadcast_add(&mask.to_dtype(scores.dtype())?)?;
    }
    Ok(scores)
}

fn row_index(rows: &[usize], device: &candle_core::Device) -> candle_core::Result<Tensor> {
    Tensor::new(rows.iter().map(|&r| r as u32).collect::<Vec<_>>(), device)
}

fn absolute(rows: &[usize], query_start: usize) -> Vec<usize> {
    rows.iter().map(|r| query_start + r).collect()
}

/// The softmax over keys. candle's fused kernel has no backward, so a forward tracked for
/// gradients (Grad-CAM) takes the composition of differentiable ops instead; the max is detached,
/// which leaves the gradient exact (the softmax is shift-invariant). Untracked forwards keep the
/// fused kernel.
fn softmax_last_dim(scores: &Tensor) -> candle_core::Result<Tensor> {
    if !scores.track_op() {
        return candle_nn::ops::softmax_last_dim(scores);
    }
    let max = scores.max_keepdim(candle_core::D::Minus1)?.detach();
    let e = scores.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(candle_core::D::Minus1)?)
}

/// `[1, kv_heads, seq, d]` -> `[1, kv_heads * n_rep, seq, d]`, each kv head repeated in place
/// (torch's `repeat_interleave` on the head axis).
fn repeat_kv(x: &Tensor, n_rep: usize) -> candle_core::Result<Tensor> {
    if n_rep == 1 {
        return Ok(x.clone());
    }
    let (b, kv_heads, seq, d) = x.dims4()?;
    x.unsqueeze(2)?.expand((b, kv_heads, n_rep, seq, d))?.reshape((b, kv_heads * n_rep, seq, d))
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::models::probe::NoProbe;

    #[test]
    fn grouped_heads_read_their_kv_head() {
        let x = Tensor::arange(0f32, 4.0, &Device::Cpu).unwrap().reshape((1, 2, 1, 2)).unwrap();
        let r = repeat_kv(&x, 2).unwrap();
        assert_eq!(r.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![0., 1., 0., 1., 2., 3., 2., 3.]);
    }

    #[test]
    fn attention_rows_are_probabilities() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 2, 3, 4), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, 1, 3, 4), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, 1, 3, 4), &dev).unwrap();
        let out = attend(&q, &k, &v, &AttnSpec { scale: 0.5, softcap: None, mask: None }, SiteName::text_attn(0), 0, &mut NoProbe).unwrap();
        assert_eq!(out.dims(), &[1, 2, 3, 4]);
    }

    /// Keeps every row it is offered.
    struct KeepAll(Vec<Tensor>);
    impl Probe for KeepAll {
        fn rows_wanted(&self, _: &SiteName, rows: std::ops::Range<usize>) -> Vec<usize> {
            (0..rows.len()).collect()
        }
        fn take(&mut self, _: &SiteName, _: &[usize], rows: &Tensor) -> candle_core::Result<()> {
            self.0.push(rows.clone());
            Ok(())
        }
    }

    /// The half-precision path: the output is what f32 gives up to f16 rounding, the captured
    /// rows are the exact f32 rows of the (rounded) inputs, and capturing changes nothing.
    #[test]
    fn half_precision_runs_fused_and_still_captures_exact_rows() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 4, 6, 8), &dev).unwrap().to_dtype(DType::F16).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, 2, 6, 8), &dev).unwrap().to_dtype(DType::F16).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, 2, 6, 8), &dev).unwrap().to_dtype(DType::F16).unwrap();
        let mask = crate::models::mask::attention_mask(0, 6, 6, crate::models::mask::MaskKind::Causal, &[], &dev).unwrap();
        let spec = AttnSpec { scale: 0.35, softcap: Some(5.0), mask: mask.as_ref() };
        let up = |t: &Tensor| t.to_dtype(DType::F32).unwrap();

        let mut exact = KeepAll(Vec::new());
        let want = attend(&up(&q), &up(&k), &up(&v), &spec, SiteName::text_attn(0), 0, &mut exact).unwrap();
        let mut half = KeepAll(Vec::new());
        let got = attend(&q, &k, &v, &spec, SiteName::text_attn(0), 0, &mut half).unwrap();
        let quiet = attend(&q, &k, &v, &spec, SiteName::text_attn(0), 0, &mut NoProbe).unwrap();

        assert_eq!(got.dtype(), DType::F16);
        let diff = |a: &Tensor, b: &Tensor| (up(a) - up(b)).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff(&got, &want) < 1e-2, "fused f16 output off by {}", diff(&got, &want));
        assert_eq!(diff(&got, &quiet), 0.0, "capturing changed the output");
        assert_eq!((half.0.len(), exact.0.len()), (1, 1));
        assert_eq!(half.0[0].dtype(), DType::F32);
        assert!(diff(&half.0[0], &exact.0[0]) < 1e-6, "captured rows are not the exact f32 rows");
    }

    /// The tracked (Grad-CAM) path computes the same probabilities as the fused kernel, and
    /// gradients flow through it, -inf mask entries included.
    #[test]
    fn tracked_softmax_matches_the_kernel_and_has_a_gradient() {
        let dev = Device::Cpu;
        let x = candle_core::Var::new(&[[1.0f32, 2.0, f32::NEG_INFINITY], [0.5, -1.0, 3.0]], &dev).unwrap();
        let fused = candle_nn::ops::softmax_last_dim(x.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        let tracked = softmax_last_dim(x.as_tensor()).unwrap();
        for (a, b) in fused.iter().flatten().zip(tracked.to_vec2::<f32>().unwrap().iter().flatten()) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // d p_00 / d x: p_00 (1 - p_00) at x_00, -p_00 p_01 at x_01, 0 at the masked key.
        let grads = tracked.narrow(0, 0, 1).unwrap().narrow(1, 0, 1).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(x.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        let (p0, p1) = (fused[0][0], fused[0][1]);
        assert!((g[0][0] - p0 * (1.0 - p0)).abs() < 1e-6 && (g[0][1] + p0 * p1).abs() < 1e-6 && g[0][2] == 0.0, "{g:?}");
        assert_eq!(g[1], vec![0.0; 3]);
    }

    /// The one-attention rule: no file but this one computes a softmax.
    #[test]
    fn softmax_lives_only_in_attention_rs() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("models/attention.rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    // Code only: comments may mention the softmax.
                    if text.lines().any(|l| !l.trim_start().starts_with("//") && l.contains("softmax")) {
                        offenders.push(path.display().to_string());
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "softmax outside models/attention.rs: {offenders:?}");
    }
}
