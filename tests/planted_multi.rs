//! Multi-image models with a planted truth (issue 21): on held-out longitudinal pairs, a study
//! with `prior_blank` and `prior_swap` and per-image occlusion tells the model that reads the
//! prior (`planted-change`) from the one that does not (`planted-current`), and the report's
//! summary names each accordingly. The thresholds come from the committed models' measured
//! figures (README, "Planted truth"), with margins for cross-machine float differences.

use std::path::{Path, PathBuf};

use radlens_shared::fusion::MapMethod;
use radlens_shared::record::{CaseRecord, Pass};

use crate::support::{Scratch, radlens, run_records, workspace_root};

const CHANGE: &str = "planted-change";
const CURRENT: &str = "planted-current";

fn fixture() -> PathBuf {
    workspace_root().join("fixtures/planted-multi-v1")
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "radlens failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_committed_multi_image_file_matches_its_manifest_and_stays_small() {
    let text = std::fs::read_to_string(fixture().join("MANIFEST.json")).expect("fixtures/planted-multi-v1/MANIFEST.json");
    let m: serde_json::Value = serde_json::from_str(&text).expect("MANIFEST.json is JSON");
    let models = m["models"].as_object().expect("models");
    assert_eq!(models.keys().collect::<Vec<_>>(), [CHANGE, CURRENT]);
    for (name, entry) in models {
        let files = entry["files"].as_object().expect("files");
        for want in ["config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", "processor_config.json", "PURPOSE"] {
            assert!(files.contains_key(want), "{name}: {want} listed");
        }
        for (file, sha) in files {
            let path = fixture().join(name).join(file);
            let got = radlens::planted::manifest::sha256_file(&path).unwrap();
            assert_eq!(Some(got.as_str()), sha.as_str(), "{}", path.display());
        }
        let weights = std::fs::metadata(fixture().join(name).join("model.safetensors")).unwrap().len();
        assert!(weights < 600_000, "{name}: weights {weights} B");
    }
}

/// One study of both committed models on the held-out pairs (seed 0, 8 pairs per held-out
/// source: 40 pairs, 200 rows per model).
fn study(scratch: &Scratch) -> (PathBuf, Vec<CaseRecord>) {
    let data = scratch.path().join("data");
    ok(&radlens(&["dev", "planted-pairs", "--out", &data.display().to_string(), "--seed", "0", "--per-source", "8"]));
    let out = scratch.path().join("run");
    let mut args: Vec<String> = ["study", "--csv", &data.join("pairs-heldout.csv").display().to_string()].map(String::from).to_vec();
    args.extend(["--images", &data.display().to_string(), "--out", &out.display().to_string()].map(String::from));
    args.extend(["--resamples", "500", "--max-new-tokens", "2", "--conditions", "prior_blank,prior_swap"].map(String::from));
    args.extend(["--grounding", "--occlusion-grid", "4"].map(String::from));
    for m in [CHANGE, CURRENT] {
        args.extend(["--model".to_string(), format!("{m}={}", fixture().join(m).display())]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&radlens(&refs));
    let records = run_records(&out);
    assert!(records.iter().all(|r| r.error.is_none()), "no errors");
    (out, records)
}

fn image_records<'a>(records: &'a [CaseRecord], model: &str) -> Vec<&'a CaseRecord> {
    let of: Vec<&CaseRecord> = records.iter().filter(|r| r.model == model && r.pass == Pass::Image).collect();
    assert_eq!(of.len(), 200, "{model}: 40 pairs x 5 questions");
    of
}

fn accuracy(records: &[CaseRecord], model: &str) -> f64 {
    let of = image_records(records, model);
    of.iter().filter(|r| r.correct == Some(true)).count() as f64 / of.len() as f64
}

/// The mean share of the occlusion map's mass on the prior image.
fn prior_occlusion_share(records: &[CaseRecord], model: &str) -> f64 {
    let shares: Vec<f64> = image_records(records, model)
        .iter()
        .map(|r| {
            let prior = r.images.iter().find(|i| i.role == "prior").expect("the prior's map");
            let m = prior.methods.iter().find(|m| m.provenance.method == MapMethod::Occlusion).expect("the prior's occlusion map");
            m.image_mass_share
        })
        .collect();
    shares.iter().sum::<f64>() / shares.len() as f64
}

fn rate(analysis: &serde_json::Value, model: &str, name: &str) -> (f64, f64, f64) {
    let m = analysis["models"].as_array().unwrap().iter().find(|m| m["model"] == model).unwrap_or_else(|| panic!("{model} analysed"));
    let i = &m["conditions"][name];
    let f = |k: &str| i[k].as_f64().unwrap_or_else(|| panic!("{model} {name}.{k}: {i}"));
    (f("estimate"), f("lo"), f("hi"))
}

/// Measured on the committed models (seed 0, README "Planted truth"): planted-change 0.92
/// held-out accuracy; planted-current 0.65 (it follows its own rule on 0.90 of the rows, and is
/// wrong by design wherever the nodule was already in the prior). The floors keep a margin of
/// about 0.07 and more for cross-machine float differences.
const CHANGE_ACCURACY_MIN: f64 = 0.85;
const CURRENT_ACCURACY_MAX: f64 = 0.80;
/// The change model's prior-condition rates measured 0.305 (`prior_blank`: the black prior
/// flips the pairs with the nodule at both visits) and 0.22 (`prior_swap`); the current-image
/// model's measured 0 for both.
const CHANGE_PRIOR_RATE_MIN: f64 = 0.12;
const CURRENT_PRIOR_RATE_MAX: f64 = 0.02;
/// Occlusion's mean share of the mass on the prior image measured 0.57 (change) and 0.11
/// (current: occluding the prior moves its margin a little, never its answer).
const CHANGE_PRIOR_OCCLUSION_MIN: f64 = 0.40;
const CURRENT_PRIOR_OCCLUSION_MAX: f64 = 0.20;

