//! Every value in `fixtures/grounding-golden.json` (numpy/scipy, `make_grounding_golden.py
//! --seed 0`), checked to 1e-9 in f64; nulls must be nulls. `RADLENS_GROUNDING_GOLDEN=path`
//! checks another copy of the file instead (read at run time).

use std::path::PathBuf;

use radlens_shared::AttentionMap;
use radlens_shared::answer::Answer;
use radlens_shared::geometry::{MapGeometry, PixelBox, bbox_mask};
use radlens_shared::grounding::{
    DecisionRow, answer_entropy_bits, box_controls, box_score, contrast90, control_boxes, decision_quality, occlusion_agreement,
    occlusion_cells, occlusion_spearman, occlusion_support_mass, occlusion_topk_overlap, resample_to_occlusion_grid,
};
use serde_json::Value;

const TOL: f64 = 1e-9;
const ENV: &str = "RADLENS_GROUNDING_GOLDEN";

fn golden_path() -> PathBuf {
    match std::env::var_os(ENV) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/grounding-golden.json"),
    }
}

fn golden() -> Value {
    let path = golden_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the grounding golden file {} (set {ENV} to another path): {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("the grounding golden file {} is not JSON: {e}", path.display()))
}

fn cases<'a>(g: &'a Value, key: &str) -> &'a [Value] {
    let v = g[key].as_array().unwrap_or_else(|| panic!("golden file has no {key:?} array"));
    assert!(!v.is_empty(), "golden {key:?} is empty");
    v
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("expected a number, got {v}"))
}

fn u(v: &Value) -> usize {
    v.as_u64().unwrap_or_else(|| panic!("expected an unsigned integer, got {v}")) as usize
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap_or_else(|| panic!("expected an array, got {v}")).iter().map(f).collect()
}

fn close(what: &str, got: f64, want: f64) {
    assert!((got - want).abs() <= TOL, "{what}: expected {want}, got {got} (diff {:e})", (got - want).abs());
}

fn close_all(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        close(&format!("{what}[{i}]"), *g, *w);
    }
}

/// A nullable golden number against an `Option`: null must be `None`, a number `Some` within 1e-9.
fn close_opt(what: &str, got: Option<f64>, want: &Value) {
    match (got, want.as_f64()) {
        (None, None) if want.is_null() => {}
        (Some(g), Some(w)) => close(what, g, w),
        _ => panic!("{what}: expected {want}, got {got:?}"),
    }
}

fn crop(v: &Value) -> PixelBox {
    let c = floats(v);
    PixelBox::new(c[0], c[1], c[2], c[3]).unwrap()
}

fn xywh(v: &Value) -> PixelBox {
    let b = floats(v);
    PixelBox::from_xywh(b[0], b[1], b[2], b[3]).unwrap()
}

fn as_xywh(b: &PixelBox) -> Vec<f64> {
    vec![b.x0, b.y0, b.width(), b.height()]
}

fn map_of(case: &Value) -> AttentionMap {
    AttentionMap::new(u(&case["h"]), u(&case["w"]), floats(&case["map"])).unwrap()
}

#[test]
fn occlusion_comparisons_match() {
    let g = golden();
    for (i, case) in cases(&g, "occlusion").iter().enumerate() {
        let name = format!("occlusion {i}");
        let (side, grid) = (u(&case["input_side"]), u(&case["g"]));
        let map = map_of(case);
        let crop = crop(&case["crop"]);
        let support = floats(&case["support"]);
        let p_grid = resample_to_occlusion_grid(&map, &crop, grid).unwrap();
        close_all(&format!("{name} resampled"), &p_grid, &floats(&case["resampled"]));
        close_opt(&format!("{name} spearman"), occlusion_spearman(&p_grid, &support).unwrap(), &case["occlusion_spearman"]);
        close(&format!("{name} topk"), occlusion_topk_overlap(&p_grid, &support).unwrap(), f(&case["occlusion_topk_overlap"]));
        close_opt(&format!("{name} support mass"), occlusion_support_mass(&p_grid, &support).unwrap(), &case["occlusion_support_mass"]);
        // The record-level entry point gives the same figures.
        let a = occlusion_agreement(&map, &crop, &support, side, grid).unwrap();
        close_opt(&format!("{name} agreement spearman"), a.occlusion_spearman, &case["occlusion_spearman"]);
        close(&format!("{name} agreement topk"), a.occlusion_topk_overlap, f(&case["occlusion_topk_overlap"]));
        close_opt(&format!("{name} agreement support mass"), a.occlusion_support_mass, &case["occlusion_support_mass"]);
        let cells: Vec<Vec<usize>> = occlusion_cells(side, grid).unwrap().iter().map(|c| vec![c.first, c.last]).collect();
        let want: Vec<Vec<usize>> =
            case["cell_pixel_ranges"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(u).collect()).collect();
        assert_eq!(cells, want, "{name} cell pixel ranges");
    }
}

