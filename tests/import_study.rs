//! Issue 19: a public set is one command away. NIH's box list (the bundled images' four
//! radiologist boxes, written by hand from `BBox_List_2017.csv`'s layout) -> `radlens import
//! nih-bbox` -> `radlens variants` -> `radlens study` on the bundled X-rays, with nothing else.

use std::path::PathBuf;

use radlens::commands::demo::write_demo_models;
use radlens::study::plan::read_plan;
use radlens_shared::answer::Answer;

use crate::support::{Scratch, radlens, workspace_root};

fn demo_images() -> PathBuf {
    workspace_root().join("static/demo/cxr")
}

fn run_ok(args: &[&str]) -> String {
    let out = radlens(args);
    assert!(out.status.success(), "radlens {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn import_then_variants_then_study_on_the_bundled_images() {
    let scratch = Scratch::new("import-study");
    let images = demo_images();
    let (questions, study_csv, run_dir) =
        (scratch.path().join("questions.csv"), scratch.path().join("study.csv"), scratch.path().join("run"));
    let bbox = workspace_root().join("fixtures/import/nih-bbox/BBox_List_2017.csv");
    let labels = images.join("labels.csv");
    let p = |p: &PathBuf| p.display().to_string();

    let summary =
        run_ok(&["import", "nih-bbox", "--src", &p(&bbox), "--images", &p(&images), "--out", &p(&questions), "--labels", &p(&labels)]);
    // Four boxes, and as many "No Finding" images as each finding has boxes (2 + 1 + 1).
    assert!(summary.contains("8 rows in 8 studies") && summary.contains("dropped: none"), "{summary}");
    assert!(summary.contains("1024x1024 -> 512x512"), "the boxes are scaled to the bundled 512-pixel images: {summary}");
    let base = read_plan(&questions).unwrap();
    assert!(base.problems.is_empty(), "{:?}", base.problems);
    let nodule = base.rows.iter().find(|r| r.finding.as_deref() == Some("nodule")).unwrap();
    let roi = nodule.roi.unwrap();
    assert_eq!((nodule.image_path.as_str(), roi.x0, roi.y0, roi.width(), roi.height()), ("00002578_000.png", 398.0, 163.5, 39.0, 30.0));

    let summary = run_ok(&["variants", "--csv", &p(&questions), "--out", &p(&study_csv), "--seed", "1"]);
    assert!(summary.contains("8 base questions"), "{summary}");
    let study = read_plan(&study_csv).unwrap();
    assert!(study.problems.is_empty(), "{:?}", study.problems);
    assert_eq!(study.studies().len(), 8);
    for row in &study.rows {
        let base = base.rows.iter().find(|b| b.study_id == row.study_id).unwrap();
        assert_eq!(row.answer, base.answer.map(|a| a.with_polarity(row.polarity)), "{}", row.question);
        assert_eq!((row.roi, &row.image_path), (base.roi, &base.image_path));
    }
    assert!(study.rows.iter().any(|r| r.polarity == -1 && r.answer == Some(Answer::No)), "a negated positive");
    // Every template question has a location clause and a lexicon term, so all five rules apply.
    assert_eq!(study.rows.len(), 8 * 6);
    for strategy in ["synonym replacement", "clause reordering", "hedging", "register shift", "negation"] {
        assert_eq!(study.rows.iter().filter(|r| r.strategy == strategy).count(), 8, "{strategy}");
    }

    let models = write_demo_models(&scratch.path().join("models")).unwrap();
    let model = format!("{}={}", models[0].0, models[0].1.display());
    run_ok(&[
        "study",
        "--csv",
        &p(&study_csv),
        "--images",
        &p(&images),
        "--model",
        &model,
        "--out",
        &p(&run_dir),
        "--n-studies",
        "2",
        "--resamples",
        "100",
        "--max-new-tokens",
        "3",
    ]);
    let records = crate::support::run_records(&run_dir);
    let expected: usize = study.studies().iter().take(2).map(|(_, rows)| rows.len()).sum();
    assert_eq!(records.len(), expected);
    assert!(records.iter().all(|r| r.error.is_none()), "{:?}", records.iter().find_map(|r| r.error.as_ref()));
    assert!(run_dir.join("report.md").is_file());
}

#[test]
fn a_malformed_source_exits_2_and_leaves_no_file() {
    let scratch = Scratch::new("import-bad");
    let out = scratch.path().join("q.csv");
    let src = scratch.write("BBox_List_2017.csv", "Image Index,Finding Label,Bbox [x,y,w,h],,,\n00001369_000.png,Cardiomegaly,337,276,554,387\n00009745_000.png,Cardiomegaly,329,900,456,383\n");
    let result = radlens(&[
        "import",
        "nih-bbox",
        "--src",
        &src.display().to_string(),
        "--images",
        &demo_images().display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("BBox_List_2017.csv: line 3: box x=329, y=900, w=456, h=383 lies outside the 1024x1024 image"), "{stderr}");
    assert!(!out.exists() && !scratch.path().join("q.csv.tmp").exists());
}

#[test]
fn variants_from_a_file_that_names_another_image_exit_2() {
    let scratch = Scratch::new("variants-from-bad");
    let base = scratch.write("base.csv", "study_id,image_path,question,answer\ns1,00001369_000.png,Is there cardiomegaly?,yes\n");
    let from = scratch
        .write("v.jsonl", "{\"study_id\": \"s1\", \"question\": \"Is the heart enlarged?\", \"image_path\": \"00009745_000.png\"}\n");
    let out = scratch.path().join("study.csv");
    let p = |p: &PathBuf| p.display().to_string();
    let result = radlens(&["variants", "--csv", &p(&base), "--out", &p(&out), "--from", &p(&from)]);
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("v.jsonl: at line 1: .image_path: \"00009745_000.png\" is not the base question's image"), "{stderr}");
    assert!(!out.exists());
}
