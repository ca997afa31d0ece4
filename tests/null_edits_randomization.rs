//! The null edits (grounding G4) and the weight-randomisation check (G5) on the tiny fixtures,
//! with planted truths that need no trained model: an "edit" that changes nothing moves nothing;
//! a "re-draw" that changes nothing is flagged insensitive, and a real re-draw is not; and the
//! probe's `--null-edits` output and refusals.

use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device};
use radlens::case::null_edit::{EditedImage, encode_edits};
use radlens::case::randomization::{Cascade, CascadeCase, run_cascade};
use radlens::case::{Capture, Case, CaseImage, CasePlan, CaseSpec, run_case};
use radlens::models::checkpoint::llava_rad::PartOverrides;
use radlens::models::checkpoint::redraw::Redraw;
use radlens::models::linear::WeightFormat;
use radlens::models::loader::{Engine, load_engine, load_engine_redrawn};
use radlens::models::processor::preprocess::load_image;
use radlens_shared::grounding::{CascadeStep, CaseGrounding, NullEdit, NullEditRecord, RandomizationSettings, cascade_steps};
use radlens_shared::record::GroundingSettings;

use crate::support::fixture;

const LLAVA: &str = "reference-v1/llava-tiny";
const IMAGE: &str = "reference-v1/images/img_b_rgb_300x240.png";
const QUESTION: &str = "Is there an effusion?";

fn engine(rel: &str) -> Engine {
    load_engine(&fixture(rel), &PartOverrides::default(), DType::F32, &Device::Cpu, WeightFormat::Dense).unwrap()
}

fn null_edit_plan(e: &Engine) -> CasePlan {
    let grounding = GroundingSettings { occlusion: false, null_edits: true, ..GroundingSettings::default() };
    CasePlan::resolve(CaseSpec { grounding: Some(grounding), ..CaseSpec::standard(2) }, "llava-tiny", &e.model.summary()).unwrap()
}

/// The case's grounding record after running it with `edits` (no occlusion asked for).
fn grounding_with(e: &Engine, image: &CaseImage, edits: &[EditedImage]) -> (radlens_shared::fusion::MapMethod, CaseGrounding) {
    let plan = null_edit_plan(e);
    let prompt = e.prompter.encode(QUESTION, None).unwrap();
    let case = Case { null_edits: Some(edits), ..Case::plain(e, &plan, image, &prompt, Capture::Map) };
    let outcome = run_case(case).unwrap();
    let own = outcome.map.as_ref().unwrap().own.provenance.method;
    let g = outcome.grounding.expect("null edits make a grounding record");
    assert!(g.record.occlusion.is_none(), "occlusion was not asked for");
    (own, g.record)
}

/// The record's own null-edit figures after running the case with `edits`.
fn null_edits_of(e: &Engine, image: &CaseImage, edits: &[EditedImage]) -> Vec<NullEditRecord> {
    let (own, g) = grounding_with(e, image, edits);
    assert!(g.notes.is_empty(), "{:?}", g.notes);
    g.of(own).expect("the own map's entry").null_edits.clone()
}

#[test]
fn an_edit_that_changes_nothing_moves_nothing_and_real_edits_move_the_map() {
    let e = engine(LLAVA);
    let img = load_image(&fixture(IMAGE)).unwrap();
    let image = CaseImage::encode(&e, &img, &Device::Cpu).ok().unwrap();
    // Planted: the "edited" image is the image itself.
    let same = [EditedImage { edit: NullEdit::Contrast90, image: Ok(image.clone()) }];
    let r = null_edits_of(&e, &image, &same);
    assert_eq!(r.len(), 1);
    assert!(r[0].answer_equal && r[0].margin_delta == Some(0.0) && r[0].js_distance.abs() < 1e-12, "{r:?}");

    let edits = encode_edits(&e, &img, &Device::Cpu);
    assert_eq!(edits.iter().map(|x| x.edit).collect::<Vec<_>>(), NullEdit::ALL);
    let r = null_edits_of(&e, &image, &edits);
    assert_eq!(r.iter().map(|x| x.edit).collect::<Vec<_>>(), NullEdit::ALL);
    for x in &r {
        assert!(x.js_distance.is_finite() && x.js_distance > 0.0 && x.js_distance <= 1.0, "{x:?}: the edited pixels reach the map");
        assert!(x.margin_delta.is_some_and(|d| d.is_finite() && d != 0.0), "{x:?}");
    }
    // An edit that could not be made is a note, and the other edit is kept.
    let broken = [EditedImage { edit: NullEdit::Jpeg90, image: Err("jpeg90: decoding: planted failure".into()) }, edits[0].clone()];
    let (_, g) = grounding_with(&e, &image, &broken);
    assert!(g.notes.iter().any(|n| n.contains("jpeg90") && n.contains("planted failure")), "{:?}", g.notes);
    assert_eq!(g.maps[0].figures.null_edits.len(), 1);
}

