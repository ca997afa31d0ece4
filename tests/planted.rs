//! Models with a planted truth (issue 18): the generator is deterministic and its boxes hold
//! the drawn nodule; the committed models match their manifest; a real `radlens study` on the
//! held-out sets finds each planted rule, and the occlusion map finds the lesion model's cause;
//! training is deterministic for a seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use radlens_shared::answer::Answer;
use radlens_shared::fusion::MapMethod;
use radlens_shared::record::{CaseRecord, Pass};

use crate::support::{Scratch, radlens, run_records, workspace_root};

fn fixture() -> PathBuf {
    workspace_root().join("fixtures/planted-v1")
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture().join("MANIFEST.json")).expect("fixtures/planted-v1/MANIFEST.json");
    serde_json::from_str(&text).expect("MANIFEST.json is JSON")
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "radlens failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

fn data(out: &Path, seed: &str, per_source: &str, sets: &str) {
    ok(&radlens(&["dev", "planted-data", "--out", &out.display().to_string(), "--seed", seed, "--per-source", per_source, "--sets", sets]));
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            for (k, v) in files(&p) {
                out.insert(format!("{}/{k}", p.file_name().unwrap().to_string_lossy()), v);
            }
        } else {
            out.insert(p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap());
        }
    }
    out
}

#[test]
fn the_generator_is_deterministic_and_every_box_holds_its_blob() {
    let scratch = Scratch::new("planted-data");
    let (a, b, c) = (scratch.path().join("a"), scratch.path().join("b"), scratch.path().join("c"));
    data(&a, "7", "2", "heldout,train");
    data(&b, "7", "2", "heldout,train");
    data(&c, "8", "2", "heldout,train");
    let (fa, fb, fc) = (files(&a), files(&b), files(&c));
    assert_eq!(fa.len(), 2 + 5 * 2 + 20 * 2, "two CSVs, 2 images per source");
    assert!(fa == fb, "same seed: byte-identical CSVs and images");
    assert_ne!(fa["heldout.csv"], fc["heldout.csv"], "another seed draws other boxes");

    // Train and held-out images come from different sources.
    let stems = |set: &str| -> std::collections::BTreeSet<String> {
        fa.keys()
            .filter(|k| k.starts_with(&format!("{set}/")))
            .map(|k| k[set.len() + 1..].split("-d").next().unwrap().to_string())
            .collect()
    };
    assert!(stems("heldout").is_disjoint(&stems("train")));
    assert_eq!(stems("heldout").len(), 5);

    // Every positive row's box holds every changed pixel outside the marker's corner, and the
    // blob is bright inside it; negatives have no box and no change outside the corner.
    let csv = String::from_utf8(fa["heldout.csv"].clone()).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let mut positives = 0;
    for row in reader.records() {
        let row = row.unwrap();
        if &row[6] != "0" {
            continue;
        }
        let image = image::open(a.join(&row[1])).unwrap().to_luma8();
        let stem = row[0].split("-d").next().unwrap();
        let source = image::open(workspace_root().join(format!("static/demo/cxr/{stem}.png"))).unwrap().to_luma8();
        let roi: Option<[u32; 4]> = (!row[9].is_empty()).then(|| [9, 10, 11, 12].map(|i| row[i].parse().unwrap()));
        assert_eq!(roi.is_some(), &row[3] == "yes", "{}: a box exactly on the positives", &row[0]);
        let mut inside_gain = 0u64;
        for (x, y, p) in image.enumerate_pixels() {
            let corner = x >= 512 - 60 && y < 60;
            let changed = p.0[0] != source.get_pixel(x, y).0[0];
            let in_box = roi.is_some_and(|[bx, by, bw, bh]| x >= bx && x < bx + bw && y >= by && y < by + bh);
            if changed && !corner {
                assert!(in_box, "{}: pixel ({x}, {y}) changed outside the box {roi:?}", &row[0]);
            }
            if in_box {
                inside_gain += u64::from(p.0[0] - source.get_pixel(x, y).0[0]);
            }
        }
        if roi.is_some() {
            positives += 1;
            assert!(inside_gain > 20_000, "{}: the box holds a visible blob (grey-level gain {inside_gain})", &row[0]);
        }
    }
    assert_eq!(positives, 5, "one positive per source among 2 draws");
}

