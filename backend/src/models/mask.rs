//! Additive attention masks (0 = allowed, -inf = hidden), `[query, key]` f32, built once per
//! forward and chosen per layer type.

use candle_core::{Device, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    /// A query sees every earlier key.
    Causal,
    /// Causal, and only keys within the last `window` positions (`k > q - window`).
    Sliding(usize),
}

/// The mask for `q_len` queries from `query_start` over `kv_len` keys. `blocks[pos]` >= 0 marks
/// image tokens of one image block: they see each other in both directions (the window still
/// bounds the past). `None` when nothing is hidden.
pub fn attention_mask(
    query_start: usize,
    q_len: usize,
    kv_len: usize,
    kind: MaskKind,
    blocks: &[i32],
    device: &Device,
) -> candle_core::Result<Option<Tensor>> {
    let block = |p: usize| blocks.get(p).copied().unwrap_or(-1);
    let mut any_hidden = false;
    let mut mask = Vec::with_capacity(q_len * kv_len);
    for i in 0..q_len {
        let q = query_start + i;
        for k in 0..kv_len {
            let same_block = block(q) >= 0 && block(q) == block(k);
            let mut allowed = k <= q || same_block;
            if let MaskKind::Sliding(window) = kind {
                allowed &= k + window > q;
            }
            any_hidden |= !allowed;
            mask.push(if allowed { 0.0 } else { f32::NEG_INFINITY });
        }
    }
    if !any_hidden {
        return Ok(None);
    }
    Tensor::from_vec(mask, (q_len, kv_len), device).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(m: &Option<Tensor>, q: usize, kv: usize) -> Vec<Vec<bool>> {
        match m {
            None => vec![vec![true; kv]; q],
            Some(t) => t.to_vec2::<f32>().unwrap().into_iter().map(|r| r.into_iter().map(|v| v == 0.0).collect()).collect(),
        }
    }

    #[test]
    fn causal_hides_the_future_only() {
        let m = attention_mask(1, 2, 3, MaskKind::Causal, &[], &Device::Cpu).unwrap();
        assert_eq!(allowed(&m, 2, 3), vec![vec![true, true, false], vec![true, true, true]]);
        assert!(attention_mask(2, 1, 3, MaskKind::Causal, &[], &Device::Cpu).unwrap().is_none());
    }

    /// The README example: image tokens at 4..19, window 8: token 12 sees 5..19 on sliding
    /// layers and 0..19 on full layers.
    #[test]
    fn image_blocks_are_bidirectional_and_the_window_bounds_the_past() {
        let blocks: Vec<i32> = (0..24).map(|p| if (4..20).contains(&p) { 0 } else { -1 }).collect();
        let sliding = allowed(&attention_mask(0, 24, 24, MaskKind::Sliding(8), &blocks, &Device::Cpu).unwrap(), 24, 24);
        let seen: Vec<usize> = (0..24).filter(|&k| sliding[12][k]).collect();
        assert_eq!(seen, (5..20).collect::<Vec<_>>());
        let full = allowed(&attention_mask(0, 24, 24, MaskKind::Causal, &blocks, &Device::Cpu).unwrap(), 24, 24);
        assert_eq!((0..24).filter(|&k| full[12][k]).collect::<Vec<_>>(), (0..20).collect::<Vec<_>>());
        // A text token after the image stays causal.
        assert_eq!((0..24).filter(|&k| full[21][k]).count(), 22);
    }

    /// Two images back to back (blocks 0 and 1, separated by one text token): each image token
    /// sees its own image both ways and the earlier image causally, never the later image.
    #[test]
    fn each_image_is_its_own_block() {
        let blocks = [-1, 0, 0, -1, 1, 1, -1];
        let m = allowed(&attention_mask(0, 7, 7, MaskKind::Causal, &blocks, &Device::Cpu).unwrap(), 7, 7);
        assert_eq!((0..7).filter(|&k| m[1][k]).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!((0..7).filter(|&k| m[4][k]).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!((0..7).filter(|&k| m[3][k]).count(), 4);
    }
}
