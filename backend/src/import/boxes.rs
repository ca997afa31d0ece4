//! radlens' own box CSV, for any set the named formats do not cover:
//!
//! ```text
//! image_id,finding,x,y,w,h[,image_width,image_height][,image_path][,reader][,answer]
//! ```
//!
//! `x,y,w,h` is the top-left corner and size; `image_width,image_height` the pixel space they are
//! in (empty: the image's own pixels); `image_path` where the image is under `--images` (default:
//! `image_id`, then `image_id.png/.jpg`); `reader` who drew it (kept in `source_boxes`); `answer`
//! `yes` (default) or `no`: a `no` row has no box and asks about a finding the image does not
//! have (a negative). The boxes of one (image, finding) are merged into their enclosing box.
//!
//! With `--onto STUDY.csv` nothing is generated: the boxes are attached as `roi_*` to the rows of
//! an existing study CSV whose image (file name without extension) and `finding` (any case)
//! match; every other column and row is kept as it was.

use std::collections::HashMap;
use std::path::Path;

use super::box_questions::{self, BoxSet, MergeRule, NamedNegative, SourceBox, column, csv_error, line_of, open_csv, parse_number, stem};
use super::images::ImageIndex;
use super::writer::{CsvOut, number};
use super::{ImportError, ImportOptions, Summary};
use radlens_shared::answer::Answer;

/// The rows of a box CSV: the boxes, and the explicit negatives (`answer` no).
pub fn read(file: &Path) -> Result<(Vec<SourceBox>, Vec<NamedNegative>), ImportError> {
    let (mut reader, headers) = open_csv(file)?;
    let col = |name: &str| column(file, &headers, name);
    let opt = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let (id_col, finding_col) = (col("image_id")?, col("finding")?);
    let mut xywh_cols = [0usize; 4];
    for (k, name) in ["x", "y", "w", "h"].iter().enumerate() {
        xywh_cols[k] = col(name)?;
    }
    let (iw_col, ih_col, path_col, reader_col, answer_col) =
        (opt("image_width"), opt("image_height"), opt("image_path"), opt("reader"), opt("answer"));
    let mut boxes = Vec::new();
    let mut negatives = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(file, &e))?;
        let line = line_of(&record);
        let get = |i: Option<usize>| i.and_then(|i| record.get(i)).map(str::trim).filter(|v| !v.is_empty());
        let bad = |message: String| ImportError::Line { path: file.to_path_buf(), line, message };
        let id = get(Some(id_col)).ok_or_else(|| bad("image_id is empty".into()))?.to_string();
        let label = get(Some(finding_col)).ok_or_else(|| bad("finding is empty".into()))?.to_string();
        let mut candidates: Vec<String> = get(path_col).map(str::to_string).into_iter().collect();
        candidates.extend(box_questions::candidates_for(&id));
        let answer = match get(answer_col) {
            None => Answer::Yes,
            Some(a) => super::yes_no_answer(a).ok_or_else(|| bad(format!("answer {a:?} is not yes or no")))?,
        };
        let cells: Vec<Option<&str>> = xywh_cols.iter().map(|&c| get(Some(c))).collect();
        if answer == Answer::No {
            if cells.iter().any(Option::is_some) {
                return Err(bad("a row with answer no asks about an absent finding: leave x, y, w, h empty".into()));
            }
            negatives.push((id, candidates, label));
            continue;
        }
        let mut v = [0.0; 4];
        for (k, name) in ["x", "y", "w", "h"].iter().enumerate() {
            v[k] = parse_number(file, line, name, cells[k].ok_or_else(|| bad(format!("{name} is empty")))?)?;
        }
        let space = match (get(iw_col), get(ih_col)) {
            (None, None) => None,
            (Some(w), Some(h)) => Some((parse_number(file, line, "image_width", w)?, parse_number(file, line, "image_height", h)?)),
            _ => return Err(bad("image_width and image_height must be both set or both empty".into())),
        };
        boxes.push(SourceBox {
            line,
            image_id: id,
            image_candidates: candidates,
            label,
            reader: get(reader_col).map(str::to_string),
            xywh: v,
            space,
            phrase: None,
        });
    }
    Ok((boxes, negatives))
}

