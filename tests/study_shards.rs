//! `radlens study --shard I/N` three times and `radlens merge` against one unsharded run of the
//! same study (the demo's tiny models on the bundled chest X-rays): the same records, maps,
//! fingerprint and analysis. Shards of different studies are refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use radlens::study::run_dir::RunDir;
use radlens_shared::record::{CaseRecord, Pass, RunManifest};
use serde_json::Value;

use crate::support::{Scratch, radlens_bin, workspace_root};

/// The scheduler variables radlens reads its shard from: a test run inside a Slurm array task
/// or an Indexed Job pod must not shard the "unsharded" run.
const SCHEDULER_ENV: [&str; 5] =
    ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "JOB_COMPLETION_INDEX", "RADLENS_SHARD_COUNT"];

fn spawn(args: &[String]) -> Child {
    let mut cmd = Command::new(radlens_bin());
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for k in SCHEDULER_ENV {
        cmd.env_remove(k);
    }
    cmd.spawn().expect("run radlens")
}

fn finish(child: Child, args: &[String]) -> Output {
    let out = child.wait_with_output().expect("wait for radlens");
    assert!(out.status.success(), "radlens {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn run_ok(args: &[String]) -> Output {
    finish(spawn(args), args)
}

fn run_err(args: &[String]) -> String {
    let out = spawn(args).wait_with_output().expect("wait for radlens");
    assert!(!out.status.success(), "radlens {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn study_args(models: &[(String, PathBuf)], out: &Path, shard: Option<&str>, max_new_tokens: u32) -> Vec<String> {
    let demo = workspace_root().join("static/demo");
    let mut a = vec![
        "study".to_string(),
        "--csv".into(),
        s(&demo.join("demo-study.csv")),
        "--images".into(),
        s(&demo.join("cxr")),
        "--out".into(),
        s(out),
    ];
    for (name, dir) in models {
        a.extend(["--model".into(), format!("{name}={}", dir.display())]);
    }
    a.extend(["--n-studies", "6", "--resamples", "200", "--max-new-tokens"].map(String::from));
    a.push(max_new_tokens.to_string());
    if let Some(shard) = shard {
        a.extend(["--shard".into(), shard.into()]);
    }
    a
}

fn merge_args(inputs: &[&Path], out: &Path) -> Vec<String> {
    let mut a = vec!["merge".to_string()];
    a.extend(inputs.iter().map(|p| s(p)));
    a.extend(["--out".into(), s(out), "--images".into(), s(&workspace_root().join("static/demo/cxr"))]);
    a
}

fn records_by_key(dir: &RunDir) -> BTreeMap<(String, String, Pass), CaseRecord> {
    let records = dir.read_records().unwrap();
    let n = records.len();
    let map: BTreeMap<_, _> = records.into_iter().map(|r| (r.key(), r)).collect();
    assert_eq!(map.len(), n, "{}: duplicate keys", dir.root().display());
    map
}

fn close(what: &str, a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b}");
}

fn close_opt(what: &str, a: Option<f64>, b: Option<f64>, tol: f64) {
    match (a, b) {
        (Some(a), Some(b)) => close(what, a, b, tol),
        (None, None) => {}
        _ => panic!("{what}: {a:?} vs {b:?}"),
    }
}

fn tensors_close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-6, "{what}[{i}]: {x} vs {y}");
    }
}

/// The JSON without anything latency-derived (keys containing `latency` or `_ms`) or naming
/// the run directory (`run_id`).
fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.contains("latency") && !k.contains("_ms") && k != "run_id");
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

fn analysis(dir: &Path) -> Value {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("analysis.json")).unwrap()).unwrap();
    strip(&mut v);
    v
}

fn manifest(dir: &Path) -> RunManifest {
    RunDir::open(dir).unwrap().read_manifest().unwrap()
}

