//! Records as CSV: the one flattening of a [`CaseRecord`] into spreadsheet cells and the one CSV
//! writer. The backend writes a run's `records.csv` with it and the dashboard's "Download CSV"
//! writes the explorer's rows with it, so a record reads the same in both files and they join
//! on `sample_id`, `model` and `pass`. The server's `GET /api/runs/{id}/records.csv` writes a
//! view with [`view_csv`] too, so it is byte for byte the dashboard's download of that view.
//!
//! Every cell goes through [`defuse`] (CSV injection): a file opened in a spreadsheet never runs
//! a question, answer or error message as a formula.

use std::borrow::Cow;

use crate::record::{CaseRecord, ImageMapRecord, Pass};
use crate::views::Derived;

/// The columns of [`record_row`], in order (the whole of a run's `records.csv`).
pub const COLUMNS: [&str; 39] = [
    "sample_id",
    "study_id",
    "subject_id",
    "variant_index",
    "strategy",
    "polarity",
    "finding",
    "model",
    "pass",
    "image",
    "question",
    "ground_truth",
    "answer_text",
    "parsed_answer",
    "correct",
    "yes_no_margin",
    "map_method",
    "focus",
    "gini",
    "top10_mass",
    "entropy_nats",
    "image_share",
    "relevance_mass",
    "rank_accuracy",
    "pointing_game",
    "partner_study",
    "prior_image",
    "lateral_image",
    "current_mass_share",
    "prior_mass_share",
    "lateral_mass_share",
    "preprocess_ms",
    "image_encode_ms",
    "prefill_ms",
    "decode_ms",
    "capture_ms",
    "total_ms",
    "error_stage",
    "error",
];

/// A multi-image record's map of the image in `role` (issue 21).
fn image<'a>(r: &'a CaseRecord, role: &str) -> Option<&'a ImageMapRecord> {
    r.images.iter().find(|i| i.role == role)
}

/// One record's cells under [`COLUMNS`]: the map columns empty where it has no map, the answer
/// columns empty where it has none (an error record), the image columns empty for a single-image
/// record. Values are spelled as in `records.jsonl`.
pub fn record_row(r: &CaseRecord) -> Vec<String> {
    let opt = |x: Option<f64>| x.map_or_else(String::new, |x| x.to_string());
    let map = r.map.as_ref();
    let roi = map.and_then(|m| m.roi);
    let l = &r.latency;
    vec![
        r.sample_id.clone(),
        r.study_id.clone(),
        r.subject_id.clone().unwrap_or_default(),
        r.variant_index.to_string(),
        r.strategy.clone(),
        r.polarity.to_string(),
        r.finding.clone().unwrap_or_default(),
        r.model.clone(),
        pass_name(r.pass).to_owned(),
        r.image.clone(),
        r.question.clone(),
        r.ground_truth.map_or_else(String::new, |a| a.to_string()),
        r.answer_text.clone().unwrap_or_default(),
        r.parsed_answer.map_or_else(String::new, |a| a.to_string()),
        r.correct.map_or_else(String::new, |c| c.to_string()),
        opt(r.yes_no_margin),
        map.map_or_else(String::new, |m| m.provenance.method.to_string()),
        opt(map.map(|m| m.metrics.focus)),
        opt(map.map(|m| m.metrics.gini)),
        opt(map.map(|m| m.metrics.top10_mass)),
        opt(map.map(|m| m.metrics.entropy_nats)),
        opt(map.map(|m| m.image_share)),
        opt(roi.map(|x| x.relevance_mass)),
        opt(roi.map(|x| x.rank_accuracy)),
        opt(roi.map(|x| x.pointing_game)),
        r.condition.as_ref().and_then(|c| c.partner_study.clone()).unwrap_or_default(),
        image(r, "prior").map_or_else(String::new, |i| i.image.clone()),
        image(r, "lateral").map_or_else(String::new, |i| i.image.clone()),
        opt(image(r, "current").map(|i| i.image_mass_share)),
        opt(image(r, "prior").map(|i| i.image_mass_share)),
        opt(image(r, "lateral").map(|i| i.image_mass_share)),
        l.preprocess_ms.to_string(),
        l.image_encode_ms.to_string(),
        l.prefill_ms.to_string(),
        l.decode_ms.to_string(),
        l.capture_ms.to_string(),
        l.total_ms.to_string(),
        r.error.as_ref().map_or_else(String::new, |e| e.stage.as_str().to_owned()),
        r.error.as_ref().map_or_else(String::new, |e| e.message.clone()),
    ]
}

