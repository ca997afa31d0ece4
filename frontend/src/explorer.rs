//! View model of the records explorer (`/runs/:id/records`): which records match, in which
//! order, on which page, and the URL query that holds it all. Pure Rust: the browser test uses
//! the same code to recompute what the page must show.
//!
//! The filter is `radlens_shared::filter::RecordFilter` (the server's own, "map beats controls"
//! included), plus the views no single record decides: "flipped vs base", "models disagree" and
//! the null-edit verdict of its study (`radlens_shared::views`, which the server's records and
//! `records.csv` endpoints use too).

use std::collections::BTreeSet;

use radlens_shared::filter::{RecordFilter, RunFacts};
use radlens_shared::record::CaseRecord;
use radlens_shared::records_csv;
pub use radlens_shared::views::{
    Derived, NULL_EDIT_KEY, NullEditFlags, flipped_vs_base, models_disagree, null_edit_maps_needed, sort_records,
};

use crate::api::ApiRecord;
use crate::url_state::{encode_component, parse_query};

/// Rows per page.
pub const PAGE_SIZE: usize = 50;

/// The record order is the shared one (`radlens_shared::views`, which the server's `sort=` uses).
pub use radlens_shared::views::SortKey;

/// The columns the explorer sorts by (its headers); a `sort=` naming another key is ignored.
pub const SORT_COLUMNS: [SortKey; 7] =
    [SortKey::Index, SortKey::SampleId, SortKey::Model, SortKey::Strategy, SortKey::Correct, SortKey::Margin, SortKey::Focus];

/// The explorer column a `sort=` key names.
pub fn sort_column(key: &str) -> Option<SortKey> {
    SortKey::from_key(key).filter(|k| SORT_COLUMNS.contains(k))
}

/// Everything the explorer's URL holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplorerState {
    pub filter: RecordFilter,
    /// Only records whose answer differs (polarity-aware) from their study's base question.
    pub flipped: bool,
    /// Only samples on which the models gave different answers.
    pub disagree: bool,
    /// Grounding G4 (`null_edit_moves=`): only records of studies whose maps (per model) move
    /// more under a null edit than under rewording (`true`), or only those whose maps do not.
    pub null_edit_moves: Option<bool>,
    pub sort: SortKey,
    pub desc: bool,
    /// 0-based page.
    pub page: usize,
    /// Why the URL's filter could not be read, if it could not.
    pub error: Option<String>,
}

impl Default for ExplorerState {
    fn default() -> Self {
        Self {
            filter: RecordFilter::default(),
            flipped: false,
            disagree: false,
            null_edit_moves: None,
            sort: SortKey::Index,
            desc: false,
            page: 0,
            error: None,
        }
    }
}

impl ExplorerState {
    /// Reads a query string (`?` optional). A malformed filter value leaves the filter empty and
    /// sets [`error`](Self::error).
    pub fn from_query(query: &str) -> Self {
        let pairs = parse_query(query);
        let mut s = Self::default();
        match RecordFilter::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            Ok(f) => s.filter = f,
            Err(e) => s.error = Some(e),
        }
        for (k, v) in &pairs {
            match k.as_str() {
                "flipped" => s.flipped = v == "true",
                "disagree" => s.disagree = v == "true",
                k if k == NULL_EDIT_KEY => match v.parse::<bool>() {
                    Ok(b) => s.null_edit_moves = Some(b),
                    Err(_) => s.error = Some(format!("{NULL_EDIT_KEY}: {v:?} is not true or false")),
                },
                "sort" => {
                    let (desc, key) = match v.strip_prefix('-') {
                        Some(k) => (true, k),
                        None => (false, v.as_str()),
                    };
                    if let Some(k) = sort_column(key) {
                        s.sort = k;
                        s.desc = desc;
                    }
                }
                "page" => s.page = v.parse::<usize>().map(|p| p.saturating_sub(1)).unwrap_or(0),
                _ => {}
            }
        }
        s
    }

    /// The query string (no `?`) of this state; defaults are left out.
    pub fn to_query(&self) -> String {
        let mut pairs = self.filter.to_pairs();
        if self.flipped {
            pairs.push(("flipped".into(), "true".into()));
        }
        if self.disagree {
            pairs.push(("disagree".into(), "true".into()));
        }
        if let Some(b) = self.null_edit_moves {
            pairs.push((NULL_EDIT_KEY.into(), b.to_string()));
        }
        if self.sort != SortKey::Index || self.desc {
            pairs.push(("sort".into(), format!("{}{}", if self.desc { "-" } else { "" }, self.sort.key())));
        }
        if self.page > 0 {
            pairs.push(("page".into(), (self.page + 1).to_string()));
        }
        pairs.iter().map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v))).collect::<Vec<_>>().join("&")
    }

    /// Clicking a column header: the same column flips the direction, another sorts ascending.
    pub fn toggle_sort(&mut self, key: SortKey) {
        if self.sort == key {
            self.desc = !self.desc;
        } else {
            self.sort = key;
            self.desc = false;
        }
        self.page = 0;
    }
}

