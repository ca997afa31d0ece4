//! Records as CSV: the one flattening of a [`CaseRecord`] into spreadsheet cells and the one CSV
//! writer. The backend writes a run's `records.csv` with it and the dashboard's "Download CSV"
//! writes the explorer's rows with it, so a record reads the same in both files and they join
//! on `sample_id`, `model` and `pass`.

use crate::record::{CaseRecord, Pass};

/// The columns of [`record_row`], in order (the whole of a run's `records.csv`).
pub const COLUMNS: [&str; 33] = [
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
    "preprocess_ms",
    "image_encode_ms",
    "prefill_ms",
    "decode_ms",
    "capture_ms",
    "total_ms",
    "error_stage",
    "error",
];

/// One record's cells under [`COLUMNS`]: the map columns empty where it has no map, the answer
/// columns empty where it has none (an error record). Values are spelled as in `records.jsonl`.
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
        l.preprocess_ms.to_string(),
        l.image_encode_ms.to_string(),
        l.prefill_ms.to_string(),
        l.decode_ms.to_string(),
        l.capture_ms.to_string(),
        l.total_ms.to_string(),
        r.error
            .as_ref()
            .map_or_else(String::new, |e| e.stage.as_str().to_owned()),
        r.error
            .as_ref()
            .map_or_else(String::new, |e| e.message.clone()),
    ]
}

/// A pass as `records.jsonl` spells it.
pub fn pass_name(p: Pass) -> &'static str {
    match p {
        Pass::Image => "image",
        Pass::BlankImage => "blank_image",
    }
}

/// Appends one CSV line to `out`, `\n`-terminated (RFC 4180 quoting): a field holding a comma,
/// a double quote, CR or LF is quoted and its quotes doubled; others are written as they are.
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
    if f.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&f.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(f);
    }
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
        /// Whatever the text, an independent reader (the `csv` crate) reads back the same cells.
        #[test]
        fn any_rows_read_back_unchanged(
            rows in proptest::collection::vec(
                proptest::collection::vec("[a-z ,\"\r\n#'=-]{0,8}", 1..5), 1..6)
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
            prop_assert_eq!(back, rows);
        }
    }
}
