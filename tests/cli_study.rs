//! `radlens study` end to end on the bundled demo data with the demo's tiny models: prefix
//! sharing changes nothing, a killed run resumes without losing or duplicating a record, bad
//! rows become error records, and a run directory is never mixed with another configuration.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use radlens::commands::demo::write_demo_models;
use radlens::study::run_dir::RunDir;
use radlens_shared::record::CaseRecord;
use serde_json::Value;

use crate::support::{Scratch, radlens, radlens_bin, workspace_root};

fn demo_data() -> PathBuf {
    workspace_root().join("static/demo")
}

fn study_args(models: &[(String, PathBuf)], out: &Path, extra: &[&str]) -> Vec<String> {
    let data = demo_data();
    let mut args: Vec<String> = vec![
        "study".into(),
        "--csv".into(),
        data.join("demo-study.csv").display().to_string(),
        "--images".into(),
        data.join("cxr").display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--resamples".into(),
        "200".into(),
        "--max-new-tokens".into(),
        "3".into(),
    ];
    for (name, dir) in models {
        args.push("--model".into());
        args.push(format!("{name}={}", dir.display()));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run_ok(args: &[String]) {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = radlens(&refs);
    assert!(out.status.success(), "radlens {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

fn records(dir: &Path) -> Vec<CaseRecord> {
    crate::support::run_records(dir)
}

fn by_key(records: &[CaseRecord]) -> BTreeMap<String, &CaseRecord> {
    records.iter().map(|r| (format!("{}|{}|{:?}", r.sample_id, r.model, r.pass), r)).collect()
}

/// The analysis without what depends on timing or on the directory's name.
fn analysis_without_latency(dir: &Path) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|k, _| !k.contains("latency") && !k.ends_with("_ms") && k != "run_id");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("analysis.json")).unwrap()).unwrap();
    strip(&mut v);
    v
}

#[test]
fn prefix_sharing_gives_the_same_records_as_full_prefills() {
    let scratch = Scratch::new("study-prefix");
    let models = write_demo_models(&scratch.path().join("models")).unwrap();
    let (shared, full) = (scratch.path().join("shared"), scratch.path().join("full"));
    run_ok(&study_args(&models, &shared, &["--n-studies", "3"]));
    run_ok(&study_args(&models, &full, &["--n-studies", "3", "--no-prefix-sharing"]));
    let (a, b) = (records(&shared), records(&full));
    assert_eq!(a.len(), 36);
    assert_eq!(a[0].metadata.get("question_variant").map(String::as_str), Some("original"), "CSV columns are kept");
    let (a, b) = (by_key(&a), by_key(&b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let rd_a = RunDir::open(&shared).unwrap();
    let rd_b = RunDir::open(&full).unwrap();
    for (k, ra) in &a {
        let rb = b[k];
        assert!(ra.error.is_none(), "{k}: {:?}", ra.error);
        assert_eq!(ra.answer_text, rb.answer_text, "{k}");
        let (ma, mb) = (ra.yes_no_margin.unwrap(), rb.yes_no_margin.unwrap());
        assert!((ma - mb).abs() < 1e-4, "{k}: margin {ma} vs {mb}");
        let (va, vb) = (rd_a.read_f32(&ra.map.as_ref().unwrap().values).unwrap(), rd_b.read_f32(&rb.map.as_ref().unwrap().values).unwrap());
        let diff = va.iter().zip(&vb).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{k}: fused maps differ by {diff}");
    }
}

#[test]
fn a_killed_study_resumes_without_losing_or_duplicating_records() {
    let scratch = Scratch::new("study-kill");
    let models = write_demo_models(&scratch.path().join("models")).unwrap();
    let models = &models[..1];
    let (killed, clean) = (scratch.path().join("killed"), scratch.path().join("clean"));
    let args = study_args(models, &killed, &["--n-studies", "12", "--text-only-pass"]);
    let expected = 12 * 6 * 2;

    let mut child = Command::new(radlens_bin()).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let records_file = killed.join("records.jsonl");
    let t = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&records_file).map(|s| s.lines().count()).unwrap_or(0);
        if lines >= 20 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "the study wrote no records in 60 s");
        assert!(child.try_wait().unwrap().is_none(), "the study ended before it could be killed");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = records(&killed).len();
    assert!(partial < expected, "killed after {partial} of {expected} records");

    run_ok(&args);
    let resumed = records(&killed);
    let keys: HashSet<_> = resumed.iter().map(CaseRecord::key).collect();
    assert_eq!(keys.len(), resumed.len(), "a record was written twice");
    assert_eq!(resumed.len(), expected, "a record was lost");
    // Every stored map is readable: none points into a torn write.
    let dir = RunDir::open(&killed).unwrap();
    for r in resumed.iter().filter_map(|r| r.map.as_ref()) {
        assert_eq!(dir.read_f32(&r.values).unwrap().len(), r.values.len());
    }

    run_ok(&study_args(models, &clean, &["--n-studies", "12", "--text-only-pass"]));
    let (a, b) = (analysis_without_latency(&killed), analysis_without_latency(&clean));
    if a != b {
        let dump = |v: &Value, n: &str| {
            std::fs::write(scratch.path().parent().unwrap().join(n), serde_json::to_string_pretty(v).unwrap()).unwrap()
        };
        dump(&a, "killed-analysis.json");
        dump(&b, "clean-analysis.json");
        panic!(
            "the resumed run's analysis differs from an uninterrupted run's (see killed-analysis.json, clean-analysis.json beside the scratch dir)"
        );
    }
}

