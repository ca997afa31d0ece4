//! From grid cells to image pixels (spec "Geometry").
//!
//! Each model's preprocessing decides which part of the original image its grid covers: LLaVA-1.5
//! centre-crops a square (the grid covers only the crop), Gemma3 stretches the whole image. Every
//! stored map therefore carries its crop in original-image pixels, and comparisons go through
//! [`resample`] onto a common grid over the whole image.

use serde::{Deserialize, Serialize};

use crate::MetricError;

/// The default side of the common grid that maps from different models are compared on.
pub const DEFAULT_COMMON_GRID: usize = 32;

/// An axis-aligned rectangle in original-image pixels, `[x0, x1) x [y0, y1)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PixelBox {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl PixelBox {
    pub fn new(x0: f64, y0: f64, x1: f64, y1: f64) -> Result<Self, MetricError> {
        let b = Self { x0, y0, x1, y1 };
        let finite = [x0, y0, x1, y1].iter().all(|v| v.is_finite());
        if finite && x0 < x1 && y0 < y1 { Ok(b) } else { Err(MetricError::InvalidCrop { x0, y0, x1, y1 }) }
    }

    /// From a top-left corner and a size, as the study CSV stores radiologist boxes.
    pub fn from_xywh(x: f64, y: f64, w: f64, h: f64) -> Result<Self, MetricError> {
        Self::new(x, y, x + w, y + h)
    }

    /// The whole image.
    pub fn image(width: u32, height: u32) -> Result<Self, MetricError> {
        Self::new(0.0, 0.0, f64::from(width), f64::from(height))
    }

    pub fn width(&self) -> f64 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> f64 {
        self.y1 - self.y0
    }

    /// Whether the box lies on a `width x height` image (a radiologist box must).
    pub fn inside_image(&self, width: u32, height: u32) -> bool {
        self.x0 >= 0.0 && self.y0 >= 0.0 && self.x1 <= f64::from(width) && self.y1 <= f64::from(height)
    }
}

/// Where a map's grid lies on its original image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MapGeometry {
    pub h: usize,
    pub w: usize,
    /// The part of the original image the grid covers, in its pixels.
    pub crop: PixelBox,
    pub image_w: u32,
    pub image_h: u32,
}

/// Cell `(r, c)` of an `h x w` grid laid over `crop` is inside `bbox` when its centre lies in
/// `[bx0, bx1) x [by0, by1)`. Row-major.
pub fn bbox_mask(h: usize, w: usize, crop: &PixelBox, bbox: &PixelBox) -> Vec<bool> {
    let mut mask = Vec::with_capacity(h * w);
    for r in 0..h {
        // Same operation order as the spec's reference, so boundary cells agree bit for bit.
        let cy = crop.y0 + (r as f64 + 0.5) * (crop.y1 - crop.y0) / h as f64;
        for c in 0..w {
            let cx = crop.x0 + (c as f64 + 0.5) * (crop.x1 - crop.x0) / w as f64;
            mask.push(bbox.x0 <= cx && cx < bbox.x1 && bbox.y0 <= cy && cy < bbox.y1);
        }
    }
    mask
}

/// Spreads each source cell's mass over the target cells in proportion to overlap area: an
/// `h x w` map `p` covering `crop` of an `image_w x image_h` image goes onto a `g x g` grid over
/// the whole image. Mass is preserved whenever the crop lies inside the image; mass on a crop's
/// part outside the image (padding) is dropped, since no image pixel is there.
pub fn resample(p: &[f64], h: usize, w: usize, crop: &PixelBox, image_w: u32, image_h: u32, g: usize) -> Result<Vec<f64>, MetricError> {
    if image_w == 0 || image_h == 0 {
        return Err(MetricError::Invalid(format!("cannot resample onto a {g} x {g} grid over a {image_w} x {image_h} image")));
    }
    resample_to_rect(p, h, w, crop, &PixelBox::image(image_w, image_h)?, g, g)
}

