//! Longitudinal planted pairs (issue 21): a prior and a current image derived from one NIH
//! source, each visit with its own small shift and brightness change (so the two are never
//! identical), and the drawn nodule in the prior, the current, both or neither, at known boxes.
//! The change questions ask whether a nodule is new since the prior.
//!
//! - Split: [`super::data::split`] (every fifth source held out); train and held-out pairs use
//!   different seed streams.
//! - Per source, draw `k`: nodule in the current when `k` is even, in the prior when `k / 2` is
//!   even (each source holds all four combinations every four draws).
//! - A nodule present at both visits is the same one (same size, same place on the anatomy),
//!   moved with each visit's shift; its parameters are [`super::data::draw_params`]'.
//! - Visit: shift `dx, dy` ~ U{-12..12} px (edges replicated), grey `g * gain + offset` with
//!   gain ~ U[0.9, 1.1] and offset ~ U[-12, 12], then the nodule added.

use std::path::Path;

use anyhow::{Context, Result};
use image::GrayImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::data::{Blob, Draw, PlantedBox, draw_params, mix_seed, render, sources, split};
use super::questions::{FINDING, Question};

/// The study CSV's change questions: `(question, question_variant, strategy)`. "Yes" means a
/// nodule is in the current image and was not in the prior; negations invert.
pub const CHANGE_VARIANTS: [(Question, &str, &str); 5] = [
    (Question { text: "Is there a new nodule since the prior?", negated: false }, "original", "baseline"),
    (Question { text: "Has a new nodule appeared since the prior study?", negated: false }, "paraphrase-1", "phrasing variation"),
    (Question { text: "Compared with the prior, is there a new nodule?", negated: false }, "paraphrase-2", "clause reordering"),
    (Question { text: "Is there a nodule now that was not there before?", negated: false }, "paraphrase-3", "synonym replacement"),
    (Question { text: "Can a new nodule since the prior be ruled out?", negated: true }, "negation-1", "negation"),
];

/// Training-only change questions, so that the negation is not one sentence's quirk.
pub const CHANGE_TRAIN_EXTRA: [Question; 4] = [
    Question { text: "Any new nodule since the prior?", negated: false },
    Question { text: "Did a nodule appear since the last study?", negated: false },
    Question { text: "Is the chest free of any new nodule?", negated: true },
    Question { text: "Is there no new nodule since the prior?", negated: true },
];

/// Every training question, study variants first.
pub fn change_training_questions() -> Vec<Question> {
    CHANGE_VARIANTS.iter().map(|(q, _, _)| *q).chain(CHANGE_TRAIN_EXTRA).collect()
}

/// The two pair sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairSet {
    Train,
    Heldout,
}

impl PairSet {
    pub const ALL: [PairSet; 2] = [PairSet::Train, PairSet::Heldout];

    pub fn name(self) -> &'static str {
        match self {
            PairSet::Train => "pairs-train",
            PairSet::Heldout => "pairs-heldout",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name || s.name().trim_start_matches("pairs-") == name)
    }

    fn stream(self) -> u64 {
        match self {
            PairSet::Train => 0x7061_6972_0001,
            PairSet::Heldout => 0x7061_6972_0002,
        }
    }
}

/// One visit: its image and the nodule drawn on it.
#[derive(Debug, Clone)]
pub struct Visit {
    pub image: GrayImage,
    pub blob: Option<Blob>,
}

impl Visit {
    pub fn nodule(&self) -> bool {
        self.blob.is_some()
    }

    pub fn planted_box(&self) -> Option<PlantedBox> {
        self.blob.map(|b| b.planted_box(self.image.width(), self.image.height()))
    }
}

/// A prior and a current visit of one source.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Source file stem, e.g. `00000075_000` (the CSV's subject).
    pub source: String,
    pub draw_index: usize,
    pub prior: Visit,
    pub current: Visit,
}

impl Pair {
    pub fn study_id(&self) -> String {
        format!("{}-p{}", self.source, self.draw_index)
    }

    /// The change rule: a nodule now that was not there before.
    pub fn new_nodule(&self) -> bool {
        self.current.nodule() && !self.prior.nodule()
    }
}

/// `source` shifted by `(dx, dy)` (edges replicated) with its grey values scaled and offset.
fn shifted(source: &GrayImage, dx: i32, dy: i32, gain: f64, offset: f64) -> GrayImage {
    let (w, h) = source.dimensions();
    GrayImage::from_fn(w, h, |x, y| {
        let sx = (x as i32 - dx).clamp(0, w as i32 - 1) as u32;
        let sy = (y as i32 - dy).clamp(0, h as i32 - 1) as u32;
        let v = f64::from(source.get_pixel(sx, sy).0[0]) * gain + offset;
        image::Luma([v.round().clamp(0.0, 255.0) as u8])
    })
}

/// One visit of `source`: the shift and brightness drawn from `rng`, the nodule (if `blob`)
/// moved with the anatomy.
fn visit(rng: &mut ChaCha8Rng, source: &GrayImage, blob: Option<Blob>) -> Visit {
    let dx = rng.random_range(-12..=12i32);
    let dy = rng.random_range(-12..=12i32);
    let gain = rng.random_range(0.9..1.1);
    let offset = rng.random_range(-12.0..12.0);
    let blob = blob.map(|b| Blob { cx: b.cx + f64::from(dx), cy: b.cy + f64::from(dy), ..b });
    let image = render(&shifted(source, dx, dy, gain, offset), &Draw { blob, marker: None });
    Visit { image, blob }
}