#[test]
fn bad_rows_and_missing_images_become_error_records() {
    let scratch = Scratch::new("study-bad-rows");
    let models = write_demo_models(&scratch.path().join("models")).unwrap();
    let csv = scratch.write(
        "study.csv",
        "study_id,image_path,question,answer,variant_index\n\
         s1,00021397_000.png,Is there a pleural effusion?,no,0\n\
         s1,00021397_000.png,Is a pleural effusion present?,perhaps,1\n\
         s2,missing.png,Is there a pneumothorax?,no,0\n",
    );
    let data = demo_data();
    let out = scratch.path().join("run");
    let model = format!("llava={}", models[0].1.display());
    let result = radlens(&[
        "study",
        "--csv",
        csv.to_str().unwrap(),
        "--images",
        data.join("cxr").to_str().unwrap(),
        "--model",
        &model,
        "--out",
        out.to_str().unwrap(),
        "--resamples",
        "100",
        "--max-new-tokens",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(stderr.contains("line 3") && stderr.contains("perhaps"), "the row problem is reported with its line: {stderr}");
    let recs = records(&out);
    assert_eq!(recs.len(), 3, "nothing is lost");
    let err = |id: &str| recs.iter().find(|r| r.sample_id == id).unwrap().error.clone();
    assert!(err("s1#0").is_none());
    assert!(err("s1#1").unwrap().message.contains("perhaps"));
    let missing = err("s2#0").unwrap();
    assert!(missing.message.contains("missing.png"), "{}", missing.message);

    let strict = radlens(&[
        "study",
        "--csv",
        csv.to_str().unwrap(),
        "--images",
        data.join("cxr").to_str().unwrap(),
        "--model",
        &model,
        "--out",
        scratch.path().join("strict").to_str().unwrap(),
        "--strict",
    ]);
    assert_eq!(strict.status.code(), Some(2), "a bad CSV is an input error");
    assert!(String::from_utf8_lossy(&strict.stderr).contains("line 3"));
}

#[test]
fn a_run_directory_is_not_mixed_with_another_configuration() {
    let scratch = Scratch::new("study-config");
    let models = write_demo_models(&scratch.path().join("models")).unwrap();
    let out = scratch.path().join("run");
    run_ok(&study_args(&models[..1], &out, &["--n-studies", "1"]));
    let again = study_args(&models[..1], &out, &["--n-studies", "1", "--layers", "all"]);
    let refs: Vec<&str> = again.iter().map(String::as_str).collect();
    let refused = radlens(&refs);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("different dataset or configuration"));
    // Rerunning the same configuration finds everything done.
    let same = study_args(&models[..1], &out, &["--n-studies", "1"]);
    let refs: Vec<&str> = same.iter().map(String::as_str).collect();
    let rerun = radlens(&refs);
    assert!(rerun.status.success());
    assert!(String::from_utf8_lossy(&rerun.stderr).contains("0 records written"));
    // --force starts over.
    let mut forced = again.clone();
    forced.push("--force".into());
    run_ok(&forced);
    assert_eq!(records(&out).len(), 6);
}

/// `--gradcam --faithfulness --sinks` (opt-in): every image-pass record carries its Grad-CAM and
/// relative maps (stored in the run directory, on the attention map's grid), a deletion row per
/// method and size, the study's sinks and the pairwise JS; the options are part of the run's
/// configuration, so a rerun resumes and a run without them is refused.
#[test]
fn trust_checks_are_recorded_and_resume() {
    let scratch = Scratch::new("study-trust");
    let models = write_demo_models(&scratch.path().join("models")).unwrap();
    let out = scratch.path().join("run");
    let args = study_args(&models, &out, &["--n-studies", "2", "--gradcam", "--faithfulness", "--sinks", "--text-only-pass"]);
    run_ok(&args);
    let dir = RunDir::open(&out).unwrap();
    let recs = records(&out);
    let mut checked = 0;
    for r in &recs {
        if r.pass != radlens_shared::record::Pass::Image {
            assert!(r.trust.is_none(), "{}: no checks on the blank-image pass", r.sample_id);
            continue;
        }
        let map = r.map.as_ref().expect("an image-pass record has a map");
        let t = r.trust.as_ref().unwrap_or_else(|| panic!("{} {}: no trust record", r.sample_id, r.model));
        assert!(t.notes.is_empty(), "{}: {:?}", r.sample_id, t.notes);
        let methods: Vec<String> = t.maps.iter().map(|m| m.provenance.method.to_string()).collect();
        assert_eq!(methods, ["gradcam", "relative"]);
        for m in &t.maps {
            assert_eq!(m.provenance.geometry, map.provenance.geometry);
            let values = dir.read_f32(&m.values).unwrap();
            assert_eq!(values.len(), map.provenance.geometry.h * map.provenance.geometry.w);
            assert!(values.iter().all(|&v| v >= 0.0) && (values.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        }
        assert!(t.maps[0].provenance.site.is_some_and(|s| s.to_string().starts_with("vision.blocks.")));
        assert_eq!(t.faithfulness.len(), 2 * 3);
        assert_eq!(t.agreement.len(), 3);
        let sinks = t.sinks.as_ref().expect("sinks are checked per study");
        assert_eq!(sinks.generic_prompt, "Describe the image.");
        checked += 1;
    }
    assert_eq!(checked, 2 * 6 * 2, "2 studies x 6 variants x 2 models");
    // The analysis summarises them per model, and the report has a section.
    let analysis: radlens_shared::record::Analysis =
        serde_json::from_str(&std::fs::read_to_string(out.join("analysis.json")).unwrap()).unwrap();
    for m in &analysis.models {
        let t = m.trust.as_ref().unwrap_or_else(|| panic!("{}: no trust summary", m.model));
        assert_eq!(t.records, 12);
        assert_eq!(t.methods.get("gradcam"), Some(&12));
        assert_eq!(t.agreement.len(), 3, "attention-gradcam, attention-relative, gradcam-relative");
        assert_eq!(t.faithfulness.len(), 6);
        assert!(t.faithfulness.iter().all(|f| f.rows == 12 && f.flag_rate.is_some()));
        assert_eq!(t.sinks.as_ref().unwrap().studies, 2);
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for heading in ["## Can the maps be trusted?", "### Method agreement", "### Faithfulness (deletion)", "### Attention sinks"] {
        assert!(report.contains(heading), "report.md lacks {heading:?}");
    }
    let manifest = dir.read_manifest().unwrap();
    let trust = manifest.capture.trust.expect("the options are in the manifest");
    assert!(trust.gradcam && trust.faithfulness && trust.sinks && trust.k_percents == [10, 25]);
    assert!(manifest.arguments.iter().any(|a| a == "--gradcam"));
    // Same options: nothing to redo. Without them: another configuration, refused.
    run_ok(&args);
    assert_eq!(records(&out).len(), recs.len());
    let plain = study_args(&models, &out, &["--n-studies", "2", "--text-only-pass"]);
    let refs: Vec<&str> = plain.iter().map(String::as_str).collect();
    assert!(!radlens(&refs).status.success(), "a run with the checks is not resumed without them");
}

/// Where attention cannot be captured (only layer 4 of the tiny Gemma3, a sliding-window layer
/// whose window ends before the image), the record's map is Grad-CAM, labelled as a fallback
/// with the reason, and the deletion tests cover it.
#[test]
fn study_records_fall_back_to_a_labelled_gradcam() {
    let scratch = Scratch::new("study-fallback");
    let csv = scratch.write("q.csv", "study_id,image_path,question,answer\ns1,img_b_rgb_300x240.png,Is there a fracture?,no\n");
    let out = scratch.path().join("run");
    let images = crate::support::fixture("reference-v1/images");
    let model = format!("g={}", crate::support::fixture("reference-v1/gemma3-tiny").display());
    let args: Vec<String> = [
        "study",
        "--csv",
        csv.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--model",
        &model,
        "--out",
        out.to_str().unwrap(),
        "--layers",
        "4",
        "--max-new-tokens",
        "2",
        "--resamples",
        "50",
        "--gradcam",
        "--faithfulness",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run_ok(&args);
    let recs = records(&out);
    assert_eq!(recs.len(), 1);
    let m = recs[0].map.as_ref().expect("a map, not an error record");
    assert_eq!(m.provenance.method, radlens_shared::fusion::MapMethod::Gradcam);
    assert!(m.provenance.fallback_reason.as_deref().is_some_and(|r| r.contains("sliding-window")), "{:?}", m.provenance);
    let t = recs[0].trust.as_ref().unwrap();
    assert!(t.maps.is_empty(), "the Grad-CAM is the record's own map, not a second one");
    assert_eq!(t.faithfulness.len(), 2);
    assert!(t.faithfulness.iter().all(|f| f.method == radlens_shared::fusion::MapMethod::Gradcam));
}
