//! `radlens probe --prior/--lateral` (issue 21): the fixture's multi-image Gemma3 asked one
//! question of a case with three images; each image's map on its own grid with its share, the
//! same numbers as `radlens study` on a one-row CSV, Grad-CAM per image; a single-image model
//! and a missing prior as clear errors.

use std::path::{Path, PathBuf};

use radlens::commands::demo::write_demo_models;
use radlens_shared::record::Pass;
use serde_json::Value;

use crate::support::{Scratch, fixture, radlens, run_records};

const CURRENT: &str = "frontal_gray_96x120.png";
const PRIOR: &str = "prior_rgb_140x128.png";
const LATERAL: &str = "lateral_gray_110x90.png";
const QUESTION: &str = "Has the effusion worsened since the prior?";

fn image(name: &str) -> String {
    fixture("multi-image-v1/images").join(name).display().to_string()
}

fn model() -> PathBuf {
    fixture("multi-image-v1/gemma3-tiny-multi")
}

/// The probe with all three images (`--max-new-tokens 2`, as the study below) and `extra` flags.
fn probe(model: &Path, extra: &[&str]) -> std::process::Output {
    let (model, current, prior, lateral) = (model.display().to_string(), image(CURRENT), image(PRIOR), image(LATERAL));
    let mut args = vec![
        "probe",
        "--model",
        &model,
        "--image",
        &current,
        "--prior",
        &prior,
        "--lateral",
        &lateral,
        "--question",
        QUESTION,
        "--max-new-tokens",
        "2",
        "--json",
    ];
    args.extend(extra);
    radlens(&args)
}