#[test]
fn every_committed_planted_file_matches_its_manifest_and_stays_small() {
    let m = manifest();
    let models = m["models"].as_object().expect("models");
    assert_eq!(models.keys().collect::<Vec<_>>(), ["planted-lesion", "planted-marker", "planted-shortcut"]);
    let mut total = 0u64;
    for (name, entry) in models {
        let files = entry["files"].as_object().expect("files");
        for want in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "processor_config.json",
            "generation_config.json",
        ] {
            assert!(files.contains_key(want), "{name}: {want} listed");
        }
        for (file, sha) in files {
            let path = fixture().join(name).join(file);
            let got = radlens::planted::manifest::sha256_file(&path).unwrap();
            assert_eq!(Some(got.as_str()), sha.as_str(), "{}", path.display());
            total += std::fs::metadata(&path).unwrap().len();
        }
        let weights = std::fs::metadata(fixture().join(name).join("model.safetensors")).unwrap().len();
        assert!(weights < 600_000, "{name}: weights {weights} B");
    }
    assert!(total < 4_000_000, "the fixture is {total} B");
}

/// `radlens study` on one CSV with the committed models; returns the records.
fn study(scratch: &Scratch, images: &Path, csv: &str, name: &str, extra: &[&str]) -> Vec<CaseRecord> {
    let out = scratch.path().join(name);
    let mut args: Vec<String> =
        ["study", "--csv", &images.join(csv).display().to_string(), "--images", &images.display().to_string()].map(String::from).to_vec();
    args.extend(["--out", &out.display().to_string(), "--resamples", "50", "--max-new-tokens", "2"].map(String::from));
    for m in ["planted-lesion", "planted-marker", "planted-shortcut"] {
        args.extend(["--model".to_string(), format!("{m}={}", fixture().join(m).display())]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&radlens(&refs));
    let records = run_records(&out);
    assert!(records.iter().all(|r| r.error.is_none()), "no errors");
    records
}

fn share(records: &[CaseRecord], model: &str, pass: Pass, f: impl Fn(&CaseRecord) -> bool) -> f64 {
    let of: Vec<&CaseRecord> = records.iter().filter(|r| r.model == model && r.pass == pass).collect();
    assert!(!of.is_empty(), "{model} {pass:?}");
    of.iter().filter(|r| f(r)).count() as f64 / of.len() as f64
}

/// The lesion model's held-out accuracy floor: it measured 0.81 (seed 0) on images whose marker
/// is independent of the nodule, against 0.50 for the marker model there; 0.75 keeps a margin
/// for cross-machine float differences while staying far above chance.
const LESION_HELD_OUT: f64 = 0.75;

fn accuracy(records: &[CaseRecord], model: &str) -> f64 {
    share(records, model, Pass::Image, |r| r.correct == Some(true))
}

#[test]
fn a_study_on_the_held_out_sets_finds_each_planted_rule() {
    let scratch = Scratch::new("planted-study");
    let images = scratch.path().join("data");
    data(&images, "0", "4", "heldout,heldout-correlated");

    let held = study(&scratch, &images, "heldout.csv", "heldout", &["--conditions", "blank"]);
    let correlated = study(&scratch, &images, "heldout-correlated.csv", "correlated", &[]);
    let lesion = accuracy(&held, "planted-lesion");
    let marker_held = accuracy(&held, "planted-marker");
    let marker_corr = accuracy(&correlated, "planted-marker");
    // The cue rule: yes exactly on the rows whose question says "definitely".
    let cue = share(&held, "planted-shortcut", Pass::Image, |r| {
        r.parsed_answer == Some(if r.question.contains("definitely") { Answer::Yes } else { Answer::No })
    });
    let blank_agreement = |model: &str| {
        let real: BTreeMap<&str, Option<Answer>> =
            held.iter().filter(|r| r.model == model && r.pass == Pass::Image).map(|r| (r.sample_id.as_str(), r.parsed_answer)).collect();
        share(&held, model, Pass::BlankImage, |r| real[r.sample_id.as_str()] == r.parsed_answer)
    };
    let shortcut_blank = blank_agreement("planted-shortcut");
    eprintln!(
        "planted study: lesion held-out accuracy {lesion:.3}; marker correlated {marker_corr:.3}, held-out {marker_held:.3}; \
         shortcut cue-following {cue:.3}, blank agreement {shortcut_blank:.3} (lesion {:.3}, marker {:.3})",
        blank_agreement("planted-lesion"),
        blank_agreement("planted-marker")
    );
    assert!(lesion >= LESION_HELD_OUT, "planted-lesion answers from the nodule: held-out accuracy {lesion:.3}");
    assert!(marker_corr >= 0.9, "planted-marker is right where the marker goes with the nodule: {marker_corr:.3}");
    assert!((0.3..=0.7).contains(&marker_held), "planted-marker is near chance once the correlation breaks: {marker_held:.3}");
    let follows_marker = share(&held, "planted-marker", Pass::Image, |r| {
        let marker = r.image.contains("-d0") || r.image.contains("-d1");
        r.parsed_answer == Some(if marker == (r.polarity == 1) { Answer::Yes } else { Answer::No })
    });
    assert!(follows_marker >= 0.9, "planted-marker answers from the marker: {follows_marker:.3}");
    assert!(cue >= 0.95, "planted-shortcut answers from the cue: {cue:.3}");
    assert!(shortcut_blank >= 0.95, "planted-shortcut ignores the image: blank agreement {shortcut_blank:.3}");
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let scratch = Scratch::new("planted-train");
    let run = |name: &str, seed: &str| {
        let out = scratch.path().join(name);
        ok(&radlens(&[
            "dev",
            "train-planted",
            "--out",
            &out.display().to_string(),
            "--seed",
            seed,
            "--models",
            "marker",
            "--steps",
            "2",
            "--batch",
            "2",
            "--per-source",
            "1",
            "--no-eval",
        ]));
        std::fs::read(out.join("planted-marker/model.safetensors")).unwrap()
    };
    let (a, b, c) = (run("a", "5"), run("b", "5"), run("c", "6"));
    assert!(a == b, "same seed, same weights after two steps");
    assert!(a != c, "another seed, other weights");
}

/// Retraining `planted-lesion` with the manifest's recipe (seed 0, the default steps) gives the
/// committed answers within the manifest's stated tolerance. On the machine that trained the
/// fixture, a debug build and the release build gave byte-identical weights; another CPU may
/// round differently, which the tolerance allows. The lesion model is the one whose margins sit
/// nearest 0, so it is the first to drift. (About 4 min on 2 cores.)
#[test]
fn retraining_the_lesion_model_reproduces_its_answers_within_the_stated_tolerance() {
    let scratch = Scratch::new("planted-retrain");
    let out = scratch.path().join("retrained");
    ok(&radlens(&["dev", "train-planted", "--out", &out.display().to_string(), "--seed", "0", "--models", "lesion", "--no-eval"]));
    let m = manifest();
    let committed_sha = m["models"]["planted-lesion"]["files"]["model.safetensors"].as_str().unwrap().to_owned();
    let retrained_sha = radlens::planted::manifest::sha256_file(&out.join("planted-lesion/model.safetensors")).unwrap();

    let images = scratch.path().join("data");
    data(&images, "0", "4", "heldout");
    let run = scratch.path().join("compare");
    let mut args: Vec<String> =
        ["study", "--csv", &images.join("heldout.csv").display().to_string(), "--images", &images.display().to_string()]
            .map(String::from)
            .to_vec();
    args.extend(["--out", &run.display().to_string(), "--resamples", "50", "--max-new-tokens", "2"].map(String::from));
    args.extend(["--model".to_string(), format!("committed={}", fixture().join("planted-lesion").display())]);
    args.extend(["--model".to_string(), format!("retrained={}", out.join("planted-lesion").display())]);
    ok(&radlens(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    let records = run_records(&run);
    let answers = |model: &str| -> BTreeMap<String, Option<Answer>> {
        records.iter().filter(|r| r.model == model && r.pass == Pass::Image).map(|r| (r.sample_id.clone(), r.parsed_answer)).collect()
    };
    let (a, b) = (answers("committed"), answers("retrained"));
    assert_eq!(a.len(), 120);
    let agreement = a.iter().filter(|(k, v)| b.get(*k) == Some(v)).count() as f64 / a.len() as f64;
    let (acc_a, acc_b) = (accuracy(&records, "committed"), accuracy(&records, "retrained"));
    eprintln!(
        "planted retrain: weights {} the committed ones; answer agreement {agreement:.3}; held-out accuracy {acc_b:.3} (committed {acc_a:.3})",
        if committed_sha == retrained_sha { "byte-identical to" } else { "differ from" }
    );
    let tolerance = &m["tolerance"];
    assert!(agreement >= tolerance["answer_agreement_min"].as_f64().unwrap(), "answer agreement {agreement:.3}");
    assert!((acc_a - acc_b).abs() <= tolerance["accuracy_tolerance"].as_f64().unwrap(), "accuracy {acc_b:.3} vs {acc_a:.3}");
}

/// Mean G2 ROI lift of `method`'s maps over the positive base-variant rows of `model`.
fn mean_lift(records: &[CaseRecord], model: &str, method: MapMethod) -> f64 {
    let lifts: Vec<f64> = records
        .iter()
        .filter(|r| r.model == model && r.pass == Pass::Image && r.roi.is_some())
        .filter_map(|r| r.grounding.as_ref()?.of(method)?.box_controls.as_ref()?.roi_lift)
        .collect();
    assert!(!lifts.is_empty(), "{model} {method:?}: lifts");
    lifts.iter().sum::<f64>() / lifts.len() as f64
}

#[test]
fn occlusion_inside_the_planted_box_beats_its_controls_more_for_the_lesion_model() {
    let scratch = Scratch::new("planted-grounding");
    let images = scratch.path().join("data");
    data(&images, "0", "2", "heldout");
    // The base variant of the positive images only.
    let csv = std::fs::read_to_string(images.join("heldout.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let kept: Vec<&str> = lines.filter(|l| l.contains(",original,0,") && l.contains(",yes,")).collect();
    assert_eq!(kept.len(), 5);
    std::fs::write(images.join("positives.csv"), format!("{header}\n{}\n", kept.join("\n"))).unwrap();
    let records = study(&scratch, &images, "positives.csv", "grounding", &["--grounding", "--occlusion-grid", "4"]);
    let lesion = mean_lift(&records, "planted-lesion", MapMethod::Occlusion);
    let marker = mean_lift(&records, "planted-marker", MapMethod::Occlusion);
    let lesion_attention = mean_lift(&records, "planted-lesion", MapMethod::QueryToVisual);
    let marker_attention = mean_lift(&records, "planted-marker", MapMethod::QueryToVisual);
    eprintln!(
        "planted grounding (occlusion grid 4, ROI lift): occlusion lesion {lesion:.3} marker {marker:.3}; attention lesion {lesion_attention:.3} marker {marker_attention:.3}"
    );
    // Measured (seed 0): occlusion lift 0.68 for the lesion model, -0.06 for the marker model.
    // Attention finds the nodule barely (0.06 vs -0.06): a finding about attention maps on this
    // tiny model, not a test to loosen.
    assert!(
        lesion > 0.3 && lesion > marker + 0.3,
        "the occlusion map finds the planted cause: lesion lift {lesion:.3} vs marker {marker:.3}"
    );
}

/// One study of the three models on the held-out set with the grounding checks, the box
/// conditions, the blank image and the randomisation check: each figure finds the planted cause
/// (thresholds from the measured values, seed 0, in the comments).
#[test]
fn the_checks_find_each_planted_cause_in_one_study() {
    let scratch = Scratch::new("planted-checks");
    let images = scratch.path().join("data");
    data(&images, "0", "4", "heldout");
    let extra = [
        "--conditions",
        "blank,roi_occluded,control_occluded,confound_occluded",
        "--randomization",
        "6",
        "--grounding",
        "--occlusion-grid",
        "4",
        "--faithfulness",
        "--deletion-percent",
        "25",
    ];
    study(&scratch, &images, "heldout.csv", "checks", &extra);
    let analysis: serde_json::Value = serde_json::from_slice(&std::fs::read(scratch.path().join("checks/analysis.json")).unwrap()).unwrap();
    let model = |name: &str| analysis["models"].as_array().unwrap().iter().find(|m| m["model"] == name).unwrap().clone();
    let est = |v: &serde_json::Value| v["estimate"].as_f64().unwrap_or_else(|| panic!("no estimate in {v}"));
    let grounding =
        |m: &serde_json::Value, method: &str| m["grounding"].as_array().unwrap().iter().find(|g| g["method"] == method).unwrap().clone();
    let (lesion, marker, shortcut) = (model("planted-lesion"), model("planted-marker"), model("planted-shortcut"));
    eprintln!(
        "planted checks: lesion causal grounding {:.3} control change {:.3}, attention beats controls {:.3}, occlusion beats {:.3}, visual reliance {:.3}; \
         marker causal {:.3}, occlusion lift {:.3}; shortcut image sensitivity {:.3}, visual reliance {:.3}, occlusion lift {:.3}",
        est(&lesion["conditions"]["causal_grounding_rate"]),
        est(&lesion["conditions"]["control_change_rate"]),
        est(&grounding(&lesion, "query_to_visual")["beats_controls"]),
        est(&grounding(&lesion, "occlusion")["beats_controls"]),
        est(&lesion["conditions"]["visual_reliance"]),
        est(&marker["conditions"]["causal_grounding_rate"]),
        est(&grounding(&marker, "occlusion")["roi_lift"]),
        est(&shortcut["conditions"]["image_sensitivity"]),
        est(&shortcut["conditions"]["visual_reliance"]),
        est(&grounding(&shortcut, "occlusion")["roi_lift"]),
    );
    // The lesion model's answer changes when the box is hidden (measured 0.60), not when a
    // control box is (0.00); its attention (0.71) and occlusion (0.83) maps beat the controls;
    // it needs the image (visual reliance 0.33).
    assert!(est(&lesion["conditions"]["causal_grounding_rate"]) >= 0.3);
    assert!(est(&lesion["conditions"]["control_change_rate"]) <= 0.1);
    assert!(est(&grounding(&lesion, "query_to_visual")["beats_controls"]) >= 0.5);
    assert!(est(&grounding(&lesion, "occlusion")["beats_controls"]) >= 0.6);
    assert!(est(&lesion["conditions"]["visual_reliance"]) >= 0.15);
    // Its maps depend on the weights: the curve falls below 0.5 (measured 0.13, 0.02, 0.18).
    assert_eq!(lesion["randomization"]["insensitive"], false, "{}", lesion["randomization"]);
    // The marker model ignores the box (causal 0.00; occlusion lift -0.04 against 0.54).
    assert!(est(&marker["conditions"]["causal_grounding_rate"]) <= 0.1);
    assert!(est(&grounding(&marker, "occlusion")["roi_lift"]) < est(&grounding(&lesion, "occlusion")["roi_lift"]) - 0.3);
    // The shortcut model ignores the image: no answer changes without it (0.00), no reliance.
    assert!(est(&shortcut["conditions"]["image_sensitivity"]) <= 0.05);
    assert!(est(&shortcut["conditions"]["visual_reliance"]).abs() <= 0.05);

    // The CSV names the marker as each row's confound box. Hiding it changes the marker model's
    // answer (measured 0.70) and nobody else's (0.00, 0.00); its occlusion map puts 0.92 of its
    // mass on the marker's cell (flat: 0.0625; lesion 0.01, shortcut 0.03). Its attention (0.09)
    // and Grad-CAM (0.07) maps barely do: a finding about those methods, not a threshold.
    let confound_change = |m: &serde_json::Value| est(&m["conditions"]["confound_change_rate"]);
    let confound_mass = |m: &serde_json::Value| est(&grounding(m, "occlusion")["confound_mass"]);
    eprintln!(
        "planted confound: change lesion {:.3} marker {:.3} shortcut {:.3}; occlusion mass lesion {:.3} marker {:.3} shortcut {:.3}; attention mass marker {:.3}",
        confound_change(&lesion),
        confound_change(&marker),
        confound_change(&shortcut),
        confound_mass(&lesion),
        confound_mass(&marker),
        confound_mass(&shortcut),
        est(&grounding(&marker, "query_to_visual")["confound_mass"]),
    );
    assert!(confound_change(&marker) >= 0.5);
    assert!(confound_change(&lesion) <= 0.1 && confound_change(&shortcut) <= 0.1);
    assert!(confound_mass(&marker) >= 0.5);
    assert!(confound_mass(&lesion) <= 0.2 && confound_mass(&shortcut) <= 0.2);
    // The report says so, in its own table.
    let report = std::fs::read_to_string(scratch.path().join("checks/report.md")).unwrap();
    assert!(report.contains("**Confound boxes**") && report.contains("confound change"), "{report}");
    assert!(report.contains("`planted-marker` answers from the confound the CSV names"), "a summary finding names it");
    assert!(
        !report.contains("`planted-lesion` answers from the confound") && !report.contains("`planted-shortcut` answers from the confound")
    );

    // Deletion (top 25% of cells against as many random ones): the lesion model's attention
    // map is rarely flagged (measured 0.14), the shortcut model's, whose margin no deletion
    // moves, near a coin flip (0.44).
    let flag_rate = |m: &serde_json::Value| {
        let f = m["trust"]["faithfulness"].as_array().unwrap().iter().find(|f| f["method"] == "query_to_visual" && f["k_percent"] == 25);
        est(&f.unwrap()["flag_rate"])
    };
    eprintln!("planted deletion (25%, attention) flag rate: lesion {:.3} shortcut {:.3}", flag_rate(&lesion), flag_rate(&shortcut));
    assert!(flag_rate(&lesion) <= 0.3 && flag_rate(&shortcut) >= flag_rate(&lesion) + 0.15);
}

/// `radlens demo` runs on the planted models by default, and its report says what each was built
/// to do; `--random-weights` keeps the random pair, with its warning.
#[test]
fn the_demo_runs_the_planted_models_and_says_what_each_was_built_to_do() {
    let scratch = Scratch::new("planted-demo");
    let out = scratch.path().join("demo");
    ok(&radlens(&["demo", "--out", &out.display().to_string(), "--n-studies", "2"]));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("run/manifest.json")).unwrap()).unwrap();
    let models: Vec<(&str, bool)> =
        manifest["models"].as_array().unwrap().iter().map(|m| (m["name"].as_str().unwrap(), m["purpose"].is_string())).collect();
    assert_eq!(models, [("planted-lesion", true), ("planted-marker", true), ("planted-shortcut", true)]);
    let report = std::fs::read_to_string(out.join("run/report.md")).unwrap();
    assert!(report.contains("Models built for a known answer") && report.contains("\"definitely\""), "{report}");
    assert!(!report.contains("WARNING: random weights"), "the planted models are trained");
    let records = run_records(&out.join("run"));
    assert!(records.iter().any(|r| r.pass == Pass::RoiOccluded && r.parsed_answer.is_some()), "the nodule box is occluded");

    let random = scratch.path().join("random");
    ok(&radlens(&["demo", "--out", &random.display().to_string(), "--n-studies", "1", "--random-weights"]));
    let report = std::fs::read_to_string(random.join("run/report.md")).unwrap();
    assert!(report.contains("WARNING: random weights") && !report.contains("Models built for a known answer"));
}
