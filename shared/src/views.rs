//! Views of a run's records that no single record decides: "flipped vs base" and "models
//! disagree". The dashboard filters on them and both CSV downloads (the explorer's and the
//! server's `records.csv` endpoint) write them, so they are defined once, here. So is the record
//! order ([`SortKey`], [`sort_records`]): the server's `sort=` and the explorer's column headers.
//!
//! Both are computed over every record of the run (never over a filtered subset), so a record's
//! flags do not change with the view it is seen in.

use std::collections::{BTreeSet, HashMap};

use crate::answer::Answer;
use crate::record::{CaseRecord, Pass};

/// `parsed` read in the base question's sense (a negated question's yes means no).
fn in_base_sense(r: &CaseRecord) -> Option<bool> {
    let yes = match r.parsed_answer? {
        Answer::Yes => true,
        Answer::No => false,
        Answer::Unknown => return None,
    };
    Some(if r.polarity < 0 { !yes } else { yes })
}

/// Per record (same order): does its answer, read in the base question's sense, differ from
/// the base variant's (variant 0) answer of the same study, model and pass?
pub fn flipped_vs_base<R: AsRef<CaseRecord>>(records: &[R]) -> Vec<bool> {
    let mut base: HashMap<(&str, &str, Pass), Option<bool>> = HashMap::new();
    for r in records.iter().map(AsRef::as_ref) {
        if r.variant_index == 0 {
            base.insert((r.study_id.as_str(), r.model.as_str(), r.pass), in_base_sense(r));
        }
    }
    records
        .iter()
        .map(|r| {
            let r = r.as_ref();
            if r.variant_index == 0 {
                return false;
            }
            match (in_base_sense(r), base.get(&(r.study_id.as_str(), r.model.as_str(), r.pass))) {
                (Some(a), Some(Some(b))) => a != *b,
                _ => false,
            }
        })
        .collect()
}

/// Per record (same order): did the models answer its sample (same pass) differently?
pub fn models_disagree<R: AsRef<CaseRecord>>(records: &[R]) -> Vec<bool> {
    let mut answers: HashMap<(&str, Pass), BTreeSet<Answer>> = HashMap::new();
    let mut models: HashMap<(&str, Pass), BTreeSet<&str>> = HashMap::new();
    for r in records.iter().map(AsRef::as_ref) {
        let key = (r.sample_id.as_str(), r.pass);
        if let Some(a) = r.parsed_answer {
            answers.entry(key).or_default().insert(a);
            models.entry(key).or_default().insert(r.model.as_str());
        }
    }
    records
        .iter()
        .map(|r| {
            let r = r.as_ref();
            let key = (r.sample_id.as_str(), r.pass);
            answers.get(&key).is_some_and(|a| a.len() > 1) && models.get(&key).is_some_and(|m| m.len() > 1)
        })
        .collect()
}

/// A key records are sorted by (`sort=KEY`, `-KEY` descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Index,
    SampleId,
    StudyId,
    Model,
    Strategy,
    Correct,
    Margin,
    Latency,
    Focus,
    Entropy,
}

impl SortKey {
    pub const ALL: [SortKey; 10] = [
        SortKey::Index,
        SortKey::SampleId,
        SortKey::StudyId,
        SortKey::Model,
        SortKey::Strategy,
        SortKey::Correct,
        SortKey::Margin,
        SortKey::Latency,
        SortKey::Focus,
        SortKey::Entropy,
    ];

    /// The key's name in a query string.
    pub fn key(self) -> &'static str {
        match self {
            SortKey::Index => "index",
            SortKey::SampleId => "sample_id",
            SortKey::StudyId => "study_id",
            SortKey::Model => "model",
            SortKey::Strategy => "strategy",
            SortKey::Correct => "correct",
            SortKey::Margin => "margin",
            SortKey::Latency => "latency",
            SortKey::Focus => "focus",
            SortKey::Entropy => "entropy",
        }
    }

    pub fn from_key(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.key() == s)
    }

    /// A `sort=` value: the key and whether it is descending (a leading `-`).
    pub fn parse(s: &str) -> Option<(Self, bool)> {
        match s.strip_prefix('-') {
            Some(k) => Some((Self::from_key(k)?, true)),
            None => Some((Self::from_key(s)?, false)),
        }
    }

    /// The record's value for a numeric key (`None` for a missing value or a non-numeric key).
    fn number(self, r: &CaseRecord) -> Option<f64> {
        match self {
            SortKey::Margin => r.yes_no_margin,
            SortKey::Latency => Some(r.latency.total_ms),
            SortKey::Focus => r.map.as_ref().map(|m| m.metrics.focus),
            SortKey::Entropy => r.map.as_ref().map(|m| m.metrics.entropy_nats),
            _ => None,
        }
    }
}

/// Sorts `idx` (positions into `records`) by `key`. `index_of(position)` is the record's index in
/// its run (what [`SortKey::Index`] sorts by). Text and `correct` keys sort ascending (stable)
/// and reverse for `desc`; numeric keys (margin, latency, focus, entropy) put missing values last
/// in either direction, ties in their incoming order.
pub fn sort_records<R: AsRef<CaseRecord>>(records: &[R], idx: &mut [usize], key: SortKey, desc: bool, index_of: impl Fn(usize) -> usize) {
    use std::cmp::Ordering;
    let r = |i: usize| records[i].as_ref();
    match key {
        SortKey::Margin | SortKey::Latency | SortKey::Focus | SortKey::Entropy => {
            idx.sort_by(|&a, &b| match (key.number(r(a)), key.number(r(b))) {
                (Some(x), Some(y)) => {
                    let o = x.total_cmp(&y);
                    if desc { o.reverse() } else { o }
                }
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            });
            return;
        }
        SortKey::Index => idx.sort_by_key(|&i| index_of(i)),
        SortKey::SampleId => idx.sort_by(|&a, &b| r(a).sample_id.cmp(&r(b).sample_id)),
        SortKey::StudyId => idx.sort_by(|&a, &b| r(a).study_id.cmp(&r(b).study_id)),
        SortKey::Model => idx.sort_by(|&a, &b| r(a).model.cmp(&r(b).model)),
        SortKey::Strategy => idx.sort_by(|&a, &b| r(a).strategy.cmp(&r(b).strategy)),
        SortKey::Correct => idx.sort_by_key(|&i| r(i).correct),
    }
    if desc {
        idx.reverse();
    }
}