/// The general form of [`resample`]: an `h x w` map `p` over `crop` onto a `gh x gw` grid laid
/// over `target` (any rectangle in the same original-image pixels), by overlap area. Mass
/// outside `target` is dropped. `target = crop` re-grids a map over its own crop (grounding.md
/// G1 compares a map with the occlusion grid that way).
pub fn resample_to_rect(
    p: &[f64],
    h: usize,
    w: usize,
    crop: &PixelBox,
    target: &PixelBox,
    gh: usize,
    gw: usize,
) -> Result<Vec<f64>, MetricError> {
    if p.len() != h * w || h == 0 || w == 0 {
        return Err(MetricError::GridMismatch { h, w, expected: h * w, got: p.len() });
    }
    if gh == 0 || gw == 0 {
        return Err(MetricError::Invalid(format!("cannot resample onto a {gh} x {gw} grid")));
    }
    // Area weights factor into a row part and a column part: ox*oy/area = (oy/sh) * (ox/sw).
    let wy = axis_weights(h, crop.y0, crop.y1, target.y0, target.y1, gh);
    let wx = axis_weights(w, crop.x0, crop.x1, target.x0, target.x1, gw);
    // tmp[r][C] = sum_c p[r][c] wx[c][C]; out[R][C] = sum_r wy[r][R] tmp[r][C].
    let mut tmp = vec![0.0; h * gw];
    for r in 0..h {
        for c in 0..w {
            let v = p[r * w + c];
            if v == 0.0 {
                continue;
            }
            for &(col, weight) in &wx[c] {
                tmp[r * gw + col] += v * weight;
            }
        }
    }
    let mut out = vec![0.0; gh * gw];
    for r in 0..h {
        for &(row, weight) in &wy[r] {
            for col in 0..gw {
                out[row * gw + col] += tmp[r * gw + col] * weight;
            }
        }
    }
    Ok(out)
}

/// For each of `n` source intervals evenly splitting `[lo, hi)`, the target intervals of the
/// `g` that evenly split `[t_lo, t_hi)` it overlaps, with the overlapped fraction of its length.
fn axis_weights(n: usize, lo: f64, hi: f64, t_lo: f64, t_hi: f64, g: usize) -> Vec<Vec<(usize, f64)>> {
    let step = (t_hi - t_lo) / g as f64;
    (0..n)
        .map(|i| {
            let s0 = lo + i as f64 * (hi - lo) / n as f64;
            let s1 = lo + (i + 1) as f64 * (hi - lo) / n as f64;
            (0..g)
                .filter_map(|t| {
                    let overlap = s1.min(t_lo + (t + 1) as f64 * step) - s0.max(t_lo + t as f64 * step);
                    (overlap > 0.0).then(|| (t, overlap / (s1 - s0)))
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_is_inside_when_its_centre_is() {
        let crop = PixelBox::new(0.0, 0.0, 4.0, 4.0).unwrap();
        // Centres at 0.5, 1.5, 2.5, 3.5; the box [1.5, 3) x [0, 1) holds columns 1 and 2 of row 0.
        let bbox = PixelBox::new(1.5, 0.0, 3.0, 1.0).unwrap();
        let mask = bbox_mask(4, 4, &crop, &bbox);
        let inside: Vec<usize> = mask.iter().enumerate().filter(|(_, m)| **m).map(|(i, _)| i).collect();
        assert_eq!(inside, vec![1, 2]);
    }

    #[test]
    fn resampling_a_centre_crop_preserves_mass_and_leaves_the_sides_empty() {
        // A 2x2 map over the central square of a 4 x 2 image, onto a 4 x 4 grid.
        let crop = PixelBox::new(1.0, 0.0, 3.0, 2.0).unwrap();
        let out = resample(&[0.1, 0.2, 0.3, 0.4], 2, 2, &crop, 4, 2, 4).unwrap();
        assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for row in 0..4 {
            assert_eq!(out[row * 4], 0.0);
            assert_eq!(out[row * 4 + 3], 0.0);
        }
    }

    #[test]
    fn degenerate_boxes_are_errors() {
        assert!(PixelBox::new(3.0, 0.0, 3.0, 1.0).is_err());
        assert!(PixelBox::from_xywh(0.0, 0.0, f64::NAN, 1.0).is_err());
    }
}
