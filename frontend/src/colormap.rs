//! The viridis colour map (perceptually uniform, colour-blind friendly, readable in greyscale)
//! and the heatmap's RGBA pixels.
//!
//! Why hand-written tables and not a crate: `colorous` 1.0.16 (dtolnay, d3-scale-chromatic's
//! schemes) was checked. Its viridis and inferno are 256-colour ramps evaluated with an f32
//! B-spline, not these 11 stops joined linearly, so its pixels differ (by 1-2 levels between
//! stops: at t = 0.05 viridis is `#461364` here, about `#471365` there): every overlay, colour
//! bar and heatmap would change colour, and the CSS colour bar in `static/style.css` (checked
//! against [`css_gradient`]) with them. Its only grey (`GREYS`) is ColorBrewer's white-to-black
//! scheme, not the linear black-to-white ramp of [`gray`]. Size was not the reason (its tables
//! are a few KB); identical pixels were.

use std::fmt::Write as _;

/// matplotlib's viridis sampled at t = 0, 0.1, …, 1 (the same 11 stops as d3's
/// `schemeViridis`); [`viridis`] interpolates linearly between them.
const VIRIDIS: [[u8; 3]; 11] = [
    [0x44, 0x01, 0x54],
    [0x48, 0x24, 0x75],
    [0x41, 0x44, 0x87],
    [0x35, 0x5f, 0x8d],
    [0x2a, 0x78, 0x8e],
    [0x21, 0x91, 0x8c],
    [0x22, 0xa8, 0x84],
    [0x44, 0xbf, 0x70],
    [0x7a, 0xd1, 0x51],
    [0xbd, 0xdf, 0x26],
    [0xfd, 0xe7, 0x25],
];

/// matplotlib's inferno sampled at t = 0, 0.1, …, 1 (d3's `interpolateInferno` at those points).
const INFERNO: [[u8; 3]; 11] = [
    [0x00, 0x00, 0x04],
    [0x16, 0x0b, 0x39],
    [0x42, 0x0a, 0x68],
    [0x6a, 0x17, 0x6e],
    [0x93, 0x26, 0x67],
    [0xbc, 0x37, 0x54],
    [0xdd, 0x51, 0x3a],
    [0xf3, 0x78, 0x19],
    [0xfc, 0xa5, 0x0a],
    [0xf6, 0xd7, 0x46],
    [0xfc, 0xff, 0xa4],
];

fn interpolate(stops: &[[u8; 3]], t: f64) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (stops.len() - 1) as f64;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f64;
    let (a, b) = (stops[i], stops[i + 1]);
    std::array::from_fn(|k| (a[k] as f64 + (b[k] as f64 - a[k] as f64) * f).round() as u8)
}

/// Viridis at `t` in `[0, 1]` (clamped; NaN counts as 0): dark purple -> teal -> yellow.
pub fn viridis(t: f64) -> [u8; 3] {
    interpolate(&VIRIDIS, t)
}

/// Inferno at `t` in `[0, 1]` (clamped; NaN counts as 0): black -> purple -> orange -> pale yellow.
pub fn inferno(t: f64) -> [u8; 3] {
    interpolate(&INFERNO, t)
}

/// Grey ramp at `t` in `[0, 1]` (clamped; NaN counts as 0): black -> white.
pub fn gray(t: f64) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let g = (t * 255.0).round() as u8;
    [g, g, g]
}

/// The colour maps the study view offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Colormap {
    #[default]
    Viridis,
    Inferno,
    Gray,
}

impl Colormap {
    pub const ALL: [Colormap; 3] = [Colormap::Viridis, Colormap::Inferno, Colormap::Gray];