/// Both views of every record of a run, by position.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Derived {
    pub flipped: Vec<bool>,
    pub disagree: Vec<bool>,
}

impl Derived {
    pub fn of<R: AsRef<CaseRecord>>(records: &[R]) -> Self {
        Self { flipped: flipped_vs_base(records), disagree: models_disagree(records) }
    }

    /// The record at position `i` is flipped vs its base (false past the end).
    pub fn flipped(&self, i: usize) -> bool {
        self.flipped.get(i).copied().unwrap_or(false)
    }

    /// The models disagree on the record at position `i` (false past the end).
    pub fn disagree(&self, i: usize) -> bool {
        self.disagree.get(i).copied().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with just what the views read.
    fn rec(study: &str, variant: u32, polarity: i8, model: &str, pass: &str, parsed: Option<&str>) -> CaseRecord {
        serde_json::from_value(serde_json::json!({
            "schema_version": 1, "sample_id": format!("{study}#{variant}"), "study_id": study,
            "csv_line": 2, "variant_index": variant, "strategy": if variant == 0 { "baseline" } else { "negation" },
            "polarity": polarity, "finding": null, "model": model, "pass": pass, "image": "x.png",
            "question": "q?", "ground_truth": "yes", "parsed_answer": parsed, "correct": parsed.map(|p| p == "yes"),
            "latency": { "preprocess_ms": 0.0, "image_encode_ms": 0.0, "prefill_ms": 0.0, "decode_ms": 0.0, "capture_ms": 0.0, "total_ms": 0.0 },
        }))
        .expect("a record")
    }

    #[test]
    fn records_sort_by_text_reversed_when_descending_and_numbers_with_missing_last() {
        let mut rs = vec![
            rec("s2", 0, 1, "b", "image", Some("yes")),
            rec("s1", 0, 1, "a", "image", Some("no")),
            rec("s1", 1, 1, "b", "image", None),
            rec("s3", 0, 1, "a", "image", Some("yes")),
        ];
        for (r, m) in rs.iter_mut().zip([Some(0.5), None, Some(-1.0), Some(0.5)]) {
            r.yes_no_margin = m;
        }
        let sorted = |key: SortKey, desc: bool| {
            let mut idx: Vec<usize> = (0..rs.len()).collect();
            sort_records(&rs, &mut idx, key, desc, |i| 10 - i);
            idx
        };
        assert_eq!(sorted(SortKey::Index, false), vec![3, 2, 1, 0]);
        assert_eq!(sorted(SortKey::Model, false), vec![1, 3, 0, 2]);
        assert_eq!(sorted(SortKey::Model, true), vec![2, 0, 3, 1]);
        assert_eq!(sorted(SortKey::StudyId, false), vec![1, 2, 0, 3]);
        assert_eq!(sorted(SortKey::Correct, false), vec![2, 1, 0, 3]);
        // Numbers: ties keep their order, missing values last in both directions.
        assert_eq!(sorted(SortKey::Margin, false), vec![2, 0, 3, 1]);
        assert_eq!(sorted(SortKey::Margin, true), vec![0, 3, 2, 1]);
        assert_eq!(SortKey::parse("-focus"), Some((SortKey::Focus, true)));
        assert_eq!(SortKey::parse("sample_id"), Some((SortKey::SampleId, false)));
        assert_eq!(SortKey::parse("-"), None);
        assert_eq!(SortKey::parse("size"), None);
        assert!(SortKey::ALL.iter().all(|k| SortKey::from_key(k.key()) == Some(*k)));
    }

    #[test]
    fn a_flip_is_read_in_the_base_questions_sense_per_study_model_and_pass() {
        let rs = vec![
            rec("s1", 0, 1, "a", "image", Some("yes")),
            rec("s1", 1, -1, "a", "image", Some("no")),      // negated: "no" means yes, stable
            rec("s1", 2, 1, "a", "image", Some("no")),       // flipped
            rec("s1", 3, 1, "a", "image", Some("unknown")),  // unparsed: never a flip
            rec("s1", 2, 1, "a", "blank_image", Some("no")), // its pass has no base: not a flip
            rec("s2", 1, 1, "a", "image", Some("no")),       // its study has no base: not a flip
        ];
        assert_eq!(flipped_vs_base(&rs), vec![false, false, true, false, false, false]);
    }

    #[test]
    fn disagreement_needs_two_models_with_different_answers_on_one_sample_and_pass() {
        let rs = vec![
            rec("s1", 0, 1, "a", "image", Some("yes")),
            rec("s1", 0, 1, "b", "image", Some("no")),
            rec("s1", 1, 1, "a", "image", Some("no")),
            rec("s1", 1, 1, "b", "image", Some("no")),
            rec("s1", 0, 1, "a", "blank_image", Some("no")), // alone on its pass
            rec("s1", 1, 1, "a", "blank_image", None),
        ];
        assert_eq!(models_disagree(&rs), vec![true, true, false, false, false, false]);
        let d = Derived::of(&rs);
        assert!(d.disagree(0) && !d.flipped(0) && !d.disagree(99));
    }
}
