//! NIH ChestX-ray14 boxes (Wang et al., CVPR 2017; `BBox_List_2017.csv` from
//! https://nihcc.app.box.com/v/ChestXray-NIHCC): 984 boxes by radiologists on 880 images. The
//! header is `Image Index,Finding Label,Bbox [x,y,w,h],,,`: the box's name spans four columns
//! (`Bbox [x`, `y`, `w`, `h]`) and three empty columns trail. Boxes are top-left corner and size
//! in the 1024 x 1024 pixels of the released PNGs, and are scaled to the image found.
//!
//! Negatives need `--labels`: NIH's `Data_Entry_2017_v2020.csv` (`Image Index`, `Finding
//! Labels`) or a `file,finding` CSV like the bundled `cxr/labels.csv`. Each boxed finding is then
//! also asked, with truth "no", of as many "No Finding" images as it has boxes.

use std::path::Path;

use super::box_questions::{self, BoxSet, MergeRule, SourceBox, candidates_for, column, csv_error, line_of, open_csv, parse_number};
use super::{ImportError, ImportOptions, Summary};

/// NIH's box coordinates are in the 1024 x 1024 originals.
pub const NIH_PIXELS: f64 = 1024.0;

pub fn read_boxes(file: &Path) -> Result<Vec<SourceBox>, ImportError> {
    let (mut reader, headers) = open_csv(file)?;
    let image_col = column(file, &headers, "Image Index")?;
    let label_col = column(file, &headers, "Finding Label")?;
    let x_col =
        headers.iter().position(|h| h.trim().to_ascii_lowercase().starts_with("bbox")).ok_or_else(|| ImportError::MissingColumn {
            path: file.to_path_buf(),
            column: "Bbox [x,y,w,h]".into(),
            found: headers.iter().collect::<Vec<_>>().join(", "),
        })?;
    let mut boxes = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(file, &e))?;
        let line = line_of(&record);
        let cell = |i: usize, name: &str| {
            record.get(i).map(str::trim).filter(|v| !v.is_empty()).ok_or_else(|| ImportError::Line {
                path: file.to_path_buf(),
                line,
                message: format!("{name} is empty"),
            })
        };
        let image = cell(image_col, "Image Index")?.to_string();
        let label = cell(label_col, "Finding Label")?.to_string();
        let mut xywh = [0.0; 4];
        for (k, name) in ["x", "y", "w", "h"].iter().enumerate() {
            xywh[k] = parse_number(file, line, &format!("Bbox {name}"), cell(x_col + k, &format!("Bbox {name}"))?)?;
        }
        boxes.push(SourceBox {
            line,
            image_candidates: candidates_for(&image),
            image_id: image,
            label,
            reader: None,
            xywh,
            space: Some((NIH_PIXELS, NIH_PIXELS)),
            phrase: None,
        });
    }
    Ok(boxes)
}

/// The images a labels CSV calls "No Finding", in file order.
pub fn no_finding_images(file: &Path) -> Result<Vec<String>, ImportError> {
    let (mut reader, headers) = open_csv(file)?;
    let has = |name: &str| headers.iter().any(|h| h.trim().eq_ignore_ascii_case(name));
    let (image_col, label_col) = if has("Image Index") {
        (column(file, &headers, "Image Index")?, column(file, &headers, "Finding Labels")?)
    } else {
        (column(file, &headers, "file")?, column(file, &headers, "finding")?)
    };
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(file, &e))?;
        let label = record.get(label_col).unwrap_or("").trim();
        if label.eq_ignore_ascii_case("no finding")
            && let Some(image) = record.get(image_col).map(str::trim).filter(|s| !s.is_empty())
        {
            out.push(image.to_string());
        }
    }
    Ok(out)
}

