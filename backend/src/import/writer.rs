//! The study CSV writer: write `OUT.tmp` in `OUT`'s folder, rename it to `OUT` at the end. A
//! writer dropped before [`CsvOut::finish`] (an error half-way) removes its temporary file, so
//! `OUT` is either the whole new file or untouched.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use radlens_shared::answer::Answer;
use radlens_shared::geometry::PixelBox;

use super::ImportError;

/// The study CSV's own columns, in the order radlens writes them (`study::plan` reads them in
/// any order; anything after them is kept as metadata).
pub const STUDY_COLUMNS: [&str; 14] = [
    "study_id",
    "image_path",
    "question",
    "answer",
    "variant_index",
    "question_variant",
    "strategy",
    "polarity",
    "finding",
    "subject_id",
    "roi_x",
    "roi_y",
    "roi_w",
    "roi_h",
];

/// One row of the study CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRow {
    pub study_id: String,
    pub image_path: String,
    pub question: String,
    /// The correct answer to this exact question.
    pub answer: Answer,
    pub variant_index: u32,
    pub question_variant: String,
    pub strategy: String,
    pub polarity: i8,
    pub finding: Option<String>,
    pub subject_id: Option<String>,
    pub roi: Option<PixelBox>,
    /// Source columns kept beside the study's own (ids, types, every reader's box).
    pub extras: Vec<(&'static str, String)>,
}

impl OutRow {
    /// A base question (variant 0, "baseline", polarity 1).
    pub fn base(study_id: String, image_path: String, question: String, answer: Answer) -> Self {
        Self {
            study_id,
            image_path,
            question,
            answer,
            variant_index: 0,
            question_variant: "original".into(),
            strategy: "baseline".into(),
            polarity: 1,
            finding: None,
            subject_id: None,
            roi: None,
            extras: Vec::new(),
        }
    }

    /// The row's cells under `STUDY_COLUMNS` followed by `extras` (missing extras are empty).
    pub fn cells(&self, extras: &[&str]) -> Vec<String> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let roi = |f: fn(&PixelBox) -> f64| self.roi.as_ref().map(|b| number(f(b))).unwrap_or_default();
        let mut cells = vec![
            self.study_id.clone(),
            self.image_path.clone(),
            self.question.clone(),
            self.answer.as_str().to_string(),
            self.variant_index.to_string(),
            self.question_variant.clone(),
            self.strategy.clone(),
            self.polarity.to_string(),
            opt(&self.finding),
            opt(&self.subject_id),
            roi(|b| b.x0),
            roi(|b| b.y0),
            roi(|b| b.width()),
            roi(|b| b.height()),
        ];
        cells.extend(extras.iter().map(|name| self.extras.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()));
        cells
    }
}

/// A pixel coordinate with at most two decimals and no trailing zeros ("337", "168.5").
pub fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".to_string() } else { s.to_string() }
}

/// A box as `x,y,w,h` (the extra columns that keep every reader's box).
pub fn xywh(b: &PixelBox) -> String {
    format!("{},{},{},{}", number(b.x0), number(b.y0), number(b.width()), number(b.height()))
}

/// A CSV being written to `OUT.tmp`.
pub struct CsvOut {
    out: PathBuf,
    tmp: PathBuf,
    csv: Option<csv::Writer<BufWriter<File>>>,
}

impl CsvOut {
    pub fn create(out: &Path, header: &[String]) -> Result<Self, ImportError> {
        let name = out.file_name().ok_or_else(|| ImportError::Usage(format!("--out {} names no file", out.display())))?;
        let tmp = out.with_file_name(format!("{}.tmp", name.to_string_lossy()));
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| ImportError::Write { path: dir.to_path_buf(), source })?;
        }
        let file = File::create(&tmp).map_err(|source| ImportError::Write { path: tmp.clone(), source })?;
        let mut me = Self { out: out.to_path_buf(), tmp, csv: Some(csv::Writer::from_writer(BufWriter::new(file))) };
        me.write_record(header)?;
        Ok(me)
    }

    pub fn write_record(&mut self, cells: &[String]) -> Result<(), ImportError> {
        let csv = self.csv.as_mut().expect("a CsvOut is written until finish");
        csv.write_record(cells).map_err(|e| ImportError::Write { path: self.tmp.clone(), source: std::io::Error::other(e) })
    }

    /// Flushes and renames `OUT.tmp` to `OUT`.
    pub fn finish(mut self) -> Result<(), ImportError> {
        let csv = self.csv.take().expect("finish runs once");
        let write_err = |source| ImportError::Write { path: self.tmp.clone(), source };
        let buf = csv.into_inner().map_err(|e| write_err(std::io::Error::other(e.to_string())))?;
        let file = buf.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        std::fs::rename(&self.tmp, &self.out).map_err(|source| ImportError::Write { path: self.out.clone(), source })
    }
}

