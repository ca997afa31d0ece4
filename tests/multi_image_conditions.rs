//! Image conditions on rows with several images (issue 21): `prior_blank` and `prior_swap`
//! replace the prior, every other condition replaces the current image, the row's other images
//! kept. Each is checked against the same images asked directly in a row of their own, so a
//! condition that showed the model anything else would fail. MAIRA-2 runs the study path with
//! its own image order.

use std::path::PathBuf;

use radlens_shared::record::{CaseRecord, Pass};

use crate::multi_image_study::{CURRENT, LATERAL, PRIOR, study_on as study};
use crate::support::{Scratch, fixture, run_records};

/// A black 512x512 PNG: the blank image the blank conditions show, as a file.
const BLACK: &str = "black.png";

/// The fixture's images and the black one in a folder of the test's own.
fn images(scratch: &Scratch) -> PathBuf {
    let dir = scratch.path().join("images");
    std::fs::create_dir_all(&dir).unwrap();
    for name in [CURRENT, PRIOR, LATERAL] {
        std::fs::copy(fixture("multi-image-v1/images").join(name), dir.join(name)).unwrap();
    }
    image::DynamicImage::new_luma8(512, 512).save(dir.join(BLACK)).unwrap();
    dir
}

fn of(records: &[CaseRecord], study: &str, pass: Pass) -> CaseRecord {
    records
        .iter()
        .find(|r| r.study_id == study && r.variant_index == 0 && r.pass == pass)
        .unwrap_or_else(|| panic!("no {} record of {study}", pass.name()))
        .clone()
}

fn margin(r: &CaseRecord) -> f64 {
    assert!(r.error.is_none(), "{} {}: {:?}", r.sample_id, r.pass.name(), r.error);
    r.yes_no_margin.unwrap_or_else(|| panic!("{} {} has no margin", r.sample_id, r.pass.name()))
}

