//! VinDr-CXR (Nguyen et al., Scientific Data 2022; PhysioNet `vindr-cxr` 1.0.0,
//! `annotations/annotations_train.csv`): one row per radiologist and finding,
//! `image_id,rad_id,class_name,x_min,y_min,x_max,y_max`; three radiologists read each training
//! image, and "No finding" rows have empty coordinates. `annotations_test.csv` is the five-reader
//! consensus without `rad_id` (one reader per image then).
//!
//! Merge rule: a finding is kept for an image when more than half of the radiologists who read
//! it drew a box of that class (2 of 3); its `roi_*` is the enclosing box of all their boxes of
//! that class, and every box is kept in `source_boxes` as `rad_id:x,y,w,h`. Negatives: images
//! that every reader marked "No finding", as many per finding as it has positives.
//!
//! Boxes are in DICOM pixels: convert the DICOMs to PNG at their own resolution (a box outside
//! the PNG is an error naming the line, which also catches a downscaled conversion).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::box_questions::{self, BoxSet, MergeRule, SourceBox, column, csv_error, line_of, open_csv, parse_number};
use super::{ImportError, ImportOptions, Summary};

const COORDS: [&str; 4] = ["x_min", "y_min", "x_max", "y_max"];

pub fn import(opts: &ImportOptions, out: &Path) -> Result<Summary, ImportError> {
    let file = opts.src.as_path();
    let (mut reader, headers) = open_csv(file)?;
    let image_col = column(file, &headers, "image_id")?;
    let class_col = column(file, &headers, "class_name")?;
    let rad_col = headers.iter().position(|h| h.trim() == "rad_id");
    let mut coords = [0usize; 4];
    for (k, name) in COORDS.iter().enumerate() {
        coords[k] = column(file, &headers, name)?;
    }
    let mut boxes = Vec::new();
    let mut readers: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut normal_by: HashMap<String, usize> = HashMap::new();
    let mut image_order: Vec<String> = Vec::new();
    let mut summary_drops = 0usize;
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(file, &e))?;
        let line = line_of(&record);
        let get = |i: usize| record.get(i).map(str::trim).unwrap_or("");
        let image = get(image_col).to_string();
        if image.is_empty() {
            return Err(ImportError::Line { path: file.to_path_buf(), line, message: "image_id is empty".into() });
        }
        let reader_id = rad_col.map_or("consensus", |c| get(c)).to_string();
        if !readers.contains_key(&image) {
            image_order.push(image.clone());
        }
        readers.entry(image.clone()).or_default().insert(reader_id.clone());
        let class = get(class_col).to_string();
        if class.eq_ignore_ascii_case("no finding") {
            *normal_by.entry(image).or_insert(0) += 1;
            continue;
        }
        if coords.iter().all(|&c| get(c).is_empty()) {
            summary_drops += 1;
            continue;
        }
        let mut v = [0.0; 4];
        for k in 0..4 {
            v[k] = parse_number(file, line, COORDS[k], get(coords[k]))?;
        }
        let [x0, y0, x1, y1] = v;
        boxes.push(SourceBox {
            line,
            image_candidates: box_questions::candidates_for(&image),
            image_id: image,
            label: class,
            reader: Some(reader_id),
            xywh: [x0, y0, x1 - x0, y1 - y0],
            space: None,
            phrase: None,
        });
    }
    // An image is normal when each of its readers said "No finding" and nobody boxed anything.
    let boxed: BTreeSet<&str> = boxes.iter().map(|b| b.image_id.as_str()).collect();
    let negatives = image_order
        .iter()
        .filter(|id| !boxed.contains(id.as_str()) && normal_by.get(*id).copied().unwrap_or(0) >= readers[*id].len())
        .map(|id| (id.clone(), box_questions::candidates_for(id)))
        .collect();
    let set =
        BoxSet { file: file.to_path_buf(), boxes, merge: MergeRule::MajorityEnclosing, readers, negatives, negatives_per_positive: 1 };
    let mut summary = box_questions::write_questions(&set, opts, out)?;
    for _ in 0..summary_drops {
        summary.drop("finding row without a box");
    }
    summary.notes.push(
        "roi_* = enclosing box of the finding's boxes when more than half of the image's radiologists drew one; every box in source_boxes"
            .into(),
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::test_support::{Scratch, fixture, opts, plan};
    use radlens_shared::answer::Answer;

    fn scratch() -> Scratch {
        let s = Scratch::new("vindr");
        for id in [
            "9a5094b2563a1ef3ff50dc5c7ff71345",
            "051132a778e61a86eb147c7c6f564dfe",
            "1c32170b4af4ce1a3030eb8167753b06",
            "47ed17dcb2cbeec15182ed335a8b5a9e",
        ] {
            s.image(&format!("{id}.png"), 2000, 2400);
        }
        s
    }

    #[test]
    fn the_majority_of_radiologists_decides_and_every_box_is_kept() {
        let s = scratch();
        let summary = import(&opts(&fixture("vindr-cxr/annotations_train.csv"), &s.images()), &s.out()).unwrap();
        let plan = plan(&s.out());
        let got: Vec<_> = plan.rows.iter().map(|r| (r.study_id.as_str(), r.answer, r.finding.as_deref())).collect();
        assert_eq!(
            got,
            vec![
                ("9a5094b2563a1ef3ff50dc5c7ff71345-cardiomegaly", Some(Answer::Yes), Some("cardiomegaly")),
                ("9a5094b2563a1ef3ff50dc5c7ff71345-aortic-enlargement", Some(Answer::Yes), Some("aortic enlargement")),
                ("1c32170b4af4ce1a3030eb8167753b06-cardiomegaly", Some(Answer::No), Some("cardiomegaly")),
                ("47ed17dcb2cbeec15182ed335a8b5a9e-aortic-enlargement", Some(Answer::No), Some("aortic enlargement")),
            ]
        );
        let cardio = &plan.rows[0];
        let roi = cardio.roi.unwrap();
        // Enclosing box of R10's and R9's boxes: x 691..1653, y 1375..1831.
        assert_eq!((roi.x0, roi.y0, roi.x1, roi.y1), (691.0, 1375.0, 1653.0, 1831.0));
        assert_eq!(cardio.metadata.get("source_boxes").map(String::as_str), Some("R10:691,1375,962,431;R9:700,1380,940,451"));
        assert_eq!(cardio.metadata.get("source_readers").map(String::as_str), Some("2/3"));
        assert_eq!(cardio.question, "Is there cardiomegaly in this chest X-ray?");
        // R10's lone nodule on the first image and R3's lone pleural thickening on the second.
        assert_eq!(summary.dropped.get("finding boxed by half of the image's radiologists or fewer (majority rule)"), Some(&2));
    }

    #[test]
    fn the_consensus_test_file_has_one_reader_per_image() {
        let s = scratch();
        let src = s.write(
            "annotations_test.csv",
            "image_id,class_name,x_min,y_min,x_max,y_max\n051132a778e61a86eb147c7c6f564dfe,Pleural effusion,100,1500,600,2100\n1c32170b4af4ce1a3030eb8167753b06,No finding,,,,\n",
        );
        import(&opts(&src, &s.images()), &s.out()).unwrap();
        let plan = plan(&s.out());
        let got: Vec<_> = plan.rows.iter().map(|r| (r.study_id.as_str(), r.answer, r.roi.map(|b| (b.x0, b.y0, b.x1, b.y1)))).collect();
        assert_eq!(
            got,
            vec![
                ("051132a778e61a86eb147c7c6f564dfe-pleural-effusion", Some(Answer::Yes), Some((100.0, 1500.0, 600.0, 2100.0))),
                ("1c32170b4af4ce1a3030eb8167753b06-pleural-effusion", Some(Answer::No), None),
            ]
        );
        assert_eq!(plan.rows[0].question, "Is there a pleural effusion in this chest X-ray?");
        assert_eq!(plan.rows[0].metadata.get("source_readers").map(String::as_str), Some("1/1"));
    }

    #[test]
    fn a_non_numeric_coordinate_names_its_line() {
        let s = scratch();
        let src = s.write(
            "a.csv",
            "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\n051132a778e61a86eb147c7c6f564dfe,R1,Nodule/Mass,10,10,n/a,40\n",
        );
        let err = import(&opts(&src, &s.images()), &s.out()).unwrap_err().to_string();
        assert!(err.contains("a.csv: line 2: x_max \"n/a\" is not a number"), "{err}");
    }
}