fn probe_json(extra: &[&str]) -> Value {
    let out = probe(&model(), extra);
    assert!(out.status.success(), "probe {extra:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A map as the probe prints it: values sum to 1 on its own `h x w` grid.
fn assert_normalised_on_its_grid(what: &str, m: &Value) {
    let values = m["values"].as_array().unwrap();
    let (h, w) = (m["h"].as_u64().unwrap() as usize, m["w"].as_u64().unwrap() as usize);
    assert_eq!(values.len(), h * w, "{what}: {h}x{w} grid");
    let sum: f64 = values.iter().map(f).sum();
    assert!((sum - 1.0).abs() < 1e-6, "{what}: values sum to {sum}");
    assert_eq!(m["provenance"]["geometry"]["h"], m["h"], "{what}: provenance names the grid");
}

#[test]
fn probe_with_a_prior_and_a_lateral_reports_each_image_as_the_study_does() {
    let report = probe_json(&[]);
    let images = report["images"].as_array().expect("an images array");
    let roles: Vec<&str> = images.iter().map(|i| i["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["prior", "current", "lateral"], "prompt order");
    let files: Vec<&str> = images.iter().map(|i| i["file"].as_str().unwrap()).collect();
    assert_eq!(files, [PRIOR, CURRENT, LATERAL]);
    let total: f64 = images.iter().map(|i| f(&i["image_mass_share"])).sum();
    assert!((total - 1.0).abs() < 1e-6, "shares sum to {total}");
    for (i, size) in images.iter().zip([(140, 128), (96, 120), (110, 90)]) {
        assert_normalised_on_its_grid(i["role"].as_str().unwrap(), i);
        let g = &i["provenance"]["geometry"];
        assert_eq!((g["image_w"].as_u64().unwrap(), g["image_h"].as_u64().unwrap()), size, "{}: its own image", i["role"]);
        assert!(i.get("methods").is_none(), "no other methods asked");
    }
    assert_eq!(report["map"]["provenance"]["geometry"], images[1]["provenance"]["geometry"], "the own map is the current image's");

    // The same case through the study: the same answer, margin and shares.
    let scratch = Scratch::new("probe-images-study");
    let csv = scratch.write(
        "study.csv",
        &format!(
            "study_id,image_path,prior_image_path,lateral_image_path,question,answer\ns1,{CURRENT},{PRIOR},{LATERAL},{QUESTION},yes\n"
        ),
    );
    let (images_dir, out) = (fixture("multi-image-v1/images"), scratch.path().join("run"));
    let model_arg = format!("gemma3-multi={}", model().display());
    let args = [
        "study",
        "--csv",
        csv.to_str().unwrap(),
        "--images",
        images_dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        &model_arg,
        "--max-new-tokens",
        "2",
        "--resamples",
        "50",
    ];
    let run = radlens(&args);
    assert!(run.status.success(), "study: {}", String::from_utf8_lossy(&run.stderr));
    let records = run_records(&out);
    let record = records.iter().find(|r| r.pass == Pass::Image).expect("the row's record");
    assert!(record.error.is_none(), "{:?}", record.error);
    assert_eq!(record.answer_text.as_deref(), report["answer"].as_str(), "answer");
    let (a, b) = (record.yes_no_margin.unwrap(), f(&report["yes_no_margin"]));
    assert!((a - b).abs() < 1e-4, "margin: study {a}, probe {b}");
    assert_eq!(record.images.len(), 3);
    for (r, p) in record.images.iter().zip(images) {
        assert_eq!(r.role, p["role"].as_str().unwrap());
        let (a, b) = (r.image_mass_share, f(&p["image_mass_share"]));
        assert!((a - b).abs() < 1e-4, "{} share: study {a}, probe {b}", r.role);
    }

    // The human output has the per-image table.
    let (model, current, prior) = (model().display().to_string(), image(CURRENT), image(PRIOR));
    let out =
        radlens(&["probe", "--model", &model, "--image", &current, "--prior", &prior, "--question", QUESTION, "--max-new-tokens", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("images     role") && text.contains(PRIOR) && text.contains(CURRENT), "{text}");
}

#[test]
fn probe_with_a_prior_splits_gradcam_per_image() {
    let report = probe_json(&["--gradcam"]);
    let images = report["images"].as_array().unwrap();
    let mut total = 0.0;
    for i in images {
        let methods = i["methods"].as_array().expect("each image has the other methods' maps");
        let cam = methods.iter().find(|m| m["provenance"]["method"] == "gradcam").expect("a Grad-CAM map per image");
        assert_normalised_on_its_grid(&format!("{} gradcam", i["role"]), cam);
        assert_eq!((cam["h"].clone(), cam["w"].clone()), (i["h"].clone(), i["w"].clone()), "Grad-CAM on the image's grid");
        total += f(&cam["image_mass_share"]);
    }
    assert!((total - 1.0).abs() < 1e-6, "Grad-CAM shares sum to {total}");
    let trust = &report["trust"];
    assert!(trust["maps"].as_array().unwrap().iter().any(|m| m["provenance"]["method"] == "gradcam"), "the current image's Grad-CAM");
}

#[test]
fn probe_refuses_a_prior_for_a_single_image_model_and_a_missing_prior() {
    let scratch = Scratch::new("probe-images-errors");
    let models = write_demo_models(&scratch.path().join("models")).unwrap();
    let (name, dir) = models.iter().find(|(n, _)| n.contains("llava")).expect("the demo's LLaVA");
    let out = probe(dir, &[]);
    assert_eq!(out.status.code(), Some(2), "an input error");
    let err = String::from_utf8_lossy(&out.stderr);
    let model_name = dir.file_name().unwrap().to_string_lossy();
    assert!(err.contains("--prior") && err.contains(&*model_name) && err.contains("takes one image"), "{name}: {err}");

    let (model, current) = (model().display().to_string(), image(CURRENT));
    let missing = scratch.path().join("no_such_prior.png").display().to_string();
    let out = radlens(&["probe", "--model", &model, "--image", &current, "--prior", &missing, "--question", QUESTION]);
    assert_eq!(out.status.code(), Some(2), "an input error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--prior") && err.contains("no_such_prior.png"), "{err}");

    // Flags the several images do not combine with are refused, not ignored.
    let out = radlens(&["probe", "--model", &model, "--image", &current, "--prior", &current, "--question", QUESTION, "--null-edits"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--null-edits") && err.contains("--prior"), "{err}");
}

#[test]
fn probe_with_a_prior_splits_the_relative_and_occlusion_maps_per_image() {
    let report = probe_json(&["--sinks", "--occlusion", "--occlusion-grid", "4"]);
    let images = report["images"].as_array().unwrap();
    for method in ["relative", "occlusion"] {
        let mut total = 0.0;
        for i in images {
            let m = i["methods"].as_array().unwrap().iter().find(|m| m["provenance"]["method"] == method);
            let m = m.unwrap_or_else(|| panic!("{} has no {method} map: {}", i["role"], report["trust"]["notes"]));
            assert_normalised_on_its_grid(&format!("{} {method}", i["role"]), m);
            total += f(&m["image_mass_share"]);
        }
        assert!((total - 1.0).abs() < 1e-6, "{method} shares sum to {total}");
    }
    assert!(report["trust"]["sinks"].is_object(), "sinks on the current image's map");
    assert!(report["grounding"]["occlusion"].is_object(), "the current image's occlusion support");
}
