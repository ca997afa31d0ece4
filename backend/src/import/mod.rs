//! `radlens import FORMAT`: public question sets and box sets -> the study CSV.
//!
//! Brief overview:
//! - Question sets (closed yes/no questions kept): [`vqa_rad`], [`slake`], [`psf_med`],
//!   [`mimic_cxr_vqa`]. Box sets (a template question per boxed finding, the box as `roi_*`):
//!   [`nih_bbox`], [`vindr_cxr`], [`ms_cxr`] and [`boxes`] (radlens' own box CSV, which can also
//!   attach boxes to an existing study CSV).
//! - [`json`] streams a top-level JSON array (or JSON Lines) one record at a time; its errors
//!   name the JSON path (`[12].answer_type`) and the line and column.
//! - [`writer::StudyWriter`] writes `OUT.tmp` beside `OUT` and renames it only once every row is
//!   written, so a refused file never leaves half a CSV behind.
//! - [`Summary`]: rows kept, rows dropped by reason; printed by the command.
//! - [`images::ImageIndex`]: which images exist under `--images`, and their sizes (boxes are
//!   scaled from the source's pixel space to the actual image, and checked against it).

pub mod box_questions;
pub mod boxes;
pub mod images;
pub mod json;
pub mod mimic_cxr_vqa;
pub mod ms_cxr;
pub mod nih_bbox;
pub mod psf_med;
pub mod slake;
pub mod vindr_cxr;
pub mod vqa_rad;
pub mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use radlens_shared::answer::Answer;
use thiserror::Error;

/// Everything that makes an import refuse its input. Each variant names the file and the place
/// in it (CSV line, JSON path, or line and column).
#[derive(Debug, Error)]
pub enum ImportError {
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: line {line}: {message}")]
    Line { path: PathBuf, line: u64, message: String },
    #[error("{path}: missing column {column:?} (found: {found})")]
    MissingColumn { path: PathBuf, column: String, found: String },
    #[error("{path}: at {json_path} (line {line}, column {column}): {message}")]
    Json { path: PathBuf, json_path: String, line: usize, column: usize, message: String },
    #[error("{path}: at {json_path}: {message}")]
    JsonField { path: PathBuf, json_path: String, message: String },
    #[error("{path}: line {line}: box x={x}, y={y}, w={w}, h={h} lies outside the {width}x{height} image {image}")]
    BoxOutside { path: PathBuf, line: u64, x: f64, y: f64, w: f64, h: f64, width: u32, height: u32, image: String },
    #[error("{0}")]
    Usage(String),
}

/// The options every importer reads.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The source file (a JSON release or a CSV).
    pub src: PathBuf,
    /// The folder the written `image_path`s are relative to.
    pub images: PathBuf,
    /// Keep only this split (where the source has one).
    pub split: Option<String>,
    /// Stop after this many studies.
    pub limit: Option<usize>,
    /// Box sets: a labels CSV naming images with no finding (negatives).
    pub labels: Option<PathBuf>,
}

/// Rows kept, and rows left out by reason (each reason counted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub studies: usize,
    pub rows: usize,
    pub dropped: BTreeMap<String, usize>,
    /// Facts worth a line of their own (the merge rule, how boxes were scaled).
    pub notes: Vec<String>,
}

impl Summary {
    pub fn drop(&mut self, reason: impl Into<String>) {
        *self.dropped.entry(reason.into()).or_insert(0) += 1;
    }

    pub fn dropped_total(&self) -> usize {
        self.dropped.values().sum()
    }

    pub fn render(&self, out: &Path) -> String {
        let mut s = format!("wrote {}: {} rows in {} studies\n", out.display(), self.rows, self.studies);
        if self.dropped.is_empty() {
            s.push_str("dropped: none\n");
        } else {
            s.push_str(&format!("dropped: {}\n", self.dropped_total()));
            for (reason, n) in &self.dropped {
                s.push_str(&format!("  {n:>6}  {reason}\n"));
            }
        }
        for note in &self.notes {
            s.push_str(&format!("note: {note}\n"));
        }
        s
    }
}

/// The formats of `radlens import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// VQA-RAD's JSON release (closed questions; `phrase_type` para questions as variants).
    VqaRad,
    /// SLAKE's train/validate/test.json (English, CLOSED, X-ray).
    Slake,
    /// PSF-Med's base questions with their paraphrases (JSON Lines or a JSON array).
    PsfMed,
    /// MIMIC-CXR-VQA's train/valid/test.json (the `verify` questions).
    MimicCxrVqa,
    /// NIH ChestX-ray14's BBox_List_2017.csv.
    NihBbox,
    /// VinDr-CXR's per-radiologist annotations_train.csv (or the consensus annotations_test.csv).
    VindrCxr,
    /// MS-CXR's MS_CXR_Local_Alignment_v1.0.0.csv (boxes with phrases).
    MsCxr,
    /// radlens' own box CSV (image_id, finding, x, y, w, h, ...).
    Boxes,
}