#[test]
fn each_condition_shows_the_model_what_it_says_and_the_prior_rates_reach_the_analysis() {
    let scratch = Scratch::new("multi-image-conditions");
    let images = images(&scratch);
    // s1's prior partner is s2 (the next study with another prior file and another subject);
    // `direct-*` ask s1's question of the images each condition should show.
    let q = "Is there a pleural effusion?";
    let csv = scratch.write(
        "study.csv",
        &format!(
            "study_id,subject_id,image_path,prior_image_path,question,answer,finding,roi_x,roi_y,roi_w,roi_h\n\
             s1,p1,{CURRENT},{PRIOR},{q},yes,effusion,10,20,30,40\n\
             s2,p2,{CURRENT},{LATERAL},{q},no,effusion,,,,\n\
             s3,p3,{CURRENT},,{q},no,effusion,,,,\n\
             direct-swap,p1,{CURRENT},{LATERAL},{q},yes,other,,,,\n\
             direct-prior-blank,p1,{CURRENT},{BLACK},{q},yes,other,,,,\n\
             direct-blank,p1,{BLACK},{PRIOR},{q},yes,other,,,,\n"
        ),
    );
    let model = fixture("multi-image-v1/gemma3-tiny-multi");
    let out = scratch.path().join("run");
    study(&csv, &images, ("gemma3-multi", &model), &out, &["--conditions", "prior_blank,prior_swap,blank,roi_occluded"]);
    let records = run_records(&out);

    // prior_swap: s2's prior beside s1's current image, no truth.
    let swap = of(&records, "s1", Pass::PriorSwap);
    assert_eq!(swap.condition.as_ref().and_then(|c| c.partner_study.as_deref()), Some("s2"));
    assert_eq!(swap.condition.as_ref().and_then(|c| c.prior_image.as_deref()), Some(LATERAL), "the prior shown, named");
    assert_eq!((swap.ground_truth, swap.correct), (None, None), "two patients' images: no truth about change");
    let direct = margin(&of(&records, "direct-swap", Pass::Image));
    assert!((margin(&swap) - direct).abs() < 1e-3, "prior_swap {} vs the same images asked directly {direct}", margin(&swap));
    assert_eq!(of(&records, "s2", Pass::PriorSwap).condition.and_then(|c| c.partner_study).as_deref(), Some("s1"));
    let why = of(&records, "s3", Pass::PriorSwap).condition.and_then(|c| c.not_run).expect("a row without a prior is not run");
    assert!(why.contains("no prior image"), "{why}");

    // prior_blank: the black image as the prior.
    let blank_prior = of(&records, "s1", Pass::PriorBlank);
    let direct = margin(&of(&records, "direct-prior-blank", Pass::Image));
    assert!((margin(&blank_prior) - direct).abs() < 1e-3, "prior_blank {} vs direct {direct}", margin(&blank_prior));
    assert_eq!(blank_prior.ground_truth, Some(radlens_shared::answer::Answer::Yes), "prior_blank keeps the row's truth");

    // blank: the current image blank, the prior kept.
    let blank = of(&records, "s1", Pass::BlankImage);
    assert!(blank.condition.as_ref().is_none_or(|c| c.not_run.is_none()), "{:?}", blank.condition);
    let direct = margin(&of(&records, "direct-blank", Pass::Image));
    assert!((margin(&blank) - direct).abs() < 1e-3, "blank {} vs direct {direct}", margin(&blank));

    // roi_occluded: the box filled on the current image; the run has the answer.
    let occluded = of(&records, "s1", Pass::RoiOccluded);
    assert!(occluded.error.is_none() && occluded.parsed_answer.is_some(), "{:?}", occluded.error);
    assert_eq!(occluded.condition.and_then(|c| c.occluded_box), occluded.roi);

    let analysis: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("analysis.json")).unwrap()).unwrap();
    let conditions = &analysis["models"][0]["conditions"];
    for rate in ["prior_blank_change_rate", "prior_swap_change_rate", "image_sensitivity"] {
        assert!(conditions[rate]["estimate"].is_number(), "{rate}: {conditions}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("prior swap change") && report.contains("prior blank change"), "the report's rate columns");

    // records.csv names the prior, the partner and each image's mass share.
    let mut reader = csv::Reader::from_path(out.join("records.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let row = |sample: &str, pass: &str| rows.iter().find(|r| &r[col("sample_id")] == sample && &r[col("pass")] == pass).unwrap();
    let real = row("s1#0", "image");
    assert_eq!(&real[col("prior_image")], PRIOR);
    let shares: f64 = ["current_mass_share", "prior_mass_share"].iter().map(|c| real[col(c)].parse::<f64>().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-6, "the shares sum to {shares}");
    assert_eq!(&row("s1#0", "prior_swap")[col("partner_study")], "s2");
}

#[test]
fn maira2_reads_frontal_lateral_and_prior_in_its_own_order_through_a_study() {
    let scratch = Scratch::new("multi-image-maira2");
    let images = images(&scratch);
    let csv = scratch.write(
        "study.csv",
        &format!(
            "study_id,image_path,lateral_image_path,prior_image_path,question,answer\n\
             s1,{CURRENT},{LATERAL},{PRIOR},Is there a pleural effusion?,yes\n\
             s1,{CURRENT},{LATERAL},{PRIOR},Is a pleural effusion present?,yes\n\
             s2,{CURRENT},{LATERAL},,Is there a pneumothorax?,no\n\
             s3,{CURRENT},{LATERAL},{LATERAL},Is there a pleural effusion?,yes\n"
        ),
    );
    let model = fixture("multi-image-v1/maira2-tiny");
    let out = scratch.path().join("run");
    study(&csv, &images, ("maira2", &model), &out, &["--conditions", "prior_blank,prior_swap"]);
    let records = run_records(&out);
    let image_records: Vec<&CaseRecord> = records.iter().filter(|r| r.pass == Pass::Image).collect();
    assert_eq!(image_records.len(), 4);
    for r in image_records {
        assert!(r.error.is_none(), "{}: {:?}", r.sample_id, r.error);
        let roles: Vec<&str> = r.images.iter().map(|i| i.role.as_str()).collect();
        let want: &[&str] = if r.study_id != "s2" { &["current", "lateral", "prior"] } else { &["current", "lateral"] };
        assert_eq!(roles, want, "{}: MAIRA-2's order, whatever the CSV's", r.sample_id);
        let total: f64 = r.images.iter().map(|i| i.image_mass_share).sum();
        assert!((total - 1.0).abs() < 1e-6, "{}: shares sum to {total}", r.sample_id);
        for i in &r.images {
            let g = i.provenance.geometry;
            assert_eq!(i.values.shape, vec![g.h, g.w], "{} {}", r.sample_id, i.role);
            assert_eq!(g.h * g.w, 25, "{} {}: MAIRA-2's tiny RAD-DINO gives 5x5 tokens per image", r.sample_id, i.role);
        }
    }
    // MAIRA-2 stretches each image to its own min and max: a blank prior has no range, and the
    // row says so rather than feeding transformers' division by zero to the model.
    let prior_blank = of(&records, "s1", Pass::PriorBlank);
    let why = prior_blank.error.map(|e| e.message).unwrap_or_default();
    assert!(why.contains("constant") && why.contains("min-max"), "{why}");
    let skipped = of(&records, "s2", Pass::PriorBlank).condition.and_then(|c| c.not_run);
    assert!(skipped.is_some_and(|w| w.contains("no prior image")));
    // prior_swap: s3's prior (the lateral file) beside s1's current and lateral images, the same
    // as asking s3's row directly.
    let swap = of(&records, "s1", Pass::PriorSwap);
    assert_eq!(swap.condition.as_ref().and_then(|c| c.partner_study.as_deref()), Some("s3"));
    let direct = margin(&of(&records, "s3", Pass::Image));
    assert!((margin(&swap) - direct).abs() < 1e-3, "prior_swap {} vs s3 {direct}", margin(&swap));
}
