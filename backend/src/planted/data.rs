//! The planted-truth generator: from the bundled NIH X-rays, images with a drawn finding (a soft
//! bright nodule at a known box) and a drawn shortcut marker (a bright square in the top-right
//! corner, like a burned-in laterality tag), and the study CSV in radlens' normal format.
//!
//! Everything is a function of the seed: each image's draw comes from its own ChaCha8 stream
//! (set, source index, draw index), so sets can be made in any order or in part.
//!
//! - Split: the sources sorted by file name; every fifth (index 4, 9, ...) is held out, the
//!   others are for training. Held-out and training sets use different seeds as well.
//! - Per source, draw `k` carries the finding when `k` is even (balanced). The marker goes with
//!   the finding ([`MarkerRule::OnPositives`]) or is independent of it
//!   ([`MarkerRule::Independent`]: present when `k / 2` is even, so each source holds all four
//!   combinations every four draws).
//! - Finding: `sigma` ~ U[32, 44] px, amplitude ~ U[170, 220] grey levels (smaller, fainter nodules were
//!   not learned by the tiny model in 2,500 steps), centre in either lung
//!   field (`x` ~ U[120, 190] or U[322, 392], `y` ~ U[150, 350] on 512 px), a Gaussian shifted and
//!   rescaled to reach 0 at radius `R = 2.5 sigma` (so it has compact support), added to the
//!   grey value and clamped at 255. Its box is `[floor(cx - R), ceil(cx + R))` (same for y).
//! - Marker: a 28 px square of value 255 at `x = W - 44 - U{0..12}`, `y = 16 + U{0..12}`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::GrayImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::questions::{FINDING, STUDY_VARIANTS};

/// Every fifth source (by sorted file name) is held out.
pub const HELD_OUT_EVERY: usize = 5;
pub const MARKER_SIDE: u32 = 28;

/// The four sets: which sources, which marker rule, which seed stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// Training sources, marker independent of the finding (the lesion and shortcut models).
    Train,
    /// Training sources, marker exactly on the positives (the marker model).
    TrainCorrelated,
    /// Held-out sources, marker independent of the finding.
    Heldout,
    /// Held-out sources, marker exactly on the positives (the marker model's training style).
    HeldoutCorrelated,
}

impl Set {
    pub const ALL: [Set; 4] = [Set::Train, Set::TrainCorrelated, Set::Heldout, Set::HeldoutCorrelated];

    pub fn name(self) -> &'static str {
        match self {
            Set::Train => "train",
            Set::TrainCorrelated => "train-correlated",
            Set::Heldout => "heldout",
            Set::HeldoutCorrelated => "heldout-correlated",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn held_out(self) -> bool {
        matches!(self, Set::Heldout | Set::HeldoutCorrelated)
    }

    pub fn marker_rule(self) -> MarkerRule {
        match self {
            Set::Train | Set::Heldout => MarkerRule::Independent,
            Set::TrainCorrelated | Set::HeldoutCorrelated => MarkerRule::OnPositives,
        }
    }

    /// The set's seed stream: different for every set, so held-out draws never repeat training
    /// draws even on the same seed.
    fn stream(self) -> u64 {
        match self {
            Set::Train => 0x7261_646c_0001,
            Set::TrainCorrelated => 0x7261_646c_0002,
            Set::Heldout => 0x7261_646c_0003,
            Set::HeldoutCorrelated => 0x7261_646c_0004,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerRule {
    OnPositives,
    Independent,
}

/// A half-open pixel box `[x, x + w) x [y, y + h)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlantedBox {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl PlantedBox {
    pub fn contains(&self, x: u32, y: u32) -> bool {
        (self.x..self.x + self.w).contains(&x) && (self.y..self.y + self.h).contains(&y)
    }
}

/// The drawn finding: a Gaussian with compact support (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Blob {
    pub cx: f64,
    pub cy: f64,
    pub sigma: f64,
    pub amplitude: f64,
}

impl Blob {
    pub fn radius(&self) -> f64 {
        2.5 * self.sigma
    }

    /// The added grey value at pixel centre `(x + 0.5, y + 0.5)`.
    pub fn value(&self, x: u32, y: u32) -> f64 {
        let (dx, dy) = (f64::from(x) + 0.5 - self.cx, f64::from(y) + 0.5 - self.cy);
        let s2 = 2.0 * self.sigma * self.sigma;
        let floor = (-(self.radius() * self.radius()) / s2).exp();
        let g = (-(dx * dx + dy * dy) / s2).exp();
        (self.amplitude * (g - floor) / (1.0 - floor)).max(0.0)
    }

    pub fn planted_box(&self, w: u32, h: u32) -> PlantedBox {
        let r = self.radius();
        let x0 = (self.cx - r).floor().max(0.0) as u32;
        let y0 = (self.cy - r).floor().max(0.0) as u32;
        let x1 = ((self.cx + r).ceil() as u32).min(w);
        let y1 = ((self.cy + r).ceil() as u32).min(h);
        PlantedBox { x: x0, y: y0, w: x1 - x0, h: y1 - y0 }
    }
}

/// What was drawn on one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    pub blob: Option<Blob>,
    /// The marker's top-left corner.
    pub marker: Option<(u32, u32)>,
}

/// One generated image with its provenance.
#[derive(Debug, Clone)]
pub struct PlantedImage {
    /// Source file stem, e.g. `00000075_000`.
    pub source: String,
    pub draw_index: usize,
    pub draw: Draw,
    pub image: GrayImage,
}

impl PlantedImage {
    pub fn study_id(&self) -> String {
        format!("{}-d{}", self.source, self.draw_index)
    }