pub fn import(opts: &ImportOptions, out: &Path) -> Result<Summary, ImportError> {
    let negatives = match &opts.labels {
        Some(labels) => no_finding_images(labels)?.into_iter().map(|id| (id.clone(), candidates_for(&id))).collect(),
        None => Vec::new(),
    };
    let set = BoxSet {
        file: opts.src.clone(),
        boxes: read_boxes(&opts.src)?,
        merge: MergeRule::Enclosing,
        readers: Default::default(),
        negatives,
        negatives_per_positive: 1,
    };
    let mut summary = box_questions::write_questions(&set, opts, out)?;
    if opts.labels.is_none() {
        summary.notes.push("no negatives: --labels Data_Entry_2017_v2020.csv (or a file,finding CSV) adds No Finding images".into());
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::test_support::{Scratch, fixture, opts, plan};
    use radlens_shared::answer::Answer;

    fn scratch() -> Scratch {
        let s = Scratch::new("nih");
        // The bundled images are 512 x 512: NIH's 1024-pixel boxes halve.
        for id in ["00001369_000", "00009745_000", "00001933_000", "00021397_000", "00028351_000"] {
            s.image(&format!("{id}.png"), 512, 512);
        }
        s
    }

    #[test]
    fn boxes_are_scaled_to_the_image_and_every_field_round_trips() {
        let s = scratch();
        let summary = import(&opts(&fixture("nih-bbox/BBox_List_2017.csv"), &s.images()), &s.out()).unwrap();
        let plan = plan(&s.out());
        let r = &plan.rows[0];
        assert_eq!(r.study_id, "00001369_000-cardiomegaly");
        assert_eq!(r.image_path, "00001369_000.png");
        assert_eq!(r.question, "Is there cardiomegaly in this chest X-ray?");
        assert_eq!((r.answer, r.finding.as_deref(), r.polarity, r.variant_index), (Some(Answer::Yes), Some("cardiomegaly"), 1, 0));
        let roi = r.roi.unwrap();
        assert_eq!((roi.x0, roi.y0, roi.width(), roi.height()), (168.5, 138.0, 277.0, 193.5));
        assert_eq!(r.metadata.get("source_image_id").map(String::as_str), Some("00001369_000.png"));
        assert_eq!(r.metadata.get("source_finding").map(String::as_str), Some("Cardiomegaly"));
        assert_eq!(r.metadata.get("source_boxes").map(String::as_str), Some("box:168.5,138,277,193.5"));
        assert_eq!(r.metadata.get("source_lines").map(String::as_str), Some("2"));
        let pneumonia = plan.rows.iter().find(|r| r.finding.as_deref() == Some("pneumonia")).unwrap();
        assert_eq!(pneumonia.question, "Is there pneumonia in this chest X-ray?");
        assert_eq!((summary.studies, summary.rows), (3, 3));
        assert_eq!(summary.dropped.get(crate::import::IMAGE_MISSING), Some(&1), "00002578_000.png is not in the folder");
        assert!(summary.notes.iter().any(|n| n.contains("1024x1024 -> 512x512")), "{:?}", summary.notes);
    }

    #[test]
    fn labels_add_no_finding_images_as_negatives() {
        let s = scratch();
        let labels = s
            .write("labels.csv", "file,finding\n00021397_000.png,No Finding\n00028351_000.png,No Finding\n00001369_000.png,Cardiomegaly\n");
        let mut o = opts(&fixture("nih-bbox/BBox_List_2017.csv"), &s.images());
        o.labels = Some(labels);
        import(&o, &s.out()).unwrap();
        let plan = plan(&s.out());
        let negatives: Vec<_> =
            plan.rows.iter().filter(|r| r.answer == Some(Answer::No)).map(|r| (r.study_id.as_str(), r.roi.is_none())).collect();
        // Cardiomegaly has two boxes, so two normal images; pneumonia continues the rotation.
        assert_eq!(
            negatives,
            vec![("00021397_000-cardiomegaly", true), ("00028351_000-cardiomegaly", true), ("00021397_000-pneumonia", true)]
        );
    }

    #[test]
    fn malformed_box_lists_name_the_file_and_line() {
        let s = scratch();
        let missing = s.write("m.csv", "Image Index,Bbox [x,y,w,h],,,\n00001369_000.png,1,2,3,4\n");
        let err = import(&opts(&missing, &s.images()), &s.out()).unwrap_err().to_string();
        assert!(err.contains("m.csv: missing column \"Finding Label\""), "{err}");
        let text = s.write("t.csv", "Image Index,Finding Label,Bbox [x,y,w,h],,,\n00001369_000.png,Cardiomegaly,337,276,wide,387,,,\n");
        let err = import(&opts(&text, &s.images()), &s.out()).unwrap_err().to_string();
        assert!(err.contains("t.csv: line 2: Bbox w \"wide\" is not a number"), "{err}");
        let outside = s.write("o.csv", "Image Index,Finding Label,Bbox [x,y,w,h],,,\n00001369_000.png,Cardiomegaly,337,276,554,387\n00009745_000.png,Cardiomegaly,900,400,456,383\n");
        let err = import(&opts(&outside, &s.images()), &s.out()).unwrap_err().to_string();
        assert!(err.contains("o.csv: line 3: box x=900, y=400, w=456, h=383 lies outside the 1024x1024 image 00009745_000.png"), "{err}");
        assert!(!s.out().exists() && !s.0.join("questions.csv.tmp").exists(), "no half file");
    }
}
