//! `radlens study --conditions` (grounding G6, G7) end to end on the demo data: one record per
//! row, model and condition, with the shown image, truth and partner, or the reason a row has
//! none; the analysis and report sections; resume across conditions after SIGKILL; bad flags.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use radlens::commands::demo::write_demo_models;
use radlens_shared::answer::Answer;
use radlens_shared::geometry::PixelBox;
use radlens_shared::record::{CaseRecord, Pass};

use crate::support::{Scratch, radlens, radlens_bin, run_records, workspace_root};

const ALL: &str = "blank,swap_opposite,swap_same,roi_occluded,control_occluded,jpeg90,contrast90,confound_occluded";

/// The confound box the subset CSV puts on study 00000075_000's rows (a corner of its film).
const CONFOUND: [u32; 4] = [440, 20, 40, 30];

fn args(models: &[(String, PathBuf)], csv: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let data = workspace_root().join("static/demo");
    let mut a: Vec<String> = ["study", "--csv", &csv.display().to_string(), "--images", &data.join("cxr").display().to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(["--out", &out.display().to_string(), "--resamples", "100", "--max-new-tokens", "2"].map(String::from));
    for (name, dir) in models {
        a.extend(["--model".to_string(), format!("{name}={}", dir.display())]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run(a: &[String]) -> std::process::Output {
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    radlens(&refs)
}

/// The first 8 demo studies and two boxed ones (cardiomegaly, with a partner of each truth among
/// the others only if the CSV has one: the records say); 00000075_000 also names a confound box.
fn subset_csv(scratch: &Scratch) -> PathBuf {
    let csv = std::fs::read_to_string(workspace_root().join("static/demo/demo-study.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    let mut studies: Vec<&str> = Vec::new();
    for r in &rows {
        let id = r.split(',').next().unwrap();
        if !studies.contains(&id) {
            studies.push(id);
        }
    }
    let keep: HashSet<&str> = studies.iter().take(8).copied().chain(["00001369_000", "00000075_000"]).collect();
    let [x, y, w, h] = CONFOUND;
    let kept: Vec<String> = rows
        .iter()
        .copied()
        .filter(|r| keep.contains(r.split(',').next().unwrap()))
        .map(|r| if r.starts_with("00000075_000,") { format!("{r},{x},{y},{w},{h}") } else { format!("{r},,,,") })
        .collect();
    scratch.write("study.csv", &format!("{header},confound_x,confound_y,confound_w,confound_h\n{}\n", kept.join("\n")))
}

#[test]
fn every_condition_is_a_pass_with_its_image_truth_or_reason_and_the_analysis_reads_them() {
    let scratch = Scratch::new("conditions");
    let models = write_demo_models(&scratch.path().join("models")).unwrap();
    let csv = subset_csv(&scratch);
    let out = scratch.path().join("run");
    let first = run(&args(&models[..1], &csv, &out, &["--conditions", ALL]));
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let records = run_records(&out);
    let image: BTreeMap<&str, &CaseRecord> = records.iter().filter(|r| r.pass == Pass::Image).map(|r| (r.sample_id.as_str(), r)).collect();
    let base_image: BTreeMap<&str, &str> =
        records.iter().filter(|r| r.pass == Pass::Image && r.variant_index == 0).map(|r| (r.study_id.as_str(), r.image.as_str())).collect();
    // `prior_blank` and `prior_swap` need rows with a prior image (tests/multi_image_study.rs);
    // these have none, and ALL leaves them out.
    for pass in Pass::ALL.into_iter().filter(|p| !matches!(p, Pass::PriorBlank | Pass::PriorSwap)) {
        let of: Vec<&CaseRecord> = records.iter().filter(|r| r.pass == pass).collect();
        assert_eq!(of.len(), image.len(), "{pass:?}: one record per row");
        for r in of {
            let real = image[r.sample_id.as_str()];
            assert!(r.error.is_none(), "{} {pass:?}: {:?}", r.sample_id, r.error);
            let not_run = r.condition.as_ref().and_then(|c| c.not_run.clone());
            match pass {
                Pass::Image | Pass::BlankImage => assert!(r.condition.is_none()),
                _ => assert!(r.condition.is_some(), "{} {pass:?}", r.sample_id),
            }
            if let Some(why) = &not_run {
                assert!(r.parsed_answer.is_none() && r.map.is_none(), "{} {pass:?}: a row not run has no answer", r.sample_id);
                match pass {
                    Pass::RoiOccluded | Pass::ControlOccluded if real.roi.is_none() => assert!(why.contains("no radiologist box"), "{why}"),
                    // A box wider than half the crop leaves no same-sized box beside it.
                    Pass::ControlOccluded => assert!(why.contains("no control box"), "{why}"),
                    Pass::SwapOpposite | Pass::SwapSame => assert!(why.contains("no other study"), "{why}"),
                    Pass::ConfoundOccluded if real.confound.is_none() => assert!(why.contains("no confound box"), "{why}"),
                    _ => panic!("{} {pass:?}: unexpected reason {why}", r.sample_id),
                }
                continue;
            }
            assert!(r.parsed_answer.is_some(), "{} {pass:?}", r.sample_id);
            if pass != Pass::Image {
                assert!(r.map.is_none() && r.grounding.is_none(), "conditions capture no map");
            }
            let c = r.condition.as_ref();
            match pass {
                Pass::SwapOpposite | Pass::SwapSame => {
                    let partner = c.and_then(|c| c.partner_study.as_deref()).expect("a swap names its partner");
                    assert_ne!(partner, r.study_id);
                    assert_eq!(r.image, base_image[partner], "the partner's image is shown");
                    let want = if pass == Pass::SwapOpposite { real.ground_truth.map(Answer::invert) } else { real.ground_truth };
                    assert_eq!(r.ground_truth, want, "{} {pass:?}", r.sample_id);
                }
                Pass::RoiOccluded => assert_eq!(c.and_then(|c| c.occluded_box), real.roi),
                Pass::ConfoundOccluded => {
                    let [x, y, w, h] = CONFOUND.map(f64::from);
                    assert_eq!(c.and_then(|c| c.occluded_box), Some(PixelBox::from_xywh(x, y, w, h).unwrap()));
                    assert_eq!(r.confound, real.confound);
                }
                Pass::ControlOccluded => {
                    let b = c.and_then(|c| c.occluded_box).expect("the control box");
                    let roi = real.roi.unwrap();
                    assert_eq!((b.width(), b.height()), (roi.width(), roi.height()), "same size as the box");
                    assert!(b.x1 <= roi.x0 || b.x0 >= roi.x1 || b.y1 <= roi.y0 || b.y0 >= roi.y1, "misses the box");
                }
                _ => assert_eq!(r.image, real.image),
            }
        }
    }
    let boxed_run = records.iter().filter(|r| r.pass == Pass::RoiOccluded && r.parsed_answer.is_some()).count();
    assert!(boxed_run >= 6, "both boxed studies ran roi_occluded: {boxed_run}");
    let confound_run = records.iter().filter(|r| r.pass == Pass::ConfoundOccluded && r.parsed_answer.is_some()).count();
    assert_eq!(confound_run, 6, "the study with a confound box ran confound_occluded on its 6 rows");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["capture"]["text_only_pass"], true, "blank is the text-only pass");
    assert_eq!(manifest["capture"]["conditions"].as_array().unwrap().len(), 7);

    let analysis: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("analysis.json")).unwrap()).unwrap();
    let m = &analysis["models"][0];
    let names: Vec<&str> = m["conditions"]["conditions"].as_array().unwrap().iter().map(|c| c["condition"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["real", "blank", "swap_opposite", "swap_same", "roi_occluded", "control_occluded", "jpeg90", "contrast90", "confound_occluded"]
    );
    for key in
        ["image_sensitivity", "visual_reliance", "swap_following", "causal_grounding_rate", "control_change_rate", "confound_change_rate"]
    {
        assert!(m["conditions"][key]["estimate"].is_number(), "{key}: {}", m["conditions"]);
    }
    let d = &m["decision"];
    for key in ["margin_auroc", "near_tie_share", "mean_margin_shift", "flip_rate", "robust_flip_rate"] {
        assert!(d[key]["estimate"].is_number(), "{key}: {d}");
    }
    assert_eq!(d["eps"], 1.0);
    assert_eq!(d["not_yes_no"], 0, "every demo question passes the yes/no rule");
    assert!(m["decision_by_strategy"]["negation"]["rows"].as_u64().unwrap() > 0);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## Does the answer come from the image?") && report.contains("## Would the model have warned us?"));
    assert!(out.join("plots/conditions_by_model.png").is_file() && out.join("plots/reliability.png").is_file());
}

#[test]
fn a_killed_run_resumes_across_conditions() {
    let scratch = Scratch::new("conditions-kill");
    let models = write_demo_models(&scratch.path().join("models")).unwrap();
    let csv = subset_csv(&scratch);
    let out = scratch.path().join("run");
    let a = args(&models[..1], &csv, &out, &["--conditions", "swap_opposite,jpeg90,roi_occluded"]);
    let rows = std::fs::read_to_string(&csv).unwrap().lines().count() - 1;
    let expected = rows * 4;
    let mut child = Command::new(radlens_bin()).args(&a).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t = Instant::now();
    loop {
        let lines = std::fs::read_to_string(out.join("records.jsonl")).map(|s| s.lines().count()).unwrap_or(0);
        if lines >= 30 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "the study wrote no records in 60 s");
        assert!(child.try_wait().unwrap().is_none(), "the study ended before it could be killed");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(run_records(&out).len() < expected);
    let again = run(&a);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let resumed = run_records(&out);
    let keys: HashSet<_> = resumed.iter().map(CaseRecord::key).collect();
    assert_eq!((keys.len(), resumed.len()), (expected, expected), "nothing lost, nothing twice");
    // A different set of conditions is another configuration.
    let other = run(&args(&models[..1], &csv, &out, &["--conditions", "swap_opposite"]));
    assert_eq!(other.status.code(), Some(1), "{}", String::from_utf8_lossy(&other.stderr));
    assert!(String::from_utf8_lossy(&other.stderr).contains("different dataset or configuration"));
}

#[test]
fn unknown_or_real_conditions_are_refused_with_the_valid_names() {
    let scratch = Scratch::new("conditions-bad");
    let models = write_demo_models(&scratch.path().join("models")).unwrap();
    let csv = subset_csv(&scratch);
    let out = scratch.path().join("run");
    let bad = run(&args(&models[..1], &csv, &out, &["--conditions", "blank,upside_down"]));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(err.contains("upside_down") && err.contains("swap_opposite"), "{err}");
    let real = run(&args(&models[..1], &csv, &out, &["--conditions", "real"]));
    let err = String::from_utf8_lossy(&real.stderr);
    assert_eq!(real.status.code(), Some(2), "{err}");
    assert!(err.contains("--conditions"), "{err}");
    assert!(!out.join("records.jsonl").exists(), "nothing was run");
}