/// Positions (into `records`) of the matching records, in the state's order. `facts` is the
/// run's [`RunFacts`] (blank answers, near-tie threshold); `nulls` its null-edit view
/// ([`NullEditFlags::of`]; empty while it is not needed).
pub fn select(records: &[ApiRecord], derived: &Derived, facts: &RunFacts, nulls: &NullEditFlags, s: &ExplorerState) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..records.len())
        .filter(|&i| {
            s.filter.matches(&records[i].record, facts)
                && (!s.flipped || derived.flipped(i))
                && (!s.disagree || derived.disagree(i))
                && nulls.matches(i, s.null_edit_moves)
        })
        .collect();
    sort_records(records, &mut idx, s.sort, s.desc, |i| records[i].index);
    idx
}

/// The CSV of the rows `selected` (positions into `records`, in the order shown): every matching
/// row, not only the current page, written by the shared view writer (so it is what the server's
/// `records.csv` endpoint sends for the same view).
pub fn to_csv(records: &[ApiRecord], derived: &Derived, selected: &[usize]) -> String {
    records_csv::view_csv(records, |i| records[i].index, derived, selected)
}

impl ExplorerState {
    /// Whether the state leaves records out (sorting and paging do not).
    pub fn is_filtered(&self) -> bool {
        self.filter != RecordFilter::default() || self.flipped || self.disagree || self.null_edit_moves.is_some()
    }
}

/// The download's file name: the run id (letters, digits, `-` and `_` kept, anything else `_`)
/// and whether the rows are filtered, e.g. `demo-records-filtered.csv`.
pub fn csv_filename(run: &str, s: &ExplorerState) -> String {
    let run: String = run.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("{run}-records{}.csv", if s.is_filtered() { "-filtered" } else { "" })
}

/// The download button's label, e.g. `Download CSV (123 rows)`.
pub fn csv_button_label(n: usize) -> String {
    format!("Download CSV ({n} row{})", if n == 1 { "" } else { "s" })
}

/// Number of pages for `n` rows (at least 1).
pub fn page_count(n: usize) -> usize {
    n.div_ceil(PAGE_SIZE).max(1)
}

/// The passes present in the run, in `Pass::ALL`'s order (the real image first, then the
/// conditions in the spec's order), for the pass filter's drop-down.
pub fn passes_present(records: &[ApiRecord]) -> Vec<radlens_shared::record::Pass> {
    radlens_shared::record::Pass::ALL.into_iter().filter(|p| records.iter().any(|r| r.record.pass == *p)).collect()
}