pub fn import(opts: &ImportOptions, out: &Path) -> Result<Summary, ImportError> {
    let (boxes, negatives) = read(&opts.src)?;
    let set = BoxSet {
        file: opts.src.clone(),
        boxes,
        merge: MergeRule::Enclosing,
        readers: Default::default(),
        negatives: Vec::new(),
        negatives_per_positive: 0,
    };
    box_questions::write_questions_with(&set, &negatives, opts, out)
}

/// `--onto`: the study CSV `onto` with the merged boxes as `roi_*` on the rows whose image and
/// finding match. Rows whose truth is "absent" (answer with polarity applied is no) get no box.
pub fn attach(opts: &ImportOptions, onto: &Path, out: &Path) -> Result<Summary, ImportError> {
    let (boxes, _) = read(&opts.src)?;
    let set = BoxSet {
        file: opts.src.clone(),
        boxes,
        merge: MergeRule::Enclosing,
        readers: Default::default(),
        negatives: Vec::new(),
        negatives_per_positive: 0,
    };
    let mut images = ImageIndex::new(&opts.images)?;
    let mut summary = Summary::default();
    let merged = box_questions::merge(&set, &mut images, &mut summary)?;
    let mut by_key: HashMap<(String, String), (&box_questions::MergedBox, bool)> =
        merged.iter().map(|m| ((stem(&m.image_id).to_string(), box_questions::finding_key(&m.label)), (m, false))).collect();

    let (mut reader, headers) = open_csv(onto)?;
    let image_col = column(onto, &headers, "image_path")?;
    let finding_col = column(onto, &headers, "finding")?;
    let answer_col = headers.iter().position(|h| h.trim() == "answer");
    let polarity_col = headers.iter().position(|h| h.trim() == "polarity");
    let mut header: Vec<String> = headers.iter().map(str::to_string).collect();
    let mut cols = Vec::new();
    for name in ["roi_x", "roi_y", "roi_w", "roi_h", "source_boxes"] {
        cols.push(header.iter().position(|h| h.trim() == name).unwrap_or_else(|| {
            header.push(name.to_string());
            header.len() - 1
        }));
    }
    let mut writer = CsvOut::create(out, &header)?;
    let (mut given, mut absent, mut without) = (0usize, 0usize, 0usize);
    let mut studies = std::collections::HashSet::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(onto, &e))?;
        let mut cells: Vec<String> = record.iter().map(str::to_string).collect();
        cells.resize(header.len(), String::new());
        if let Some(id) = headers.iter().position(|h| h.trim() == "study_id").and_then(|c| record.get(c)) {
            studies.insert(id.to_string());
        }
        let key = (
            stem(record.get(image_col).unwrap_or("").trim()).to_string(),
            box_questions::finding_key(record.get(finding_col).unwrap_or("")),
        );
        match by_key.get_mut(&key) {
            Some((m, used)) => {
                let answer = answer_col.and_then(|c| record.get(c)).and_then(Answer::from_label);
                let polarity: i8 = if polarity_col.and_then(|c| record.get(c)).map(str::trim) == Some("-1") { -1 } else { 1 };
                if answer.map(|a| a.with_polarity(polarity)) == Some(Answer::No) {
                    absent += 1;
                } else {
                    *used = true;
                    let b = &m.roi;
                    for (c, v) in cols.iter().zip([number(b.x0), number(b.y0), number(b.width()), number(b.height()), m.all_boxes.clone()])
                    {
                        cells[*c] = v;
                    }
                    given += 1;
                }
            }
            None => without += 1,
        }
        writer.write_record(&cells)?;
        summary.rows += 1;
    }
    writer.finish()?;
    summary.studies = studies.len();
    summary.notes.push(format!("{given} row(s) given a box; {without} row(s) with no box for their image and finding, kept as they were"));
    if absent > 0 {
        summary.notes.push(format!("{absent} row(s) whose truth says the finding is absent got no box"));
    }
    let unused = by_key.values().filter(|(_, used)| !used).count();
    if unused > 0 {
        summary.notes.push(format!("{unused} boxed (image, finding) pair(s) matched no row"));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::test_support::{Scratch, fixture, opts, plan};

    fn scratch() -> Scratch {
        let s = Scratch::new("boxes");
        s.image("00001369_000.png", 512, 512);
        s.image("scans/case-7.png", 300, 200);
        s.image("00021397_000.png", 512, 512);
        s
    }

    #[test]
    fn own_boxes_make_positives_and_explicit_negatives() {
        let s = scratch();
        let summary = import(&opts(&fixture("boxes/boxes.csv"), &s.images()), &s.out()).unwrap();
        let plan = plan(&s.out());
        let got: Vec<_> = plan
            .rows
            .iter()
            .map(|r| (r.study_id.as_str(), r.image_path.as_str(), r.answer, r.roi.map(|b| (b.x0, b.y0, b.x1, b.y1))))
            .collect();
        assert_eq!(
            got,
            vec![
                ("00001369_000-cardiomegaly", "00001369_000.png", Some(Answer::Yes), Some((168.5, 138.0, 445.5, 331.5))),
                ("case-7-pneumothorax", "scans/case-7.png", Some(Answer::Yes), Some((10.0, 20.0, 130.0, 90.0))),
                ("00021397_000-cardiomegaly", "00021397_000.png", Some(Answer::No), None),
            ]
        );
        assert_eq!(plan.rows[1].metadata.get("source_boxes").map(String::as_str), Some("A:10,20,100,50;B:20,30,110,60"));
        assert_eq!(summary.studies, 3);
    }

    #[test]
    fn attach_sets_the_box_on_matching_rows_and_keeps_everything_else() {
        let s = scratch();
        let onto = s.write(
            "study.csv",
            "study_id,image_path,question,answer,polarity,finding,note\ns1,00001369_000.png,Is there cardiomegaly?,yes,1,Cardiomegaly,kept\ns1,00001369_000.png,Can cardiomegaly be ruled out?,no,-1,cardiomegaly,kept\ns2,00021397_000.png,Is there cardiomegaly?,no,1,cardiomegaly,x\n",
        );
        let summary = attach(&opts(&fixture("boxes/boxes.csv"), &s.images()), &onto, &s.out()).unwrap();
        let plan = plan(&s.out());
        let rois: Vec<_> = plan.rows.iter().map(|r| r.roi.map(|b| (b.x0, b.y0))).collect();
        assert_eq!(rois, vec![Some((168.5, 138.0)), Some((168.5, 138.0)), None]);
        assert!(plan.rows.iter().all(|r| r.metadata.contains_key("note")));
        assert_eq!(summary.rows, 3);
        assert!(summary.notes.iter().any(|n| n.starts_with("2 row(s) given a box; 1 row(s) with no box")), "{:?}", summary.notes);
        assert!(summary.notes.iter().any(|n| n.starts_with("1 boxed (image, finding) pair(s) matched no row")), "{:?}", summary.notes);
    }

    #[test]
    fn a_negative_with_a_box_and_a_missing_column_are_refused() {
        let s = scratch();
        let src = s.write("b.csv", "image_id,finding,x,y,w,h,answer\n00001369_000,Effusion,1,2,3,4,no\n");
        let err = import(&opts(&src, &s.images()), &s.out()).unwrap_err().to_string();
        assert!(err.contains("b.csv: line 2: a row with answer no"), "{err}");
        let src = s.write("c.csv", "image_id,finding,x,y,w\n00001369_000,Effusion,1,2,3\n");
        let err = import(&opts(&src, &s.images()), &s.out()).unwrap_err().to_string();
        assert!(err.contains("c.csv: missing column \"h\""), "{err}");
    }
}