    pub fn file_name(&self) -> String {
        format!("{}.png", self.study_id())
    }

    pub fn planted(&self) -> bool {
        self.draw.blob.is_some()
    }

    pub fn planted_box(&self) -> Option<PlantedBox> {
        self.draw.blob.map(|b| b.planted_box(self.image.width(), self.image.height()))
    }
}

/// The source X-rays (`*.png` in `dir`, sorted by name).
pub fn sources(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the source images in {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    out.sort();
    anyhow::ensure!(
        out.len() >= HELD_OUT_EVERY,
        "{} holds {} PNG images; the planted sets need at least {HELD_OUT_EVERY}",
        dir.display(),
        out.len()
    );
    Ok(out)
}

/// The sources of one side of the split, with their index in the sorted list.
pub fn split(sources: &[PathBuf], held_out: bool) -> Vec<(usize, PathBuf)> {
    sources.iter().cloned().enumerate().filter(|(i, _)| (i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1) == held_out).collect()
}

/// SplitMix64 of the seed, the set's stream, the source index and the draw index.
fn image_seed(seed: u64, set: Set, source: usize, draw: usize) -> u64 {
    mix_seed(seed, set.stream(), source, draw)
}

/// SplitMix64 of the seed, a stream, the source index and the draw index (the pair sets of
/// [`super::pairs`] use their own streams).
pub(super) fn mix_seed(seed: u64, stream: u64, source: usize, draw: usize) -> u64 {
    let mut z = seed ^ stream.rotate_left(17) ^ ((source as u64) << 32) ^ draw as u64;
    for _ in 0..2 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

/// The draw for one image of `w x h` pixels.
pub fn draw_params(rng: &mut ChaCha8Rng, planted: bool, marker: bool, w: u32, h: u32) -> Draw {
    // Drawn in a fixed order whatever is kept, so one image's parameters do not depend on the
    // other element's presence.
    let sx = w as f64 / 512.0;
    let sy = h as f64 / 512.0;
    let left: bool = rng.random();
    let cx = if left { rng.random_range(120.0..190.0) } else { rng.random_range(322.0..392.0) } * sx;
    let cy = rng.random_range(150.0..350.0) * sy;
    let sigma = rng.random_range(32.0..44.0) * sx;
    let amplitude = rng.random_range(170.0..220.0);
    let mx = w.saturating_sub(44 + rng.random_range(0..=12u32));
    let my = 16 + rng.random_range(0..=12u32);
    Draw { blob: planted.then_some(Blob { cx, cy, sigma, amplitude }), marker: marker.then_some((mx, my)) }
}

/// `source` with the draw applied.
pub fn render(source: &GrayImage, draw: &Draw) -> GrayImage {
    let mut img = source.clone();
    let (w, h) = img.dimensions();
    if let Some(blob) = draw.blob {
        let b = blob.planted_box(w, h);
        for y in b.y..b.y + b.h {
            for x in b.x..b.x + b.w {
                let add = blob.value(x, y).round();
                if add > 0.0 {
                    let p = img.get_pixel_mut(x, y);
                    p.0[0] = (f64::from(p.0[0]) + add).min(255.0) as u8;
                }
            }
        }
    }
    if let Some((mx, my)) = draw.marker {
        for y in my..(my + MARKER_SIDE).min(h) {
            for x in mx..(mx + MARKER_SIDE).min(w) {
                img.put_pixel(x, y, image::Luma([255]));
            }
        }
    }
    img
}

/// `per_source` images from each source of `set`'s side of the split.
pub fn make_set(source_dir: &Path, set: Set, per_source: usize, seed: u64) -> Result<Vec<PlantedImage>> {
    let all = sources(source_dir)?;
    let mut out = Vec::new();
    for (index, path) in split(&all, set.held_out()) {
        let source = image::open(&path).with_context(|| format!("decoding {}", path.display()))?.to_luma8();
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        for k in 0..per_source {
            let planted = k % 2 == 0;
            let marker = match set.marker_rule() {
                MarkerRule::OnPositives => planted,
                MarkerRule::Independent => (k / 2) % 2 == 0,
            };
            let mut rng = ChaCha8Rng::seed_from_u64(image_seed(seed, set, index, k));
            let draw = draw_params(&mut rng, planted, marker, source.width(), source.height());
            let image = render(&source, &draw);
            out.push(PlantedImage { source: stem.clone(), draw_index: k, draw, image });
        }
    }
    Ok(out)
}

/// The study CSV rows of `images` (six question variants each), with `image_path` under `folder`.
pub fn study_csv(images: &[PlantedImage], folder: &str) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "study_id",
        "image_path",
        "question",
        "answer",
        "finding",
        "question_variant",
        "variant_index",
        "strategy",
        "polarity",
        "roi_x",
        "roi_y",
        "roi_w",
        "roi_h",
        "confound_x",
        "confound_y",
        "confound_w",
        "confound_h",
        "confound_label",
    ])?;
    for img in images {
        let roi = img.planted_box().map(|b| [b.x, b.y, b.w, b.h].map(|v| v.to_string())).unwrap_or_default();
        // The marker is the shortcut a model may learn: named as the confound box where drawn.
        let (iw, ih) = img.image.dimensions();
        let confound: Vec<String> = img
            .draw
            .marker
            .map(|(mx, my)| {
                [mx, my, MARKER_SIDE.min(iw - mx), MARKER_SIDE.min(ih - my)]
                    .map(|v| v.to_string())
                    .into_iter()
                    .chain(["corner marker".to_string()])
                    .collect()
            })
            .unwrap_or_else(|| vec![String::new(); 5]);
        for (i, (q, variant, strategy)) in STUDY_VARIANTS.iter().enumerate() {
            let yes = img.planted() != q.negated;
            let mut row = vec![
                img.study_id(),
                format!("{folder}/{}", img.file_name()),
                q.text.to_string(),
                if yes { "yes" } else { "no" }.to_string(),
                FINDING.to_string(),
                variant.to_string(),
                i.to_string(),
                strategy.to_string(),
                q.polarity().to_string(),
            ];
            row.extend(roi.iter().cloned());
            row.extend(confound.iter().cloned());
            w.write_record(&row)?;
        }
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// Writes `set` under `out`: `out/SET/*.png` and `out/SET.csv` (image paths relative to `out`).
pub fn write_set(source_dir: &Path, out: &Path, set: Set, per_source: usize, seed: u64) -> Result<usize> {
    let images = make_set(source_dir, set, per_source, seed)?;
    let folder = out.join(set.name());
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    for img in &images {
        let path = folder.join(img.file_name());
        img.image.save_with_format(&path, image::ImageFormat::Png).with_context(|| format!("writing {}", path.display()))?;
    }
    let csv_path = out.join(format!("{}.csv", set.name()));
    std::fs::write(&csv_path, study_csv(&images, set.name())?).with_context(|| format!("writing {}", csv_path.display()))?;
    Ok(images.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blob_changes_only_pixels_inside_its_box_and_the_marker_sits_in_the_corner() {
        let src = GrayImage::from_pixel(512, 512, image::Luma([40]));
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let draw = draw_params(&mut rng, true, true, 512, 512);
        let img = render(&src, &Draw { marker: None, ..draw.clone() });
        let b = draw.blob.unwrap().planted_box(512, 512);
        let mut inside = 0;
        for (x, y, p) in img.enumerate_pixels() {
            if p.0[0] != 40 {
                assert!(b.contains(x, y), "({x}, {y}) changed outside {b:?}");
                inside += 1;
            }
        }
        assert!(inside > 100, "the blob is visible: {inside} pixels");
        let (mx, my) = draw.marker.unwrap();
        assert!(mx + MARKER_SIDE <= 512 && mx >= 512 - 56 && my <= 28, "({mx}, {my})");
        assert!(!b.contains(mx, my) && !b.contains(mx + MARKER_SIDE - 1, my + MARKER_SIDE - 1));
    }

    #[test]
    fn the_split_keeps_every_fifth_source_out_of_training() {
        let paths: Vec<PathBuf> = (0..25).map(|i| PathBuf::from(format!("{i:02}.png"))).collect();
        let held: Vec<usize> = split(&paths, true).into_iter().map(|(i, _)| i).collect();
        assert_eq!(held, vec![4, 9, 14, 19, 24]);
        assert_eq!(split(&paths, false).len(), 20);
    }
}