fn cascade_case() -> Vec<CascadeCase> {
    vec![CascadeCase { sample_id: "s#0".into(), image: load_image(&fixture(IMAGE)).unwrap(), question: QUESTION.into() }]
}

#[test]
fn a_redraw_that_changes_nothing_is_flagged_insensitive_and_a_real_one_is_not() {
    let e = engine(LLAVA);
    let plan = CasePlan::resolve(CaseSpec::standard(2), "llava-tiny", &e.model.summary()).unwrap();
    let settings = RandomizationSettings { samples: 1, seed: 3 };
    let stop = AtomicBool::new(false);
    let lm = e.model.summary().num_layers;

    // Planted: every step loads the checkpoint untouched, so each map equals the original.
    let untouched = |_: &Redraw| load_engine(&fixture(LLAVA), &PartOverrides::default(), DType::F32, &Device::Cpu, WeightFormat::Dense);
    let c = Cascade { model: "m", engine: &e, load_redrawn: &untouched, plan: &plan, device: &Device::Cpu, settings, stop: &stop };
    let r = run_cascade(&c, &cascade_case()).unwrap();
    assert_eq!(r.steps.iter().map(|s| s.step).collect::<Vec<_>>(), cascade_steps(lm as u32));
    for s in &r.steps {
        assert!(s.spearman.iter().all(|v| v.is_some_and(|v| (v - 1.0).abs() < 1e-9)), "{s:?}");
    }
    assert_eq!(r.insensitive, Some(true), "{r:?}");

    let redrawn = |d: &Redraw| {
        load_engine_redrawn(&fixture(LLAVA), &PartOverrides::default(), DType::F32, &Device::Cpu, WeightFormat::Dense, Some(d))
    };
    let c = Cascade { load_redrawn: &redrawn, ..c };
    let r = run_cascade(&c, &cascade_case()).unwrap();
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    let all = r.curve.points.iter().find(|p| p.step == CascadeStep::Layers(lm as u32)).unwrap();
    eprintln!("llava-tiny randomisation curve: {:?}", r.curve.points);
    assert!(all.spearman.is_some_and(|v| v < 0.9), "re-drawing every LM layer moves the map: {all:?}");
    // Seeded: the same settings draw the same curve.
    assert_eq!(run_cascade(&c, &cascade_case()).unwrap().curve, r.curve);
    // A stopped check is not recorded.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(run_cascade(&c, &cascade_case()).is_none());
}

/// `radlens probe --null-edits`: both edits in the JSON and the text; refused with stored pixels.
#[test]
fn probe_prints_the_null_edits_and_refuses_them_without_an_image() {
    let image = fixture(IMAGE).display().to_string();
    let model = fixture(LLAVA).display().to_string();
    let base = ["probe", "--model", &model, "--image", &image, "--question", QUESTION, "--max-new-tokens", "2"];
    let run = |extra: &[&str]| crate::support::radlens(&[&base[..], extra].concat());
    let out = run(&["--null-edits", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["grounding"]["occlusion"].is_null(), "no occlusion without --occlusion");
    let edits = v["grounding"]["maps"][0]["null_edits"].as_array().unwrap();
    let names: Vec<&str> = edits.iter().map(|e| e["edit"].as_str().unwrap()).collect();
    assert_eq!(names, ["contrast90", "jpeg90"]);
    for e in edits {
        assert!(e["answer_equal"].is_boolean() && e["js_distance"].as_f64().is_some_and(|d| d > 0.0), "{e}");
    }
    let text = run(&["--null-edits"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("null edit") && stdout.contains("contrast90") && stdout.contains("jpeg90"), "{stdout}");

    let pv = fixture("reference-v1/reference/llava-tiny/case0/tensors.safetensors").display().to_string();
    let out = run(&["--null-edits", "--pixel-values", &pv]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--null-edits"), "{}", String::from_utf8_lossy(&out.stderr));
}
