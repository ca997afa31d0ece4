//! MS-CXR (Boecking et al., ECCV 2022; PhysioNet `ms-cxr` 0.1/1.1,
//! `MS_CXR_Local_Alignment_v1.0.0.csv`): radiologist boxes on MIMIC-CXR images, each with the
//! report phrase it grounds: `dicom_id, label_text, category_name, x, y, w, h, image_width,
//! image_height, path, ...` (later versions add `split`). Boxes are top-left corner and size in
//! the original DICOM's `image_width` x `image_height` pixels, scaled to the image found.
//!
//! The boxes of one (image, category) are merged into their enclosing box; every box and every
//! phrase is kept. MS-CXR boxes positives only, so it makes no negatives.

use std::path::Path;

use super::box_questions::{self, BoxSet, MergeRule, SourceBox, column, csv_error, line_of, open_csv, parse_number};
use super::{ImportError, ImportOptions, Summary};

pub fn import(opts: &ImportOptions, out: &Path) -> Result<Summary, ImportError> {
    let file = opts.src.as_path();
    let (mut reader, headers) = open_csv(file)?;
    let col = |name: &str| column(file, &headers, name);
    let (dicom_col, text_col, cat_col) = (col("dicom_id")?, col("label_text")?, col("category_name")?);
    let numeric = ["x", "y", "w", "h", "image_width", "image_height"];
    let mut num_cols = [0usize; 6];
    for (k, name) in numeric.iter().enumerate() {
        num_cols[k] = col(name)?;
    }
    let path_col = headers.iter().position(|h| h.trim() == "path");
    let split_col = headers.iter().position(|h| h.trim() == "split");
    if opts.split.is_some() && split_col.is_none() {
        return Err(ImportError::Usage(format!("--split: {} has no split column (MS-CXR 1.0.0 has none; 1.1.0 does)", file.display())));
    }
    let mut boxes = Vec::new();
    let mut other_split = 0;
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(file, &e))?;
        let line = line_of(&record);
        let get = |i: usize| record.get(i).map(str::trim).unwrap_or("");
        if let (Some(want), Some(c)) = (&opts.split, split_col)
            && get(c) != want
        {
            other_split += 1;
            continue;
        }
        let mut v = [0.0; 6];
        for k in 0..6 {
            v[k] = parse_number(file, line, numeric[k], get(num_cols[k]))?;
        }
        let dicom = get(dicom_col).to_string();
        if dicom.is_empty() {
            return Err(ImportError::Line { path: file.to_path_buf(), line, message: "dicom_id is empty".into() });
        }
        let mut candidates = Vec::new();
        if let Some(p) = path_col.map(get).filter(|p| !p.is_empty()) {
            candidates.push(p.to_string());
            if let Some(rest) = p.strip_prefix("files/") {
                candidates.push(rest.to_string());
            }
        }
        candidates.extend(box_questions::candidates_for(&dicom).into_iter().skip(1));
        boxes.push(SourceBox {
            line,
            image_id: dicom,
            image_candidates: candidates,
            label: get(cat_col).to_string(),
            reader: None,
            xywh: [v[0], v[1], v[2], v[3]],
            space: Some((v[4], v[5])),
            phrase: Some(get(text_col).to_string()).filter(|t| !t.is_empty()),
        });
    }
    let set = BoxSet {
        file: file.to_path_buf(),
        boxes,
        merge: MergeRule::Enclosing,
        readers: Default::default(),
        negatives: Vec::new(),
        negatives_per_positive: 0,
    };
    let mut summary = box_questions::write_questions(&set, opts, out)?;
    for _ in 0..other_split {
        summary.drop(super::OTHER_SPLIT);
    }
    summary.notes.push("no negatives: MS-CXR boxes findings that are present only".into());
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::test_support::{Scratch, fixture, opts, plan};

    #[test]
    fn boxes_of_one_finding_merge_and_keep_their_phrases() {
        let s = Scratch::new("ms-cxr");
        s.image("p10/p10000032/s50414267/0a0c6ac8-7a9e8c8d-9c6f8a4c-31ad1c3a-1f3c2e5b.jpg", 1024, 1024);
        s.image("0c2a1b1e-4e7a0f3d-2b8c6d5e-7f9a0b1c-2d3e4f5a.png", 512, 512);
        let summary = import(&opts(&fixture("ms-cxr/MS_CXR_Local_Alignment_v1.0.0.csv"), &s.images()), &s.out()).unwrap();
        let plan = plan(&s.out());
        assert_eq!(plan.rows.len(), 2);
        let r = &plan.rows[0];
        assert_eq!(r.image_path, "p10/p10000032/s50414267/0a0c6ac8-7a9e8c8d-9c6f8a4c-31ad1c3a-1f3c2e5b.jpg");
        assert_eq!((r.finding.as_deref(), r.question.as_str()), (Some("pneumonia"), "Is there pneumonia in this chest X-ray?"));
        // Two boxes in 2048 x 2048 DICOM pixels, halved onto the 1024-pixel JPEG and enclosed.
        let roi = r.roi.unwrap();
        assert_eq!((roi.x0, roi.y0, roi.x1, roi.y1), (100.0, 200.0, 450.0, 500.0));
        assert_eq!(r.metadata.get("source_phrases").map(String::as_str), Some("right lower lobe pneumonia;left basilar opacity"));
        assert_eq!(r.metadata.get("source_boxes").map(String::as_str), Some("box:100,200,200,200;box:300,350,150,150"));
        // The second image is found by its dicom_id (exported as PNG), its box scaled by 1/4.
        let roi = plan.rows[1].roi.unwrap();
        assert_eq!((roi.x0, roi.y0, roi.width(), roi.height()), (64.0, 32.0, 128.0, 96.0));
        assert_eq!(plan.rows[1].finding.as_deref(), Some("pleural effusion"));
        assert_eq!(summary.dropped.get(crate::import::IMAGE_MISSING), Some(&1));
    }

    #[test]
    fn a_box_beyond_its_image_size_is_refused() {
        let s = Scratch::new("ms-cxr-out");
        s.image("d.png", 512, 512);
        let src = s.write(
            "m.csv",
            "dicom_id,label_text,category_name,x,y,w,h,image_width,image_height,path\nd,small effusion,Pleural Effusion,2000,100,100,100,2048,2048,\n",
        );
        let err = import(&opts(&src, &s.images()), &s.out()).unwrap_err().to_string();
        assert!(err.contains("m.csv: line 2: box x=2000, y=100, w=100, h=100 lies outside the 2048x2048 image d.png"), "{err}");
    }
}