/// The columns of a view's CSV (the dashboard's "Download CSV" and the server's
/// `records.csv` endpoint): the record's position in the run (the explorer's `#`, its line in
/// `records.jsonl`), every [`COLUMNS`] (so it joins `records.csv`), then the two
/// [`views`](crate::views).
pub fn view_header() -> Vec<&'static str> {
    let mut h = vec!["index"];
    h.extend(COLUMNS);
    h.extend(["flipped_vs_base", "models_disagree"]);
    h
}

/// The CSV of a view under [`view_header`]: the records at positions `selected` (into
/// `records`, in the order shown), each written with its run index `index(position)` and its
/// views from `derived` (by position, computed over the whole run).
pub fn view_csv<R: AsRef<CaseRecord>>(records: &[R], index: impl Fn(usize) -> usize, derived: &Derived, selected: &[usize]) -> String {
    to_csv(
        view_header(),
        selected.iter().map(|&i| {
            let mut row = vec![index(i).to_string()];
            row.extend(record_row(records[i].as_ref()));
            row.push(derived.flipped(i).to_string());
            row.push(derived.disagree(i).to_string());
            row
        }),
    )
}

/// A pass as `records.jsonl` spells it.
pub fn pass_name(p: Pass) -> &'static str {
    p.name()
}

/// Appends one CSV line to `out`, `\n`-terminated: each field [`defuse`]d, then quoted as RFC
/// 4180 says (a field holding a comma, a double quote, CR or LF is quoted and its quotes
/// doubled; others are written as they are).
pub fn push_row<I, S>(out: &mut String, fields: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let start = out.len();
    let mut n = 0;
    for f in fields {
        if n > 0 {
            out.push(',');
        }
        push_field(out, f.as_ref());
        n += 1;
    }
    // A line with one empty field would read back as a blank line (no record at all).
    if n == 1 && out.len() == start {
        out.push_str("\"\"");
    }
    out.push('\n');
}

fn push_field(out: &mut String, f: &str) {
    let f = defuse(f);
    if f.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&f.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&f);
    }
}