#[test]
fn the_prior_conditions_and_per_image_occlusion_tell_the_model_that_reads_the_prior() {
    let scratch = Scratch::new("planted-multi-study");
    let (out, records) = study(&scratch);

    let (change_acc, current_acc) = (accuracy(&records, CHANGE), accuracy(&records, CURRENT));
    assert!(change_acc >= CHANGE_ACCURACY_MIN, "{CHANGE}: held-out accuracy {change_acc:.3}");
    assert!(current_acc <= CURRENT_ACCURACY_MAX, "{CURRENT}: held-out accuracy {current_acc:.3} (it cannot know the prior)");

    let analysis: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("analysis.json")).unwrap()).unwrap();
    for name in ["prior_blank_change_rate", "prior_swap_change_rate"] {
        let (est, lo, _) = rate(&analysis, CHANGE, name);
        let (cur, _, cur_hi) = rate(&analysis, CURRENT, name);
        assert!(est >= CHANGE_PRIOR_RATE_MIN && lo > 0.0, "{CHANGE} {name}: {est:.3} (lo {lo:.3})");
        assert!(cur <= CURRENT_PRIOR_RATE_MAX, "{CURRENT} {name}: {cur:.3}");
        assert!(lo > cur_hi, "{name}: {CHANGE}'s interval (lo {lo:.3}) is clear of {CURRENT}'s (hi {cur_hi:.3})");
    }

    let (change_occ, current_occ) = (prior_occlusion_share(&records, CHANGE), prior_occlusion_share(&records, CURRENT));
    assert!(change_occ >= CHANGE_PRIOR_OCCLUSION_MIN, "{CHANGE}: occlusion share on the prior {change_occ:.3}");
    assert!(current_occ <= CURRENT_PRIOR_OCCLUSION_MAX, "{CURRENT}: occlusion share on the prior {current_occ:.3}");

    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let findings: Vec<&str> = report.lines().filter(|l| l.starts_with("- **Finding:**")).collect();
    let says = |model: &str, what: &str| findings.iter().any(|l| l.contains(&format!("`{model}`")) && l.contains(what));
    assert!(says(CHANGE, "reads the prior image"), "the summary names {CHANGE} as reading the prior:\n{}", findings.join("\n"));
    assert!(!says(CURRENT, "reads the prior image"), "{CURRENT} is not said to read the prior:\n{}", findings.join("\n"));
    assert!(says(CURRENT, "nothing shows that it reads the prior"), "the summary says so of {CURRENT}:\n{}", findings.join("\n"));
}

#[test]
fn the_pair_generator_is_deterministic_and_balanced() {
    let scratch = Scratch::new("planted-pairs");
    let write = |dir: &Path, seed: &str| {
        ok(&radlens(&["dev", "planted-pairs", "--out", &dir.display().to_string(), "--seed", seed, "--per-source", "4"]));
        std::fs::read_to_string(dir.join("pairs-heldout.csv")).unwrap()
    };
    let (a, b, c) = (scratch.path().join("a"), scratch.path().join("b"), scratch.path().join("c"));
    let (csv_a, csv_b, csv_c) = (write(&a, "3"), write(&b, "3"), write(&c, "4"));
    assert_eq!(csv_a, csv_b, "same seed, same CSV");
    assert_ne!(csv_a, csv_c, "another seed draws other boxes");
    let mut reader = csv::Reader::from_reader(csv_a.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 5 * 4 * 5, "5 sources x 4 pairs x 5 questions");
    let (mut yes, mut boxes) = (0, 0);
    for row in rows.iter().filter(|r| &r[8] == "0") {
        let current = image::open(a.join(&row[2])).unwrap().to_luma8();
        let prior = image::open(a.join(&row[3])).unwrap().to_luma8();
        assert_ne!(current, prior, "{}: the visits differ", &row[0]);
        if !row[11].is_empty() {
            boxes += 1;
            let [x, y, w, h]: [u32; 4] = [11, 12, 13, 14].map(|i| row[i].parse().unwrap());
            assert!(w > 0 && h > 0 && x + w <= 512 && y + h <= 512, "{}: the box lies in the image", &row[0]);
        }
        yes += usize::from(&row[5] == "yes");
    }
    assert_eq!(boxes, 10, "the current image holds the nodule in half the pairs");
    assert_eq!(yes, 5, "a new nodule in a quarter of the pairs");
}

/// A full retrain takes about 20 min (README); two steps show that training is a function of
/// the seed, and that the saved directory loads through `radlens study`'s loader (the eval).
#[test]
fn multi_image_training_is_deterministic_for_a_seed() {
    let scratch = Scratch::new("planted-multi-train");
    let run = |name: &str, seed: &str| {
        let out = scratch.path().join(name);
        let out_s = out.display().to_string();
        let args = ["dev", "train-planted-multi", "--out", &out_s, "--seed", seed, "--models", "change", "--steps", "2", "--batch", "2"];
        ok(&radlens(&[&args[..], &["--per-source", "1", "--heldout-per-source", "1"]].concat()));
        let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("MANIFEST.json")).unwrap()).unwrap();
        assert_eq!(manifest["models"][CHANGE]["eval"]["heldout"]["rows"], 25, "5 held-out pairs x 5 questions answered");
        std::fs::read(out.join(CHANGE).join("model.safetensors")).unwrap()
    };
    let (a, b, c) = (run("a", "5"), run("b", "5"), run("c", "6"));
    assert!(a == b, "same seed, same weights after two steps");
    assert!(a != c, "another seed, other weights");
}