/// Runs one importer and writes `out`.
pub fn run(format: Format, opts: &ImportOptions, out: &Path) -> Result<Summary, ImportError> {
    if !opts.src.is_file() {
        return Err(ImportError::Read { path: opts.src.clone(), source: std::io::Error::from(std::io::ErrorKind::NotFound) });
    }
    // SLAKE ships one file per split; the NIH, VinDr and own box lists carry none.
    if opts.split.is_some() && matches!(format, Format::Slake | Format::NihBbox | Format::VindrCxr | Format::Boxes) {
        return Err(ImportError::Usage("--split: this format has no split field (its split is the file passed as --src)".to_string()));
    }
    match format {
        Format::VqaRad => vqa_rad::import(opts, out),
        Format::Slake => slake::import(opts, out),
        Format::PsfMed => psf_med::import(opts, out),
        Format::MimicCxrVqa => mimic_cxr_vqa::import(opts, out),
        Format::NihBbox => nih_bbox::import(opts, out),
        Format::VindrCxr => vindr_cxr::import(opts, out),
        Format::MsCxr => ms_cxr::import(opts, out),
        Format::Boxes => boxes::import(opts, out),
    }
}

/// Drop reasons shared by the question importers (the summary counts each).
pub(crate) const NOT_YES_NO_QUESTION: &str = "not a yes/no question (radlens' rule)";
pub(crate) const ANSWER_NOT_YES_NO: &str = "closed question whose answer is not yes or no";
pub(crate) const IMAGE_MISSING: &str = "image not found under --images";
pub(crate) const OTHER_SPLIT: &str = "in another split than --split";

/// A source answer that is literally yes or no (any case, a final period allowed). Stricter
/// than [`Answer::from_label`]: a count answer "1" must not read as yes.
pub(crate) fn yes_no_answer(text: &str) -> Option<Answer> {
    match text.trim().trim_end_matches('.').to_ascii_lowercase().as_str() {
        "yes" => Some(Answer::Yes),
        "no" => Some(Answer::No),
        _ => None,
    }
}

/// The answer of a closed question radlens can study, or why it is dropped.
pub(crate) fn closed_question(question: &str, answer: &str) -> Result<Answer, &'static str> {
    if !radlens_shared::answer::is_yes_no_question(question) {
        return Err(NOT_YES_NO_QUESTION);
    }
    yes_no_answer(answer).ok_or(ANSWER_NOT_YES_NO)
}

/// A question row's answer when radlens can study it (a closed yes/no question with a yes/no
/// answer, its image under `--images`), or why it is dropped.
pub(crate) fn studiable(question: &str, answer: &str, image: &str, images: &mut images::ImageIndex) -> Result<Answer, &'static str> {
    let answer = closed_question(question, answer)?;
    images.size(image).map(|_| answer).ok_or(IMAGE_MISSING)
}

/// Whether a kept-study count has reached `--limit`.
pub(crate) fn at_limit(opts: &ImportOptions, studies: usize) -> bool {
    opts.limit.is_some_and(|n| studies >= n)
}

/// Shared helpers for the importers' unit tests: a scratch folder with PNGs of chosen sizes.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};

    pub struct Scratch(pub PathBuf);

    impl Scratch {
        pub fn new(name: &str) -> Self {
            // Tests run in parallel and may share a name: a counter keeps their folders apart.
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("radlens-import-{}-{n}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("images")).unwrap();
            Self(dir)
        }

        pub fn images(&self) -> PathBuf {
            self.0.join("images")
        }

        /// A blank grey PNG of `w` x `h` at `images/<rel>`.
        pub fn image(&self, rel: &str, w: u32, h: u32) {
            let p = self.images().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            image::GrayImage::from_pixel(w, h, image::Luma([128])).save(&p).unwrap();
        }

        pub fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p
        }

        pub fn out(&self) -> PathBuf {
            self.0.join("questions.csv")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The hand-written fixture `fixtures/import/<rel>`.
    pub fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/import").join(rel)
    }

    pub fn opts(src: &Path, images: &Path) -> super::ImportOptions {
        super::ImportOptions { src: src.to_path_buf(), images: images.to_path_buf(), split: None, limit: None, labels: None }
    }

    /// The written CSV read back by the study's own reader: it must load with no problem.
    pub fn plan(out: &Path) -> crate::study::plan::StudyPlan {
        let plan = crate::study::plan::read_plan(out).unwrap();
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
        plan
    }
}
