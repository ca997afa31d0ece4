//! The study CSV -> validated rows. Every problem is found in one pass and reported with its
//! line; a row with a problem becomes an error record at run time (the run goes on), and
//! `--strict` refuses the whole file instead.
//!
//! Columns: `study_id`, `image_path`, `question`, `answer` (required); `question_variant` or
//! `variant_id`, `variant_index`, `strategy`, `polarity`, `finding`, `subject_id`,
//! `roi_x, roi_y, roi_w, roi_h`, `confound_*`, and the row's other images
//! `prior_image_path`, `lateral_image_path` (optional; `image_path` is the current image);
//! anything else is kept as metadata.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use radlens_shared::answer::Answer;
use radlens_shared::geometry::PixelBox;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::models::processor::ImageRole;

const REQUIRED: [&str; 4] = ["study_id", "image_path", "question", "answer"];
/// The optional columns naming a row's other images, with their roles (issue 21).
pub const EXTRA_IMAGE_COLUMNS: [(&str, ImageRole); 2] =
    [("prior_image_path", ImageRole::Prior), ("lateral_image_path", ImageRole::Lateral)];
const KNOWN: [&str; 21] = [
    "study_id",
    "image_path",
    "prior_image_path",
    "lateral_image_path",
    "question",
    "answer",
    "question_variant",
    "variant_id",
    "variant_index",
    "strategy",
    "polarity",
    "finding",
    "subject_id",
    "roi_x",
    "roi_y",
    "roi_w",
    "roi_h",
    "confound_x",
    "confound_y",
    "confound_w",
    "confound_h",
];

#[derive(Debug, Error)]
pub enum PlanError {
    #[error("cannot read {path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Csv { path: PathBuf, message: String },
    #[error("{path}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  line {}: {}", p.line, p.message)).collect::<Vec<_>>().join("\n"))]
    Problems { path: PathBuf, problems: Vec<RowProblem> },
}

/// A problem with one CSV line (1-based, the header is line 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub line: usize,
    pub message: String,
}

/// One validated row: a question variant of a study.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyRow {
    pub csv_line: usize,
    pub study_id: String,
    pub subject_id: Option<String>,
    /// The current image (role `current`).
    pub image_path: String,
    /// The row's other images (`prior_image_path`, `lateral_image_path`), in that column
    /// order; empty for a single-image row.
    pub extra_images: Vec<RowImage>,
    pub question: String,
    /// The correct answer to this exact question.
    pub answer: Option<Answer>,
    pub variant_index: u32,
    pub variant_name: Option<String>,
    pub strategy: String,
    pub polarity: i8,
    pub finding: Option<String>,
    pub roi: Option<PixelBox>,
    /// A known shortcut region (`confound_*`), for the `confound_occluded` condition.
    pub confound: Option<PixelBox>,
    pub metadata: BTreeMap<String, String>,
    /// Why this row cannot be run (it becomes an error record), if anything.
    pub problem: Option<String>,
}

/// One of a row's images besides the current one: its role, the CSV column that names it,
/// and its path (relative to the image folder, as `image_path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowImage {
    pub role: ImageRole,
    pub column: &'static str,
    pub path: String,
}

impl StudyRow {
    pub fn sample_id(&self) -> String {
        format!("{}#{}", self.study_id, self.variant_index)
    }

    /// Every image the row shows, as one key: rows share encodings and a prompt prefix only
    /// when their keys are equal (the current image alone for a single-image row).
    pub fn image_key(&self) -> String {
        let mut key = self.image_path.clone();
        for extra in &self.extra_images {
            key.push_str(&format!("\n{}={}", extra.role, extra.path));
        }
        key
    }
}

/// The whole study, rows grouped by study in file order.
#[derive(Debug, Clone)]
pub struct StudyPlan {
    pub csv_path: PathBuf,
    pub csv_sha256: String,
    pub rows: Vec<StudyRow>,
    pub problems: Vec<RowProblem>,
}