#[test]
fn merged_shards_equal_one_unsharded_run() {
    let scratch = Scratch::new("study-shards");
    let models = radlens::commands::demo::write_demo_models(&scratch.path().join("models")).unwrap();
    let shard_dirs: Vec<PathBuf> = (0..3).map(|i| scratch.path().join(format!("shard-{i}"))).collect();
    let single = scratch.path().join("single");
    let odd = scratch.path().join("odd-shard-2");

    // All five studies at once: three shards, the unsharded run, and a shard of another study
    // (fewer new tokens).
    let mut jobs: Vec<Vec<String>> =
        shard_dirs.iter().enumerate().map(|(i, d)| study_args(&models, d, Some(&format!("{i}/3")), 3)).collect();
    jobs.push(study_args(&models, &single, None, 3));
    jobs.push(study_args(&models, &odd, Some("2/3"), 2));
    let children: Vec<Child> = jobs.iter().map(|a| spawn(a)).collect();
    for (child, args) in children.into_iter().zip(&jobs) {
        finish(child, args);
    }
    for (i, d) in shard_dirs.iter().enumerate() {
        assert_eq!(manifest(d).shard, Some((i as u32, 3)));
    }

    let merged = scratch.path().join("merged");
    let inputs: Vec<&Path> = shard_dirs.iter().map(PathBuf::as_path).collect();
    run_ok(&merge_args(&inputs, &merged));

    // The manifest: unsharded, with the fingerprint the unsharded study computed.
    let (m_single, m_merged) = (manifest(&single), manifest(&merged));
    assert_eq!(m_merged.fingerprint, m_single.fingerprint);
    assert_eq!(m_merged.shard, None);
    assert_eq!(m_merged.study, m_single.study);
    assert_eq!(m_merged.models, m_single.models);
    assert_eq!(m_merged.capture, m_single.capture);
    assert_eq!(m_merged.bootstrap, m_single.bootstrap);

    // The records, one by one, with their maps read back through the merged attention store.
    let (d_single, d_merged) = (RunDir::open(&single).unwrap(), RunDir::open(&merged).unwrap());
    let (a, b) = (records_by_key(&d_single), records_by_key(&d_merged));
    assert!(!a.is_empty());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut maps = 0;
    for (key, x) in &a {
        let y = &b[key];
        let what = format!("{key:?}");
        assert_eq!(x.parsed_answer, y.parsed_answer, "{what}");
        assert_eq!(x.answer_text, y.answer_text, "{what}");
        assert_eq!(x.correct, y.correct, "{what}");
        assert_eq!(x.error, y.error, "{what}");
        close_opt(&format!("{what} yes_no_margin"), x.yes_no_margin, y.yes_no_margin, 1e-9);
        match (&x.map, &y.map) {
            (Some(p), Some(q)) => {
                maps += 1;
                for (name, u, v) in [
                    ("entropy_nats", p.metrics.entropy_nats, q.metrics.entropy_nats),
                    ("focus", p.metrics.focus, q.metrics.focus),
                    ("gini", p.metrics.gini, q.metrics.gini),
                    ("top10_mass", p.metrics.top10_mass, q.metrics.top10_mass),
                    ("image_share", p.image_share, q.image_share),
                ] {
                    close(&format!("{what} {name}"), u, v, 1e-9);
                }
                assert_eq!(p.roi.is_some(), q.roi.is_some(), "{what} roi");
                if let (Some(r), Some(t)) = (&p.roi, &q.roi) {
                    close(&format!("{what} relevance_mass"), r.relevance_mass, t.relevance_mass, 1e-9);
                    close(&format!("{what} rank_accuracy"), r.rank_accuracy, t.rank_accuracy, 1e-9);
                    close(&format!("{what} pointing_game"), r.pointing_game, t.pointing_game, 1e-9);
                }
                assert_eq!(p.values.shape, q.values.shape, "{what}");
                assert_eq!(p.head_rows.shape, q.head_rows.shape, "{what}");
                tensors_close(&format!("{what} values"), &d_single.read_f32(&p.values).unwrap(), &d_merged.read_f32(&q.values).unwrap());
                tensors_close(
                    &format!("{what} head_rows"),
                    &d_single.read_f32(&p.head_rows).unwrap(),
                    &d_merged.read_f32(&q.head_rows).unwrap(),
                );
            }
            (None, None) => {}
            _ => panic!("{what}: a map in one run only"),
        }
    }
    assert!(maps > 0, "the runs stored no maps");

    // The analysis, latencies aside.
    assert_eq!(analysis(&merged), analysis(&single));
    assert!(merged.join("report.md").exists() && merged.join("records.csv").exists());

    // Not over an existing run.
    let err = run_err(&merge_args(&inputs, &merged));
    assert!(err.contains("already holds a run"), "{err}");

    // A shard of another study (another --max-new-tokens) is refused, naming it and the field.
    let refused = scratch.path().join("refused");
    let err = run_err(&merge_args(&[&shard_dirs[0], &shard_dirs[1], &odd], &refused));
    assert!(err.contains("refusing to merge") && err.contains("odd-shard-2") && err.contains("max_new_tokens"), "{err}");
    assert!(!refused.join("manifest.json").exists());

    // A missing shard is a warning that names it.
    let partial = scratch.path().join("partial");
    let out = run_ok(&merge_args(&[&shard_dirs[0], &shard_dirs[2]], &partial));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning") && stderr.contains("1/3"), "{stderr}");
    assert_eq!(manifest(&partial).fingerprint, m_single.fingerprint);
}
