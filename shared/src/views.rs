//! Views of a run's records that no single record decides: "flipped vs base" and "models
//! disagree". The dashboard filters on them and both CSV downloads (the explorer's and the
//! server's `records.csv` endpoint) write them, so they are defined once, here. So is the record
//! order ([`SortKey`], [`sort_records`]): the server's `sort=` and the explorer's column headers.
//! And so is grounding G4's study verdict, "the map moves more under a null edit than under
//! rewording" ([`NullEditFlags`], `null_edit_moves=`), which also needs the maps' values.
//!
//! All are computed over every record of the run (never over a filtered subset), so a record's
//! flags do not change with the view it is seen in.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::answer::Answer;
use crate::grounding::{NullEdit, NullEditRecord, NullEditStudy, null_edit_study_from_distances};
use crate::map::AttentionMap;
use crate::metrics::js_divergence_maps;
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

/// The query key of the null-edit view: `null_edit_moves=true` keeps the records of studies
/// (per model) whose maps move more under a null edit than under rewording, `false` those whose
/// maps do not; absent, every record.
pub const NULL_EDIT_KEY: &str = "null_edit_moves";

/// A record's null edits (grounding G4): those on the grounding entry of its own map's method,
/// where the run stores them. Empty without a map or without null edits.
pub fn own_null_edits(r: &CaseRecord) -> &[NullEditRecord] {
    let Some(own) = r.map.as_ref().map(|m| m.provenance.method) else { return &[] };
    r.grounding.as_ref().and_then(|g| g.of(own)).map(|g| g.null_edits.as_slice()).unwrap_or(&[])
}

/// The (study, model) groups of the image pass, each with its records' positions, in run order.
fn image_groups<R: AsRef<CaseRecord>>(records: &[R]) -> BTreeMap<(&str, &str), Vec<usize>> {
    let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().map(AsRef::as_ref).enumerate() {
        if r.pass == Pass::Image {
            groups.entry((r.study_id.as_str(), r.model.as_str())).or_default().push(i);
        }
    }
    groups
}

/// Positions of the records whose map values [`NullEditFlags::of`] needs: the image-pass records
/// with a map, of every (study, model) one of whose records carries a null edit. Empty for a
/// run made without null edits, so nothing is fetched or read for it.
pub fn null_edit_maps_needed<R: AsRef<CaseRecord>>(records: &[R]) -> Vec<usize> {
    let mut out: Vec<usize> = image_groups(records)
        .into_values()
        .filter(|g| g.iter().any(|&i| !own_null_edits(records[i].as_ref()).is_empty()))
        .flat_map(|g| g.into_iter().filter(|&i| records[i].as_ref().map.is_some()))
        .collect();
    out.sort_unstable();
    out
}

/// Grounding G4 per study and model: the figures of each null edit
/// ([`null_edit_study_from_distances`]) and, per record, whether its study's maps (for its model)
/// move more under a null edit than under rewording.
///
/// The paraphrase distances are the JS distances (bits, `sqrt` of [`js_divergence_maps`]) between
/// the base variant's map (variant 0) and every other variant's map of the same study, model and
/// image pass; the null distances are the records' stored `js_distance` for that edit. A study is
/// flagged when any edit's `paraphrase_to_null < 1`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NullEditFlags {
    /// Per record position: `Some(true)` flagged, `Some(false)` a ratio exists for some edit and
    /// none is below 1, `None` no ratio (no null edit, no base map, a single variant, or a
    /// blank-image record: the comparison is about the image pass's maps).
    flags: Vec<Option<bool>>,
    /// The figures per (study, model), one per edit that has any null distance, in
    /// [`NullEdit::ALL`] order.
    pub studies: BTreeMap<(String, String), Vec<NullEditStudy>>,
}