impl StudyPlan {
    /// Study ids in first-appearance order.
    pub fn study_ids(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.rows.iter().filter(|r| seen.insert(r.study_id.clone())).map(|r| r.study_id.clone()).collect()
    }

    /// The rows of each study, variants in index order.
    pub fn studies(&self) -> Vec<(String, Vec<&StudyRow>)> {
        let mut by: HashMap<&str, Vec<&StudyRow>> = HashMap::new();
        for r in &self.rows {
            by.entry(&r.study_id).or_default().push(r);
        }
        self.study_ids()
            .into_iter()
            .map(|id| {
                let mut rows = by.remove(id.as_str()).unwrap_or_default();
                rows.sort_by_key(|r| r.variant_index);
                (id, rows)
            })
            .collect()
    }

    /// Keeps only the first `n` studies (file order).
    pub fn truncate_studies(&mut self, n: usize) {
        let keep: std::collections::HashSet<String> = self.study_ids().into_iter().take(n).collect();
        self.rows.retain(|r| keep.contains(&r.study_id));
    }
}

fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads and validates `path`. Missing required columns or unreadable CSV fail at once;
/// row-level problems are collected (and attached to their rows).
pub fn read_plan(path: &Path) -> Result<StudyPlan, PlanError> {
    let bytes = std::fs::read(path).map_err(|source| PlanError::Io { path: path.to_path_buf(), source })?;
    let csv_err = |message: String| PlanError::Csv { path: path.to_path_buf(), message };
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes.as_slice());
    let headers: Vec<String> = reader.headers().map_err(|e| csv_err(e.to_string()))?.iter().map(|h| h.trim().to_string()).collect();
    let missing: Vec<&str> = REQUIRED.iter().copied().filter(|c| !headers.iter().any(|h| h == c)).collect();
    if !missing.is_empty() {
        return Err(csv_err(format!("missing required column(s) {} (found: {})", missing.join(", "), headers.join(", "))));
    }
    let col = |name: &str| headers.iter().position(|h| h == name);
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(RowProblem { line, message: format!("unreadable CSV row: {e}") });
                continue;
            }
        };
        if record.len() != headers.len() {
            problems.push(RowProblem { line, message: format!("{} fields, the header has {}", record.len(), headers.len()) });
        }
        let get = |name: &str| col(name).and_then(|c| record.get(c)).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        let mut row_problems = Vec::new();
        let study_id = get("study_id").unwrap_or_else(|| {
            row_problems.push("study_id is empty".to_string());
            format!("line-{line}")
        });
        let image_path = get("image_path").unwrap_or_else(|| {
            row_problems.push("image_path is empty".to_string());
            String::new()
        });
        let question = get("question").unwrap_or_else(|| {
            row_problems.push("question is empty".to_string());
            String::new()
        });
        let answer = match get("answer") {
            Some(a) => match Answer::from_label(&a) {
                Some(a) => Some(a),
                None => {
                    row_problems.push(format!("answer {a:?} is not yes or no"));
                    None
                }
            },
            None => {
                row_problems.push("answer is empty".to_string());
                None
            }
        };
        let variant_index = match get("variant_index") {
            Some(v) => match v.parse::<u32>() {
                Ok(v) => Some(v),
                Err(_) => {
                    row_problems.push(format!("variant_index {v:?} is not a non-negative integer"));
                    None
                }
            },
            None => None,
        };
        let polarity = match get("polarity").as_deref() {
            None | Some("1") | Some("+1") => 1,
            Some("-1") => -1,
            Some(other) => {
                row_problems.push(format!("polarity {other:?} must be 1 or -1"));
                1
            }
        };
        // `PREFIX_x, _y, _w, _h`: all set (numbers, positive size) or all empty.
        let mut parse_box = |prefix: &str| {
            let parts = ["x", "y", "w", "h"].map(|c| get(&format!("{prefix}_{c}")));
            let names = ["x", "y", "w", "h"].map(|c| format!("{prefix}_{c}")).join(", ");
            if parts.iter().all(Option::is_none) {
                return None;
            }
            let nums: Option<Vec<f64>> = parts.iter().map(|p| p.as_deref()?.parse::<f64>().ok()).collect();
            let b = nums.and_then(|n| PixelBox::from_xywh(n[0], n[1], n[2], n[3]).ok());
            if b.is_none() {
                row_problems.push(if parts.iter().any(Option::is_none) {
                    format!("{names} must be all set or all empty")
                } else {
                    format!("{names} must be numbers with positive width and height")
                });
            }
            b
        };
        let roi = parse_box("roi");
        // A known shortcut region (a burned-in marker, a tube): radlens' `confound_occluded`.
        let confound = parse_box("confound");
        let metadata = headers
            .iter()
            .enumerate()
            .filter(|(_, h)| !KNOWN.contains(&h.as_str()))
            .filter_map(|(c, h)| {
                let name = if h.is_empty() { "csv_index".to_string() } else { h.clone() };
                record.get(c).map(|v| (name, v.to_string()))
            })
            .collect();
        for message in &row_problems {
            problems.push(RowProblem { line, message: message.clone() });
        }
        rows.push(StudyRow {
            csv_line: line,
            study_id,
            subject_id: get("subject_id"),
            image_path,
            extra_images: EXTRA_IMAGE_COLUMNS
                .iter()
                .filter_map(|&(column, role)| get(column).map(|path| RowImage { role, column, path }))
                .collect(),
            question,
            answer,
            variant_index: variant_index.unwrap_or(u32::MAX),
            variant_name: get("question_variant").or_else(|| get("variant_id")),
            strategy: get("strategy").map(|s| s.to_lowercase()).unwrap_or_else(|| "baseline".into()),
            polarity,
            finding: get("finding"),
            roi,
            confound,
            metadata,
            problem: (!row_problems.is_empty()).then(|| row_problems.join("; ")),
        });
    }
    assign_variants(&mut rows, &mut problems);
    problems.sort_by_key(|p| p.line);
    Ok(StudyPlan { csv_path: path.to_path_buf(), csv_sha256: digest(&bytes), rows, problems })
}