    pub fn as_str(self) -> &'static str {
        match self {
            Colormap::Viridis => "viridis",
            Colormap::Inferno => "inferno",
            Colormap::Gray => "gray",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The colour at `t` in `[0, 1]`.
    pub fn colour(self, t: f64) -> [u8; 3] {
        match self {
            Colormap::Viridis => viridis(t),
            Colormap::Inferno => inferno(t),
            Colormap::Gray => gray(t),
        }
    }
}

/// RGBA pixels (`width * height * 4` bytes, row-major, opaque) of an `h x w` grid of values
/// drawn as blocks of nearest-neighbour cells, coloured by `value / max` so the hottest cell is
/// yellow and zero is the darkest purple. An all-zero grid is drawn all dark.
/// Returns `None` for an empty grid or a `values` slice of the wrong length.
pub fn heatmap_rgba(h: usize, w: usize, values: &[f64], width: usize, height: usize) -> Option<Vec<u8>> {
    if h == 0 || w == 0 || values.len() != h * w || width == 0 || height == 0 {
        return None;
    }
    let max = values.iter().copied().filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    let colours: Vec<[u8; 3]> = values.iter().map(|&v| viridis(if max > 0.0 { v / max } else { 0.0 })).collect();
    let mut out = Vec::with_capacity(width * height * 4);
    for y in 0..height {
        let row = y * h / height;
        for x in 0..width {
            let col = x * w / width;
            let [r, g, b] = colours[row * w + col];
            out.extend_from_slice(&[r, g, b, 255]);
        }
    }
    Some(out)
}

/// A CSS `linear-gradient(to right, …)` of viridis: the colour bar under the heatmap, kept in
/// static/style.css (a test checks the two agree).
pub fn css_gradient(stops: usize) -> String {
    let stops = stops.max(2);
    let mut css = String::from("linear-gradient(to right");
    for i in 0..stops {
        let t = i as f64 / (stops - 1) as f64;
        let [r, g, b] = viridis(t);
        let _ = write!(css, ", rgb({r}, {g}, {b}) {:.1}%", t * 100.0);
    }
    css.push(')');
    css
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_hits_its_stops_and_clamps() {
        assert_eq!(viridis(0.0), [0x44, 0x01, 0x54]);
        assert_eq!(viridis(1.0), [0xfd, 0xe7, 0x25]);
        assert_eq!(viridis(0.5), [0x21, 0x91, 0x8c]);
        assert_eq!(viridis(-1.0), viridis(0.0));
        assert_eq!(viridis(7.0), viridis(1.0));
        assert_eq!(viridis(f64::NAN), viridis(0.0));
    }

    #[test]
    fn viridis_gets_lighter_monotonically() {
        // Perceptual colour maps rise in lightness; approximate it with Rec. 709 luma.
        let luma = |[r, g, b]: [u8; 3]| 0.2126 * r as f64 + 0.7152 * g as f64 + 0.0722 * b as f64;
        let mut last = -1.0;
        for i in 0..=200 {
            let l = luma(viridis(i as f64 / 200.0));
            assert!(l >= last - 1e-9, "luma drops at step {i}");
            last = l;
        }
    }

    #[test]
    fn inferno_hits_its_stops_clamps_and_gets_lighter() {
        assert_eq!(inferno(0.0), [0x00, 0x00, 0x04]);
        assert_eq!(inferno(1.0), [0xfc, 0xff, 0xa4]);
        assert_eq!(inferno(0.5), [0xbc, 0x37, 0x54]);
        assert_eq!(inferno(-3.0), inferno(0.0));
        assert_eq!(inferno(9.0), inferno(1.0));
        assert_eq!(inferno(f64::NAN), inferno(0.0));
        let luma = |[r, g, b]: [u8; 3]| 0.2126 * r as f64 + 0.7152 * g as f64 + 0.0722 * b as f64;
        let mut last = -1.0;
        for i in 0..=200 {
            let l = luma(inferno(i as f64 / 200.0));
            assert!(l >= last - 1.0, "inferno luma drops at step {i} (beyond channel rounding)");
            last = l;
        }
        assert_eq!(gray(0.0), [0, 0, 0]);
        assert_eq!(gray(1.0), [255, 255, 255]);
        for c in Colormap::ALL {
            assert_eq!(Colormap::parse(c.as_str()), Some(c));
        }
        assert_eq!(Colormap::parse("jet"), None);
        assert_eq!(Colormap::Inferno.colour(0.3), inferno(0.3));
    }

    #[test]
    fn heatmap_blocks_cells_and_scales_by_the_maximum() {
        let px = heatmap_rgba(2, 2, &[0.0, 1.0, 0.5, 2.0], 4, 4).unwrap();
        assert_eq!(px.len(), 4 * 4 * 4);
        let at = |x: usize, y: usize| [px[(y * 4 + x) * 4], px[(y * 4 + x) * 4 + 1], px[(y * 4 + x) * 4 + 2], px[(y * 4 + x) * 4 + 3]];
        assert_eq!(at(0, 0), [0x44, 0x01, 0x54, 255]);
        assert_eq!(at(1, 1), at(0, 0));
        assert_eq!(at(3, 3), [0xfd, 0xe7, 0x25, 255]);
        assert_eq!(at(2, 0)[..3], viridis(0.5));
        assert_eq!(at(0, 3)[..3], viridis(0.25));
    }

    #[test]
    fn degenerate_heatmaps() {
        assert!(heatmap_rgba(0, 2, &[], 4, 4).is_none());
        assert!(heatmap_rgba(2, 2, &[1.0], 4, 4).is_none());
        let dark = heatmap_rgba(1, 2, &[0.0, 0.0], 2, 1).unwrap();
        assert_eq!(dark, vec![0x44, 0x01, 0x54, 255, 0x44, 0x01, 0x54, 255]);
    }

    /// The colour bar's gradient is static CSS (the CSP forbids inline `style` attributes); it
    /// must be the one this colour map makes.
    #[test]
    fn the_stylesheet_holds_this_colour_bar() {
        let css = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../static/style.css")).unwrap();
        let want = format!("background: {};", css_gradient(11));
        assert!(css.contains(&want), "static/style.css .colorbar must say: {want}");
    }

    #[test]
    fn gradient_lists_the_stops() {
        let g = css_gradient(3);
        assert!(g.starts_with("linear-gradient(to right, rgb(68, 1, 84) 0.0%"));
        assert!(g.ends_with("rgb(253, 231, 37) 100.0%)"));
    }
}