impl Drop for CsvOut {
    fn drop(&mut self) {
        if self.csv.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The study CSV with a fixed set of extra columns.
pub struct StudyWriter {
    csv: CsvOut,
    extras: Vec<&'static str>,
}

impl StudyWriter {
    pub fn create(out: &Path, extras: &[&'static str]) -> Result<Self, ImportError> {
        let header: Vec<String> = STUDY_COLUMNS.iter().chain(extras).map(|s| s.to_string()).collect();
        Ok(Self { csv: CsvOut::create(out, &header)?, extras: extras.to_vec() })
    }

    pub fn write(&mut self, row: &OutRow) -> Result<(), ImportError> {
        self.csv.write_record(&row.cells(&self.extras))
    }

    pub fn finish(self) -> Result<(), ImportError> {
        self.csv.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_two_decimals_at_most() {
        assert_eq!(number(337.0), "337");
        assert_eq!(number(168.5), "168.5");
        assert_eq!(number(112.54237288), "112.54");
        assert_eq!(number(-0.001), "0");
    }

    #[test]
    fn every_field_reads_back_through_the_study_plan() {
        let s = crate::import::test_support::Scratch::new("writer-roundtrip");
        let row = OutRow {
            study_id: "s-1".into(),
            image_path: "dir/a b.png".into(),
            question: "On this film, is there a \"large\" effusion?".into(),
            answer: Answer::No,
            variant_index: 3,
            question_variant: "negation-3".into(),
            strategy: "negation".into(),
            polarity: -1,
            finding: Some("pleural effusion".into()),
            subject_id: Some("10000032".into()),
            roi: Some(PixelBox::from_xywh(168.5, 138.0, 277.25, 193.5).unwrap()),
            extras: vec![("source_id", "q,17".into())],
        };
        let mut w = StudyWriter::create(&s.out(), &["source_id"]).unwrap();
        w.write(&row).unwrap();
        w.finish().unwrap();
        let plan = crate::import::test_support::plan(&s.out());
        let r = &plan.rows[0];
        assert_eq!(
            (r.study_id.as_str(), r.image_path.as_str(), r.question.as_str()),
            (row.study_id.as_str(), row.image_path.as_str(), row.question.as_str())
        );
        assert_eq!(
            (r.answer, r.variant_index, r.variant_name.as_deref(), r.strategy.as_str(), r.polarity),
            (Some(Answer::No), 3, Some("negation-3"), "negation", -1)
        );
        assert_eq!((r.finding.as_deref(), r.subject_id.as_deref(), r.roi), (Some("pleural effusion"), Some("10000032"), row.roi));
        assert_eq!(r.metadata.get("source_id").map(String::as_str), Some("q,17"));
    }

    #[test]
    fn an_unfinished_writer_leaves_no_file_behind() {
        let dir = std::env::temp_dir().join(format!("radlens-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("q.csv");
        {
            let mut w = StudyWriter::create(&out, &[]).unwrap();
            w.write(&OutRow::base("s".into(), "a.png".into(), "Is there a nodule?".into(), Answer::Yes)).unwrap();
            // Dropped without finish, as on an error half-way through the source.
        }
        assert!(!out.exists() && !dir.join("q.csv.tmp").exists());
        let mut w = StudyWriter::create(&out, &["source_id"]).unwrap();
        let mut row = OutRow::base("s".into(), "a.png".into(), "Is there a nodule?".into(), Answer::Yes);
        row.extras.push(("source_id", "17".into()));
        w.write(&row).unwrap();
        w.finish().unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text.lines().next().unwrap(), format!("{},source_id", STUDY_COLUMNS.join(",")));
        assert!(text.lines().nth(1).unwrap().ends_with(",17"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