/// The distinct values of a field, sorted, for the filter's drop-downs.
pub fn distinct(records: &[ApiRecord], f: impl Fn(&CaseRecord) -> Option<String>) -> Vec<String> {
    records.iter().filter_map(|r| f(&r.record)).collect::<BTreeSet<_>>().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_the_query() {
        let mut s = ExplorerState::default();
        s.filter.correct = Some(false);
        s.filter.text = Some("pleural effusion & more".into());
        s.flipped = true;
        s.null_edit_moves = Some(false);
        s.filter.beats_controls = Some(true);
        s.sort = SortKey::Margin;
        s.desc = true;
        s.page = 2;
        let q = s.to_query();
        assert!(q.contains("correct=false") && q.contains("sort=-margin") && q.contains("page=3"), "{q}");
        assert!(q.contains("null_edit_moves=false") && q.contains("beats_controls=true"), "{q}");
        assert_eq!(ExplorerState::from_query(&format!("?{q}")), s);
        assert_eq!(ExplorerState::default().to_query(), "");
    }

    #[test]
    fn a_bad_filter_value_is_reported() {
        let s = ExplorerState::from_query("correct=maybe&flipped=true");
        assert!(s.error.unwrap().contains("correct"));
        assert!(s.flipped);
        let s = ExplorerState::from_query("null_edit_moves=maybe");
        assert!(s.error.unwrap().contains("null_edit_moves"));
    }

    #[test]
    fn sort_toggles() {
        let mut s = ExplorerState { page: 3, ..Default::default() };
        s.toggle_sort(SortKey::Model);
        assert_eq!((s.sort, s.desc, s.page), (SortKey::Model, false, 0));
        s.toggle_sort(SortKey::Model);
        assert!(s.desc);
    }

    /// A record with just what the derived views read.
    fn rec(index: usize, study: &str, variant: u32, polarity: i8, model: &str, parsed: Option<&str>) -> ApiRecord {
        let v = serde_json::json!({
            "schema_version": 1, "sample_id": format!("{study}#{variant}"), "study_id": study,
            "csv_line": index + 2, "variant_index": variant, "strategy": if variant == 0 { "baseline" } else { "negation" },
            "polarity": polarity, "finding": null, "model": model, "pass": "image", "image": "x.png",
            "question": "q?", "ground_truth": "yes", "parsed_answer": parsed, "correct": parsed.map(|p| p == "yes"),
            "latency": { "preprocess_ms": 0.0, "image_encode_ms": 0.0, "prefill_ms": 0.0, "decode_ms": 0.0, "capture_ms": 0.0, "total_ms": 0.0 },
        });
        ApiRecord { index, image_id: String::new(), prior_image_id: None, record: serde_json::from_value(v).expect("a record") }
    }

    #[test]
    fn flips_are_polarity_aware_and_disagreement_is_per_sample() {
        let rs = vec![
            rec(0, "s1", 0, 1, "a", Some("yes")),
            rec(1, "s1", 1, -1, "a", Some("no")),     // negated: "no" means yes -> stable
            rec(2, "s1", 2, 1, "a", Some("no")),      // flipped
            rec(3, "s1", 3, 1, "a", Some("unknown")), // unparsed: never a flip
            rec(4, "s1", 0, 1, "b", Some("no")),      // b disagrees with a on s1#0
            rec(5, "s1", 1, -1, "b", Some("no")),     // same answer as a on s1#1
        ];
        assert_eq!(flipped_vs_base(&rs), vec![false, false, true, false, false, true]);
        assert_eq!(models_disagree(&rs), vec![true, false, false, false, true, false]);
        let d = Derived::of(&rs);
        let s = ExplorerState { flipped: true, ..Default::default() };
        let facts = RunFacts::of(&rs, 1.0);
        assert_eq!(select(&rs, &d, &facts, &NullEditFlags::default(), &s), vec![2, 5]);
        let s = ExplorerState { disagree: true, sort: SortKey::Index, desc: true, ..Default::default() };
        assert_eq!(select(&rs, &d, &facts, &NullEditFlags::default(), &s), vec![4, 0]);
        assert_eq!(distinct(&rs, |r| Some(r.model.clone())), vec!["a", "b"]);
    }

    #[test]
    fn the_csv_holds_every_selected_row_in_order_with_join_keys_and_derived_views() {
        let mut rs = vec![
            rec(0, "s1", 0, 1, "a", Some("yes")),
            rec(1, "s1", 1, -1, "a", Some("no")),
            rec(2, "s1", 2, 1, "a", Some("no")),
            rec(3, "s1", 0, 1, "b", Some("no")),
        ];
        rs[2].record.question = "Is there an effusion, \"large\"\nor small?".into();
        let d = Derived::of(&rs);
        let csv = to_csv(&rs, &d, &[2, 0]);
        let lines: Vec<&str> = csv.split_terminator('\n').collect();
        let header = records_csv::view_header();
        assert_eq!(lines[0], header.join(","));
        assert_eq!(header.len(), 1 + records_csv::COLUMNS.len() + 2);
        // Row 2 first (the order given), its question quoted across two physical lines.
        assert!(lines[1].starts_with("2,s1#2,s1,,2,"), "{}", lines[1]);
        assert!(lines[1].contains(",\"Is there an effusion, \"\"large\"\""), "{}", lines[1]);
        // (The six image columns are empty for a single-image record.)
        assert_eq!(lines[2], "or small?\",yes,,no,false,,,,,,,,,,,,,,,,,0,0,0,0,0,0,,,true,false");
        assert!(lines[3].starts_with("0,s1#0,s1,,0,baseline,1,,a,image,x.png,q?,yes,,yes,true,"), "{}", lines[3]);
        assert!(lines[3].ends_with(",false,true"), "{}", lines[3]);
        assert_eq!(lines.len(), 4);
        assert_eq!(to_csv(&rs, &d, &[]), format!("{}\n", header.join(",")));
    }

    #[test]
    fn the_file_name_says_which_run_and_whether_it_is_filtered() {
        let mut s = ExplorerState { sort: SortKey::Focus, page: 4, ..Default::default() };
        assert_eq!(csv_filename("demo", &s), "demo-records.csv");
        s.filter.correct = Some(false);
        assert_eq!(csv_filename("demo", &s), "demo-records-filtered.csv");
        let flipped = ExplorerState { flipped: true, ..Default::default() };
        assert_eq!(csv_filename("run 1/x", &flipped), "run_1_x-records-filtered.csv");
        let moved = ExplorerState { null_edit_moves: Some(true), ..Default::default() };
        assert_eq!(csv_filename("demo", &moved), "demo-records-filtered.csv");
        assert_eq!(csv_button_label(1), "Download CSV (1 row)");
        assert_eq!(csv_button_label(123), "Download CSV (123 rows)");
    }

    #[test]
    fn the_pass_filter_offers_the_passes_present_in_spec_order() {
        use radlens_shared::record::Pass;
        let mut rs = vec![rec(0, "s1", 0, 1, "a", Some("yes")), rec(1, "s1", 0, 1, "a", Some("no")), rec(2, "s1", 0, 1, "a", Some("no"))];
        rs[0].record.pass = Pass::Contrast90;
        rs[2].record.pass = Pass::BlankImage;
        assert_eq!(passes_present(&rs), vec![Pass::Image, Pass::BlankImage, Pass::Contrast90]);
        let s = ExplorerState::from_query("pass=contrast90&near_tie=true&blank_same=false");
        assert_eq!((s.filter.pass, s.filter.near_tie, s.filter.blank_same), (Some(Pass::Contrast90), Some(true), Some(false)));
        assert!(s.is_filtered());
        assert_eq!(ExplorerState::from_query(&s.to_query()), s);
    }

    #[test]
    fn pages() {
        assert_eq!(page_count(0), 1);
        assert_eq!(page_count(50), 1);
        assert_eq!(page_count(51), 2);
    }
}
