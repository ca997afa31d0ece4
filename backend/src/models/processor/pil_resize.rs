//! PIL's 8-bit convolution resize (`Image.resize` on an RGB image), reproduced exactly: per-axis
//! coefficients in f64 with the support widened by the downscale factor, rounded to 22-bit fixed
//! point, a horizontal pass then a vertical one, each rounded and clipped to 8 bits.
//!
//! The `image` crate's resize keeps the intermediate in f32 and clips only at the end; where a
//! bicubic kernel overshoots (sharp edges) the two then differ by several grey levels when
//! downscaling. Qwen2.5-VL resizes almost every image (sides to multiples of 28), so its
//! processor uses this one.

use image::RgbImage;

use super::preprocess::Filter;

/// `32 - 8 - 2`: PIL's fixed-point precision for 8-bit images.
const PRECISION_BITS: u32 = 22;

fn bicubic(x: f64) -> f64 {
    // a = -0.5, as PIL.
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) { sinc(x) * sinc(x / 3.0) } else { 0.0 }
}

/// Each output pixel's first input index and fixed-point weights along one axis.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    weights: Vec<Vec<i32>>,
}

fn coefficients(in_size: usize, out_size: usize, filter: fn(f64) -> f64, support: f64) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support * filterscale;
    let ss = 1.0 / filterscale;
    let mut out = Coeffs { bounds: Vec::with_capacity(out_size), weights: Vec::with_capacity(out_size) };
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) truncates toward zero; negatives clamp to 0 anyway.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = (((center + support + 0.5) as i64).min(in_size as i64) as usize).saturating_sub(xmin);
        let k: Vec<f64> = (0..xmax).map(|x| filter((x as f64 + xmin as f64 - center + 0.5) * ss)).collect();
        let total: f64 = k.iter().sum();
        let fixed = k
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w } * f64::from(1u32 << PRECISION_BITS);
                // C's (int)(±0.5 + w): round half away from zero.
                (if w < 0.0 { w - 0.5 } else { w + 0.5 }) as i32
            })
            .collect();
        out.bounds.push((xmin, xmax));
        out.weights.push(fixed);
    }
    out
}

fn clip8(v: i32) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// One pass along x (`horizontal`) or y.
fn pass(img: &RgbImage, c: &Coeffs, horizontal: bool) -> RgbImage {
    let (w, h) = img.dimensions();
    let (ow, oh) = if horizontal { (c.bounds.len() as u32, h) } else { (w, c.bounds.len() as u32) };
    let mut out = RgbImage::new(ow, oh);
    for y in 0..oh {
        for x in 0..ow {
            let o = if horizontal { x } else { y } as usize;
            let (start, _) = c.bounds[o];
            let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
            for (i, &k) in c.weights[o].iter().enumerate() {
                let p = if horizontal { img.get_pixel((start + i) as u32, y) } else { img.get_pixel(x, (start + i) as u32) };
                for (a, &v) in acc.iter_mut().zip(&p.0) {
                    *a += i32::from(v) * k;
                }
            }
            out.put_pixel(x, y, image::Rgb(acc.map(clip8)));
        }
    }
    out
}

/// `img.resize((width, height), filter)` as PIL computes it; `None` for a filter PIL does not
/// resample by convolution (nearest).
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Filter) -> Option<RgbImage> {
    let (f, support): (fn(f64) -> f64, f64) = match filter {
        Filter::Bicubic => (bicubic, 2.0),
        Filter::Bilinear => (bilinear, 1.0),
        Filter::Lanczos => (lanczos, 3.0),
        Filter::Nearest => return None,
    };
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    if width != w {
        out = pass(&out, &coefficients(w as usize, width as usize, f, support), true);
    }
    if height != h {
        out = pass(&out, &coefficients(h as usize, height as usize, f, support), false);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weights of one output pixel sum to one (in fixed point, up to rounding), and an upscale
    /// of a constant image is that constant.
    #[test]
    fn weights_are_normalised_and_constants_stay_constant() {
        let c = coefficients(330, 140, bicubic, 2.0);
        for w in &c.weights {
            let sum: i64 = w.iter().map(|&k| i64::from(k)).sum();
            assert!((sum - (1 << PRECISION_BITS)).abs() <= w.len() as i64, "{sum}");
        }
        let flat = RgbImage::from_pixel(7, 5, image::Rgb([200, 13, 90]));
        let up = resize(&flat, 28, 56, Filter::Bicubic).unwrap();
        assert!(up.pixels().all(|p| p.0 == [200, 13, 90]));
    }
}