/// A cell as the CSV holds it. Spreadsheets run a cell that starts with `=`, `+`, `-`, `@`, tab
/// or CR as a formula, so such text gets a leading `'` (which they read as "text follows"). A
/// number (`-1`, `-0.25`, `+3`, `1e-3`) is data, not a formula, and stays as it is, so polarity
/// and margins remain numbers; `-inf` and `NaN` are not numbers to a spreadsheet and are defused.
pub fn defuse(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_decimal_number(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// `[+-]? (digits [. digits*] | . digits) [(e|E) [+-]? digits]`: a number as spreadsheets read
/// one (unlike `str::parse::<f64>`, no `inf` or `nan`).
fn is_decimal_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && matches!(b[i], b'+' | b'-') {
        i += 1;
    }
    let mut mantissa = digits(&mut i);
    if i < b.len() && b[i] == b'.' {
        i += 1;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return false;
    }
    if i < b.len() && matches!(b[i], b'e' | b'E') {
        i += 1;
        if i < b.len() && matches!(b[i], b'+' | b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// A whole CSV: the header line, then one line per row.
pub fn to_csv<H, R, I, S>(header: H, rows: R) -> String
where
    H: IntoIterator,
    H::Item: AsRef<str>,
    R: IntoIterator<Item = I>,
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::new();
    push_row(&mut out, header);
    for row in rows {
        push_row(&mut out, row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(fields: &[&str]) -> String {
        let mut s = String::new();
        push_row(&mut s, fields);
        s
    }

    #[test]
    fn plain_fields_are_written_as_they_are() {
        assert_eq!(line(&["s1#0", "model-a", "0.25", "", "yes"]), "s1#0,model-a,0.25,,yes\n");
    }

    #[test]
    fn commas_quotes_and_newlines_are_quoted() {
        assert_eq!(line(&["a, b"]), "\"a, b\"\n");
        assert_eq!(line(&["say \"yes\""]), "\"say \"\"yes\"\"\"\n");
        assert_eq!(line(&["two\nlines", "cr\rhere", "crlf\r\n"]), "\"two\nlines\",\"cr\rhere\",\"crlf\r\n\"\n");
        // Leading spaces and a lone quote inside text are data too.
        assert_eq!(line(&[" x", "\""]), " x,\"\"\"\"\n");
    }

    #[test]
    fn text_a_spreadsheet_would_run_as_a_formula_gets_a_leading_quote() {
        for (cell, written) in [
            ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"),
            ("+cmd", "'+cmd"),
            ("-cmd|' /C calc'!A0", "'-cmd|' /C calc'!A0"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("-", "'-"),
            ("-inf", "'-inf"),
            ("-NaN", "'-NaN"),
            ("-1-1", "'-1-1"),
            ("1e-3x", "1e-3x"),
            ("2-1", "2-1"),
            ("Is there an effusion? =no", "Is there an effusion? =no"),
        ] {
            assert_eq!(defuse(cell), written, "{cell:?}");
        }
        // Quoting still applies to the defused text.
        assert_eq!(line(&["=a,b", "\rx"]), "\"'=a,b\",\"'\rx\"\n");
    }

    #[test]
    fn numbers_stay_numbers_whatever_their_sign() {
        for n in ["-1", "-0.25", "+3", "1e-3", "-1.5E+10", "-.5", "-5.", "0", "0.001"] {
            assert_eq!(defuse(n), n, "{n:?}");
        }
        assert_eq!(line(&["-1", "-0.25", "x"]), "-1,-0.25,x\n");
        for not_numbers in ["-e5", "-1e", "+.", "-1.2.3", "- 1"] {
            assert_eq!(defuse(not_numbers), format!("'{not_numbers}"), "{not_numbers:?}");
        }
    }

    #[test]
    fn a_view_is_the_run_index_the_record_columns_and_the_views() {
        let r: CaseRecord = serde_json::from_value(serde_json::json!({
            "schema_version": 1, "sample_id": "s1#1", "study_id": "s1", "csv_line": 3, "variant_index": 1,
            "strategy": "negation", "polarity": -1, "finding": null, "model": "m", "pass": "image", "image": "x.png",
            "question": "=1+1", "ground_truth": "no", "parsed_answer": "no", "correct": true, "yes_no_margin": -0.5,
            "latency": { "preprocess_ms": 0.0, "image_encode_ms": 0.0, "prefill_ms": 0.0, "decode_ms": 0.0, "capture_ms": 0.0, "total_ms": 2.5 },
        }))
        .unwrap();
        let records = vec![r.clone(), r];
        let derived = Derived { flipped: vec![false, true], disagree: vec![true, false] };
        let csv = view_csv(&records, |i| 10 + i, &derived, &[1]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], view_header().join(","));
        assert_eq!(view_header().len(), 1 + COLUMNS.len() + 2);
        assert_eq!(lines[1], "11,s1#1,s1,,1,negation,-1,,m,image,x.png,'=1+1,no,,no,true,-0.5,,,,,,,,,,,,,,,,0,0,0,0,0,2.5,,,true,false");
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn a_lone_empty_field_is_not_a_blank_line() {
        assert_eq!(line(&[""]), "\"\"\n");
        assert_eq!(line(&["", ""]), ",\n");
        assert_eq!(line(&[]), "\n");
    }

    #[test]
    fn a_whole_csv_is_the_header_then_the_rows() {
        let csv = to_csv(["q", "n"], [vec!["Is there, perhaps, an effusion?", "1"], vec!["ok", "2"]]);
        assert_eq!(csv, "q,n\n\"Is there, perhaps, an effusion?\",1\nok,2\n");
    }

    proptest! {
        /// Whatever the text, an independent reader (the `csv` crate) reads back the same cells,
        /// formulas defused.
        #[test]
        fn any_rows_read_back_unchanged(
            rows in proptest::collection::vec(
                proptest::collection::vec("[a-z0-9 ,\"\r\n\t#'=+@.-]{0,8}", 1..5), 1..6)
        ) {
            let width = rows[0].len();
            let rows: Vec<Vec<String>> = rows.into_iter().map(|mut r| { r.resize(width, String::new()); r }).collect();
            let mut text = String::new();
            for r in &rows {
                push_row(&mut text, r);
            }
            let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_bytes());
            let back: Vec<Vec<String>> = reader
                .records()
                .map(|r| r.expect("a CSV record").iter().map(str::to_owned).collect())
                .collect();
            let want: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| defuse(c).into_owned()).collect()).collect();
            prop_assert_eq!(back, want);
        }
    }
}