impl NullEditFlags {
    /// The figures of every (study, model). `map(position)` gives the stored map of the records
    /// [`null_edit_maps_needed`] lists (as the API sends it: see `crate::api::as_sent`); a missing
    /// one is an error naming the record, never a silently smaller comparison.
    pub fn of<'m, R: AsRef<CaseRecord>>(records: &[R], map: impl Fn(usize) -> Option<&'m AttentionMap>) -> Result<Self, String> {
        let mut out = Self { flags: vec![None; records.len()], studies: BTreeMap::new() };
        for ((study, model), group) in image_groups(records) {
            let rec = move |i: usize| records[i].as_ref();
            if group.iter().all(|&i| own_null_edits(rec(i)).is_empty()) {
                continue;
            }
            let map_of = |i: usize| -> Result<Option<&'m AttentionMap>, String> {
                if rec(i).map.is_none() {
                    return Ok(None);
                }
                map(i).map(Some).ok_or_else(|| format!("the map of record {} ({}, {model}) is missing", i, rec(i).sample_id))
            };
            let base = group.iter().find(|&&i| rec(i).variant_index == 0).copied();
            let base_map = match base {
                Some(b) => map_of(b)?,
                None => None,
            };
            let mut paraphrase = Vec::new();
            if let Some(base_map) = base_map {
                for &i in group.iter().filter(|&&i| rec(i).variant_index != 0) {
                    if let Some(m) = map_of(i)? {
                        let d = js_divergence_maps(base_map, m).map_err(|e| format!("{study}, {model}: {e}"))?;
                        paraphrase.push(d.sqrt());
                    }
                }
            }
            let mut figures = Vec::new();
            for edit in NullEdit::ALL {
                let null: Vec<f64> =
                    group.iter().flat_map(|&i| own_null_edits(rec(i)).iter().filter(|e| e.edit == edit).map(|e| e.js_distance)).collect();
                if null.is_empty() {
                    continue;
                }
                figures
                    .push(null_edit_study_from_distances(edit, &paraphrase, &null).map_err(|e| format!("{study}, {model}, {edit}: {e}"))?);
            }
            let verdict = figures.iter().any(|f| f.paraphrase_to_null.is_some()).then(|| figures.iter().any(|f| f.flagged));
            for &i in &group {
                out.flags[i] = verdict;
            }
            out.studies.insert((study.to_owned(), model.to_owned()), figures);
        }
        Ok(out)
    }

    /// The verdict of the record at position `i` (`None` past the end or when never computed).
    pub fn flag(&self, i: usize) -> Option<bool> {
        self.flags.get(i).copied().flatten()
    }

    /// Whether the record at `i` passes `null_edit_moves=want`: any record for `None`, else only
    /// records whose verdict is `want` (records without a verdict match neither yes nor no).
    pub fn matches(&self, i: usize, want: Option<bool>) -> bool {
        want.is_none_or(|w| self.flag(i) == Some(w))
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

    /// `r` with an attention map and, on that map's grounding entry, null edits `(edit, js)`.
    fn mapped(mut r: CaseRecord, edits: &[(&str, f64)]) -> CaseRecord {
        r.map = Some(
            serde_json::from_value(serde_json::json!({
                "provenance": {
                    "model": r.model, "method": "query_to_visual", "layer_range": "last-quarter", "layers": [1],
                    "head_fusion": "mean", "query_mode": "query", "query_positions": [9],
                    "geometry": {"h": 1, "w": 2, "crop": {"x0": 0.0, "y0": 0.0, "x1": 4.0, "y1": 4.0}, "image_w": 4, "image_h": 4}
                },
                "image_share": 0.5, "metrics": {"entropy_nats": 1.0, "focus": 0.2, "gini": 0.3, "top10_mass": 0.4}, "roi": null,
                "values": {"file": "a.bin", "offset": 0, "shape": [1, 2]}, "head_rows": {"file": "a.bin", "offset": 8, "shape": [1, 1, 1, 2]}
            }))
            .expect("a map"),
        );
        let edits: Vec<serde_json::Value> = edits
            .iter()
            .map(|(e, js)| serde_json::json!({"edit": e, "answer_equal": true, "margin_delta": 0.0, "js_distance": js}))
            .collect();
        r.grounding = Some(
            serde_json::from_value(serde_json::json!({"maps": [{"method": "query_to_visual", "null_edits": edits}]})).expect("grounding"),
        );
        r
    }

    /// The JS distance (bits) of two 1 x 2 maps, as the view computes it.
    fn d(a: &AttentionMap, b: &AttentionMap) -> f64 {
        js_divergence_maps(a, b).unwrap().sqrt()
    }

    #[test]
    fn a_study_is_flagged_when_its_maps_move_more_under_a_null_edit_than_under_rewording() {
        let rs = vec![
            mapped(rec("s1", 0, 1, "a", "image", Some("yes")), &[("contrast90", 0.5), ("jpeg90", 0.01)]),
            mapped(rec("s1", 1, 1, "a", "image", Some("yes")), &[("contrast90", 0.3), ("jpeg90", 0.01)]),
            rec("s1", 0, 1, "a", "blank_image", Some("no")), // the text-only pass: no verdict
            mapped(rec("s1", 0, 1, "b", "image", Some("yes")), &[("contrast90", 0.0)]), // null_js = 0: no ratio
            mapped(rec("s1", 1, 1, "b", "image", Some("yes")), &[("contrast90", 0.0)]),
            mapped(rec("s2", 0, 1, "a", "image", Some("yes")), &[("jpeg90", 0.01)]), // one variant: no ratio
            mapped(rec("s3", 0, 1, "a", "image", Some("yes")), &[]),                 // no null edit at all
            mapped(rec("s3", 1, 1, "a", "image", Some("yes")), &[]),
        ];
        let base = AttentionMap::new(1, 2, vec![0.6, 0.4]).unwrap();
        let other = AttentionMap::new(1, 2, vec![0.4, 0.6]).unwrap();
        let maps: HashMap<usize, AttentionMap> =
            [(0, base.clone()), (1, other.clone()), (3, base.clone()), (4, other.clone()), (5, base.clone())].into();
        // Only the groups with null edits need their maps (s3 has none; blank records have none).
        assert_eq!(null_edit_maps_needed(&rs), vec![0, 1, 3, 4, 5]);
        let v = NullEditFlags::of(&rs, |i| maps.get(&i)).unwrap();
        // s1/a: paraphrase JS d(base, other) ~ 0.146 bits; contrast90's null JS is the mean of 0.5
        // and 0.3 = 0.4 (ratio < 1: flagged), jpeg90's 0.01 (ratio > 1). Flagged by one edit.
        let s1a = &v.studies[&("s1".to_owned(), "a".to_owned())];
        let p = d(&base, &other);
        assert_eq!(s1a.len(), 2);
        assert_eq!((s1a[0].edit, s1a[0].paraphrase_js, s1a[0].null_js), (NullEdit::Contrast90, Some(p), 0.4));
        assert!(s1a[0].flagged && s1a[0].paraphrase_to_null == Some(p / 0.4));
        assert!(!s1a[1].flagged && s1a[1].paraphrase_to_null == Some(p / 0.01));
        assert_eq!((0..rs.len()).map(|i| v.flag(i)).collect::<Vec<_>>(), vec![Some(true), Some(true), None, None, None, None, None, None]);
        // yes keeps the flagged study, no the studies with a ratio that is not flagged, any all.
        let pick = |want| (0..rs.len()).filter(|&i| v.matches(i, want)).collect::<Vec<_>>();
        assert_eq!(pick(Some(true)), vec![0, 1]);
        assert_eq!(pick(None).len(), rs.len());
        assert!(pick(Some(false)).is_empty());
        // With a smaller contrast90 distance the same study is not flagged: a "no".
        let mut calm = rs.clone();
        for r in &mut calm[..2] {
            r.grounding.as_mut().unwrap().maps[0].figures.null_edits[0].js_distance = 0.01;
        }
        let v = NullEditFlags::of(&calm, |i| maps.get(&i)).unwrap();
        assert_eq!((v.flag(0), v.flag(1)), (Some(false), Some(false)));
        assert!(v.matches(0, Some(false)) && !v.matches(0, Some(true)));
    }

    #[test]
    fn a_missing_map_is_an_error_not_a_smaller_comparison() {
        let rs = vec![
            mapped(rec("s1", 0, 1, "a", "image", Some("yes")), &[("jpeg90", 0.1)]),
            mapped(rec("s1", 1, 1, "a", "image", Some("yes")), &[("jpeg90", 0.1)]),
        ];
        let only_base = AttentionMap::new(1, 2, vec![0.6, 0.4]).unwrap();
        let err = NullEditFlags::of(&rs, |i| (i == 0).then_some(&only_base)).unwrap_err();
        assert!(err.contains("record 1") && err.contains("s1#1"), "{err}");
        // A run without null edits needs no map and flags nothing.
        let plain = vec![rec("s1", 0, 1, "a", "image", Some("yes"))];
        assert!(null_edit_maps_needed(&plain).is_empty());
        let v = NullEditFlags::of(&plain, |_| None).unwrap();
        assert!(v.studies.is_empty() && v.flag(0).is_none() && !v.matches(0, Some(false)) && v.matches(0, None));
        assert_eq!(NullEditFlags::default().flag(3), None);
    }
}