/// The pair of draw `k` from `source` (see the module docs for the four states).
pub fn make_pair(source: &GrayImage, stem: &str, k: usize, rng: &mut ChaCha8Rng) -> Pair {
    let (current_nodule, prior_nodule) = (k.is_multiple_of(2), (k / 2).is_multiple_of(2));
    // Drawn whatever is kept, so the visits' draws do not depend on the state.
    let blob = draw_params(rng, true, false, source.width(), source.height()).blob;
    let prior = visit(rng, source, blob.filter(|_| prior_nodule));
    let current = visit(rng, source, blob.filter(|_| current_nodule));
    Pair { source: stem.to_string(), draw_index: k, prior, current }
}

/// `per_source` pairs from each source of `set`'s side of the split.
pub fn make_pairs(source_dir: &Path, set: PairSet, per_source: usize, seed: u64) -> Result<Vec<Pair>> {
    let all = sources(source_dir)?;
    let mut out = Vec::new();
    for (index, path) in split(&all, set == PairSet::Heldout) {
        let source = image::open(&path).with_context(|| format!("decoding {}", path.display()))?.to_luma8();
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        for k in 0..per_source {
            let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(seed, set.stream(), index, k));
            out.push(make_pair(&source, &stem, k, &mut rng));
        }
    }
    Ok(out)
}

fn file_names(pair: &Pair) -> (String, String) {
    (format!("{}-prior.png", pair.study_id()), format!("{}-current.png", pair.study_id()))
}

/// The study CSV of `pairs` (the change variants each): the current image as `image_path`, the
/// prior as `prior_image_path`, the source as `subject_id` (so `prior_swap` takes another
/// source's prior), and the current nodule's box (where drawn) as the ROI.
pub fn pairs_csv(pairs: &[Pair], folder: &str) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "study_id",
        "subject_id",
        "image_path",
        "prior_image_path",
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
    ])?;
    for pair in pairs {
        let (prior, current) = file_names(pair);
        let roi = pair.current.planted_box().map(|b| [b.x, b.y, b.w, b.h].map(|v| v.to_string())).unwrap_or_default();
        for (i, (q, variant, strategy)) in CHANGE_VARIANTS.iter().enumerate() {
            let yes = pair.new_nodule() != q.negated;
            let mut row = vec![
                pair.study_id(),
                pair.source.clone(),
                format!("{folder}/{current}"),
                format!("{folder}/{prior}"),
                q.text.to_string(),
                if yes { "yes" } else { "no" }.to_string(),
                FINDING.to_string(),
                variant.to_string(),
                i.to_string(),
                strategy.to_string(),
                q.polarity().to_string(),
            ];
            row.extend(roi.iter().cloned());
            w.write_record(&row)?;
        }
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// Writes `set` under `out`: `out/SET/*-{prior,current}.png` and `out/SET.csv` (paths relative
/// to `out`). Returns the number of pairs.
pub fn write_pairs(source_dir: &Path, out: &Path, set: PairSet, per_source: usize, seed: u64) -> Result<usize> {
    let pairs = make_pairs(source_dir, set, per_source, seed)?;
    let folder = out.join(set.name());
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    for pair in &pairs {
        let (prior, current) = file_names(pair);
        for (name, img) in [(prior, &pair.prior.image), (current, &pair.current.image)] {
            let path = folder.join(name);
            img.save_with_format(&path, image::ImageFormat::Png).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let csv_path = out.join(format!("{}.csv", set.name()));
    std::fs::write(&csv_path, pairs_csv(&pairs, set.name())?).with_context(|| format!("writing {}", csv_path.display()))?;
    Ok(pairs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_draws_hold_the_four_states_and_the_visits_differ() {
        let src = GrayImage::from_fn(512, 512, |x, y| image::Luma([((x + 2 * y) % 200) as u8 + 20]));
        let mut states = Vec::new();
        for k in 0..4 {
            let mut rng = ChaCha8Rng::seed_from_u64(k as u64);
            let pair = make_pair(&src, "s", k, &mut rng);
            assert_ne!(pair.prior.image, pair.current.image, "draw {k}: the visits differ");
            states.push((pair.prior.nodule(), pair.current.nodule()));
            if let (Some(a), Some(b)) = (pair.prior.blob, pair.current.blob) {
                assert_eq!((a.sigma, a.amplitude), (b.sigma, b.amplitude), "the same nodule at both visits");
            }
        }
        states.sort();
        assert_eq!(states, vec![(false, false), (false, true), (true, false), (true, true)]);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let again = |rng: &mut ChaCha8Rng| make_pair(&src, "s", 0, rng).current.image;
        assert_eq!(again(&mut rng.clone()), again(&mut rng), "deterministic from the stream");
    }

    #[test]
    fn the_csv_answers_by_the_change_rule_and_negations_invert() {
        let src = GrayImage::from_pixel(64, 64, image::Luma([60]));
        let pairs: Vec<Pair> = (0..4).map(|k| make_pair(&src, "s", k, &mut ChaCha8Rng::seed_from_u64(1))).collect();
        let csv = pairs_csv(&pairs, "f").unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 4 * CHANGE_VARIANTS.len());
        for (pair, rows) in pairs.iter().zip(rows.chunks(CHANGE_VARIANTS.len())) {
            for row in rows {
                let negated = &row[10] == "-1";
                assert_eq!(&row[5] == "yes", pair.new_nodule() != negated, "{:?}", row);
                assert_eq!(row[11].is_empty(), !pair.current.nodule(), "the ROI is the current nodule's box");
            }
        }
    }
}