/// Rows without `variant_index` are numbered in file order within their study (after any given
/// indexes); a repeated (study, variant) is a problem of the later line.
fn assign_variants(rows: &mut [StudyRow], problems: &mut Vec<RowProblem>) {
    let mut next: HashMap<String, u32> = HashMap::new();
    for r in rows.iter().filter(|r| r.variant_index != u32::MAX) {
        let n = next.entry(r.study_id.clone()).or_insert(0);
        *n = (*n).max(r.variant_index + 1);
    }
    let mut seen: HashMap<(String, u32), usize> = HashMap::new();
    for r in rows.iter_mut() {
        if r.variant_index == u32::MAX {
            let n = next.entry(r.study_id.clone()).or_insert(0);
            r.variant_index = *n;
            *n += 1;
        }
        if let Some(first) = seen.insert((r.study_id.clone(), r.variant_index), r.csv_line) {
            let message = format!("study {} variant {} repeats line {first}", r.study_id, r.variant_index);
            problems.push(RowProblem { line: r.csv_line, message: message.clone() });
            r.problem = Some(r.problem.take().map_or(message.clone(), |p| format!("{p}; {message}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("radlens-plan-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("{name}.csv"));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_demo_study_reads_cleanly() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../static/demo/demo-study.csv");
        let plan = read_plan(&p).unwrap();
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
        assert_eq!(plan.rows.len(), 180);
        assert_eq!(plan.studies().len(), 30);
        let negated = plan.rows.iter().filter(|r| r.polarity == -1).count();
        assert_eq!(negated, 30);
        assert!(plan.rows.iter().any(|r| r.roi.is_some()));
    }

    #[test]
    fn the_prototypes_csv_with_an_unnamed_index_column_is_accepted() {
        let p = write(
            "seed",
            ",dicom_id,subject_id,study_id,question,question_type,answer,split,image_path\n1,d1,10,s1,is there effusion?,presence,no,train,a.jpg\n5,d2,10,s2,is there fracture?,presence,yes,train,b.jpg\n",
        );
        let plan = read_plan(&p).unwrap();
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
        assert_eq!(plan.rows[0].metadata.get("csv_index").map(String::as_str), Some("1"));
        assert_eq!(plan.rows[0].metadata.get("dicom_id").map(String::as_str), Some("d1"));
        assert_eq!(plan.rows[1].subject_id.as_deref(), Some("10"));
        assert_eq!(plan.rows[1].variant_index, 0, "one row per study: the base question");
    }

    #[test]
    fn every_problem_is_listed_with_its_line_and_the_row_is_kept() {
        let p = write(
            "bad",
            "study_id,image_path,question,answer,variant_index,polarity,roi_x,roi_y,roi_w,roi_h\ns1,a.png,q?,maybe,0,1,,,,\ns1,a.png,,yes,1,2,,,,\ns1,a.png,q?,no,1,1,1,2,,\n",
        );
        let plan = read_plan(&p).unwrap();
        let lines: Vec<usize> = plan.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![2, 3, 3, 4, 4]);
        assert!(plan.problems[0].message.contains("maybe"));
        assert_eq!(plan.rows.len(), 3, "rows with problems are kept, to become error records");
        assert!(plan.rows.iter().all(|r| r.problem.is_some()));
    }

    #[test]
    fn a_confound_box_is_read_like_the_roi_and_checked_the_same_way() {
        let p = write(
            "confound",
            "study_id,image_path,question,answer,confound_x,confound_y,confound_w,confound_h,confound_label\n\
             s1,a.png,q?,yes,460,20,28,28,corner marker\ns2,b.png,q?,no,,,,,\ns3,c.png,q?,no,1,2,3,,\ns4,d.png,q?,no,1,2,x,4,\n",
        );
        let plan = read_plan(&p).unwrap();
        assert_eq!(plan.rows[0].confound, Some(PixelBox::from_xywh(460.0, 20.0, 28.0, 28.0).unwrap()));
        assert_eq!(plan.rows[0].metadata.get("confound_label").map(String::as_str), Some("corner marker"), "the label is kept");
        assert!(!plan.rows[0].metadata.contains_key("confound_x"), "the box columns are interpreted, not metadata");
        assert_eq!(plan.rows[1].confound, None);
        let problems: Vec<(usize, &str)> = plan.problems.iter().map(|p| (p.line, p.message.as_str())).collect();
        assert_eq!(
            problems,
            [
                (4, "confound_x, confound_y, confound_w, confound_h must be all set or all empty"),
                (5, "confound_x, confound_y, confound_w, confound_h must be numbers with positive width and height"),
            ]
        );
    }

    #[test]
    fn prior_and_lateral_images_are_read_with_their_roles_and_kept_out_of_metadata() {
        let p = write(
            "multi",
            "study_id,image_path,prior_image_path,lateral_image_path,question,answer\ns1,a.png,p.png,,q?,yes\ns2,b.png,,,q?,no\ns3,c.png,p.png,l.png,q?,no\n",
        );
        let plan = read_plan(&p).unwrap();
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
        let prior = RowImage { role: ImageRole::Prior, column: "prior_image_path", path: "p.png".into() };
        let lateral = RowImage { role: ImageRole::Lateral, column: "lateral_image_path", path: "l.png".into() };
        assert_eq!(plan.rows[0].extra_images, vec![prior.clone()]);
        assert!(plan.rows[1].extra_images.is_empty());
        assert_eq!(plan.rows[2].extra_images, vec![prior, lateral]);
        assert!(plan.rows.iter().all(|r| r.metadata.is_empty()), "the image columns are interpreted");
        assert_eq!(plan.rows[1].image_key(), "b.png", "a single-image row's key is its image");
        assert_ne!(plan.rows[0].image_key(), "a.png", "the prior is part of the key");
    }

    #[test]
    fn missing_required_columns_fail_at_once() {
        let p = write("cols", "study_id,question\ns1,q?\n");
        let err = read_plan(&p).unwrap_err().to_string();
        assert!(err.contains("image_path") && err.contains("answer") && err.contains("cols.csv"), "{err}");
    }
}