#[test]
fn box_controls_match() {
    let g = golden();
    for (i, case) in cases(&g, "box_controls").iter().enumerate() {
        let name = format!("box controls {i}");
        let map = map_of(case);
        let geometry = MapGeometry {
            h: map.h,
            w: map.w,
            crop: crop(&case["crop"]),
            image_w: u(&case["image_w"]) as u32,
            image_h: u(&case["image_h"]) as u32,
        };
        let roi = xywh(&case["box"]);
        let want_mask: Vec<bool> = case["mask"].as_array().unwrap().iter().map(|v| v.as_i64() == Some(1)).collect();
        assert_eq!(bbox_mask(map.h, map.w, &geometry.crop, &roi), want_mask, "{name} mask");
        let c = box_controls(&map, &geometry, &roi).unwrap();
        close_opt(&format!("{name} mass"), c.mass, &case["mass"]);
        close_all(&format!("{name} mirror box"), &as_xywh(&c.mirror_box), &floats(&case["mirror_box"]));
        close_opt(&format!("{name} mirror mass"), c.mirror_mass, &case["mirror_mass"]);
        assert_eq!(c.n_controls, u(&case["n_controls"]), "{name} n_controls");
        let boxes = control_boxes(&geometry, &roi).unwrap();
        let want_boxes = case["control_boxes"].as_array().unwrap();
        assert_eq!(boxes.len(), want_boxes.len(), "{name} control box count");
        for (j, (got, want)) in boxes.iter().zip(want_boxes).enumerate() {
            close_all(&format!("{name} control box {j}"), &as_xywh(got), &floats(want));
        }
        close_opt(&format!("{name} control mass mean"), c.control_mass_mean, &case["control_mass_mean"]);
        close_opt(&format!("{name} roi lift"), c.roi_lift, &case["roi_lift"]);
        close_opt(&format!("{name} roi percentile"), c.roi_percentile, &case["roi_percentile"]);
        close_opt(&format!("{name} control pointing mean"), c.control_pointing_mean, &case["control_pointing_mean"]);
        close_opt(&format!("{name} pointing game"), c.pointing_game, &case["pointing_game"]);
    }
}

#[test]
fn box_scores_match() {
    let g = golden();
    for (i, case) in cases(&g, "box_score").iter().enumerate() {
        let name = format!("box score {i}");
        let truths: Vec<PixelBox> = case["truth_boxes"].as_array().unwrap().iter().map(xywh).collect();
        let s = box_score(&map_of(case), &crop(&case["crop"]), &truths).unwrap();
        let want = case["boxes"].as_array().unwrap();
        assert_eq!(s.boxes.len(), want.len(), "{name} box count");
        for (j, (got, want)) in s.boxes.iter().zip(want).enumerate() {
            close_all(&format!("{name} box {j}"), &[got.x0, got.y0, got.x1, got.y1], &floats(want));
        }
        close(&format!("{name} iou"), s.box_iou, f(&case["box_iou"]));
        close(&format!("{name} precision"), s.box_precision, f(&case["box_precision"]));
        close(&format!("{name} recall"), s.box_recall, f(&case["box_recall"]));
        close(&format!("{name} f1"), s.box_f1, f(&case["box_f1"]));
    }
}

#[test]
fn contrast90_matches_every_byte() {
    let g = golden();
    for (i, case) in cases(&g, "contrast90").iter().enumerate() {
        let bytes = |k: &str| -> Vec<u8> { case[k].as_array().unwrap().iter().map(|v| u8::try_from(u(v)).unwrap()).collect() };
        let got = contrast90(&bytes("pixels"), u(&case["w"]), u(&case["h"]), u(&case["channels"])).unwrap();
        assert_eq!(got, bytes("contrast90"), "contrast90 {i}");
    }
}

fn answer(v: &Value) -> Answer {
    match v.as_str() {
        Some("yes") => Answer::Yes,
        Some("no") => Answer::No,
        Some("unknown") => Answer::Unknown,
        _ => panic!("not an answer: {v}"),
    }
}

#[test]
fn decision_quality_matches() {
    let g = golden();
    for (i, case) in cases(&g, "decision").iter().enumerate() {
        let name = format!("decision {i}");
        let mut rows = Vec::new();
        for study in case["studies"].as_array().unwrap() {
            for r in study["rows"].as_array().unwrap() {
                rows.push(DecisionRow {
                    study_id: study["study_id"].as_str().unwrap().to_owned(),
                    variant_index: u(&r["variant"]) as u32,
                    polarity: r["polarity"].as_i64().unwrap() as i8,
                    margin: f(&r["margin"]),
                    answer: answer(&r["answer"]),
                    truth: Some(answer(&r["truth"])),
                });
            }
        }
        let entropies: Vec<f64> = rows.iter().map(|r| answer_entropy_bits(r.margin)).collect();
        close_all(&format!("{name} answer entropy bits"), &entropies, &floats(&case["answer_entropy_bits"]));
        let q = decision_quality(&rows, f(&case["eps"])).unwrap();
        close_opt(&format!("{name} margin auroc"), q.margin_auroc, &case["margin_auroc"]);
        close_opt(&format!("{name} mean margin shift"), q.mean_margin_shift, &case["mean_margin_shift"]);
        close_opt(&format!("{name} near tie share"), q.near_tie_share, &case["near_tie_share"]);
        close_opt(&format!("{name} robust flip rate"), q.robust_flip_rate, &case["robust_flip_rate"]);
        close_opt(&format!("{name} flip rate"), q.flip_rate, &case["flip_rate"]);
        close_opt(&format!("{name} flip screen auroc"), q.flip_screen_auroc, &case["flip_screen_auroc"]);
    }
}

/// The golden file has exactly the sections this test checks, so a new section cannot be
/// skipped silently.
#[test]
fn every_section_of_the_golden_file_is_checked() {
    let g = golden();
    let mut keys: Vec<&str> = g.as_object().expect("golden file is an object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["box_controls", "box_score", "contrast90", "decision", "occlusion", "seed", "spec"]);
    assert_eq!(g["spec"], "spec/grounding.md");
}
