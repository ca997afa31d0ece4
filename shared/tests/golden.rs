//! Every value in `fixtures/metrics-golden.json` (numpy/scipy) and `fixtures/answer-parsing.json`,
//! checked to 1e-9 in f64. The statistics section is checked in `stats`' own tests.

use radlens_shared::AttentionMap;
use radlens_shared::answer::{Answer, parse_answer};
use radlens_shared::fusion::{HeadFusion, fuse_heads};
use radlens_shared::geometry::{PixelBox, bbox_mask, resample};
use radlens_shared::metrics::{MapMetrics, consistency, js_distance, js_divergence};
use radlens_shared::roi::roi_metrics;
use serde_json::Value;

const TOL: f64 = 1e-9;

fn golden() -> Value {
    serde_json::from_str(include_str!("../../fixtures/metrics-golden.json")).expect("golden file parses")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
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

#[test]
fn every_golden_map_has_the_golden_metrics_and_roi_values() {
    let g = golden();
    let maps = g["maps"].as_array().unwrap();
    assert_eq!(maps.len(), 30);
    for (i, m) in maps.iter().enumerate() {
        let (h, w) = (m["h"].as_u64().unwrap() as usize, m["w"].as_u64().unwrap() as usize);
        let name = format!("map {i} ({h}x{w} {})", m["kind"].as_str().unwrap());
        let map = AttentionMap::new(h, w, floats(&m["raw"])).unwrap();
        let got = MapMetrics::of(&map).unwrap();
        close(&format!("{name} entropy"), got.entropy_nats, m["entropy_nats"].as_f64().unwrap());
        close(&format!("{name} focus"), got.focus, m["focus"].as_f64().unwrap());
        close(&format!("{name} gini"), got.gini, m["gini"].as_f64().unwrap());
        close(&format!("{name} top10"), got.top10_mass, m["top10_mass"].as_f64().unwrap());
        if let Some(mask) = m.get("roi_mask") {
            let mask: Vec<bool> = mask.as_array().unwrap().iter().map(|v| v.as_i64() == Some(1)).collect();
            let roi = roi_metrics(&map.normalized().unwrap(), &mask).unwrap().expect("non-empty mask");
            close(&format!("{name} relevance"), roi.relevance_mass, m["roi"]["relevance_mass"].as_f64().unwrap());
            close(&format!("{name} rank"), roi.rank_accuracy, m["roi"]["rank_accuracy"].as_f64().unwrap());
            close(&format!("{name} pointing"), roi.pointing_game, m["roi"]["pointing_game"].as_f64().unwrap());
        }
    }
}

#[test]
fn jensen_shannon_matches_scipy_in_bits() {
    for (i, pair) in golden()["pairs"].as_array().unwrap().iter().enumerate() {
        let (p, q) = (floats(&pair["p"]), floats(&pair["q"]));
        close(&format!("pair {i} divergence"), js_divergence(&p, &q).unwrap(), pair["js_divergence_bits"].as_f64().unwrap());
        close(&format!("pair {i} distance"), js_distance(&p, &q).unwrap(), pair["js_distance"].as_f64().unwrap());
        close(&format!("pair {i} symmetric"), js_distance(&q, &p).unwrap(), pair["js_distance"].as_f64().unwrap());
    }
}

#[test]
fn consistency_is_the_mean_pairwise_one_minus_distance() {
    for (i, group) in golden()["groups"].as_array().unwrap().iter().enumerate() {
        let maps: Vec<AttentionMap> = group["maps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let v = floats(m);
                AttentionMap::new(1, v.len(), v).unwrap()
            })
            .collect();
        close(&format!("group {i}"), consistency(&maps).unwrap(), group["consistency"].as_f64().unwrap());
    }
}

#[test]
fn head_fusion_matches_for_every_mode() {
    for (i, case) in golden()["fusion"].as_array().unwrap().iter().enumerate() {
        let heads: Vec<Vec<f64>> = case["heads"].as_array().unwrap().iter().map(floats).collect();
        for (mode, key) in [(HeadFusion::Mean, "mean"), (HeadFusion::Max, "max"), (HeadFusion::EntropyWeighted, "entropy_weighted")] {
            close_all(&format!("fusion {i} {key}"), &fuse_heads(&heads, mode).unwrap(), &floats(&case[key]));
        }
    }
}

#[test]
fn bbox_masks_and_resampling_match() {
    for (i, case) in golden()["geometry"].as_array().unwrap().iter().enumerate() {
        let n = |k: &str| case[k].as_u64().unwrap();
        let (h, w) = (n("h") as usize, n("w") as usize);
        let c = floats(&case["crop"]);
        let b = floats(&case["box"]);
        let crop = PixelBox::new(c[0], c[1], c[2], c[3]).unwrap();
        let bbox = PixelBox::new(b[0], b[1], b[2], b[3]).unwrap();
        let want: Vec<bool> = case["bbox_mask"].as_array().unwrap().iter().map(|v| v.as_i64() == Some(1)).collect();
        assert_eq!(bbox_mask(h, w, &crop, &bbox), want, "geometry {i} mask");
        let p = floats(&case["map"]);
        let got = resample(&p, h, w, &crop, n("image_w") as u32, n("image_h") as u32, n("grid") as usize).unwrap();
        close_all(&format!("geometry {i} resampled"), &got, &floats(&case["resampled"]));
        close(&format!("geometry {i} mass"), got.iter().sum(), 1.0);
    }
}

#[test]
fn answer_parsing_cases() {
    let cases: Value = serde_json::from_str(include_str!("../../fixtures/answer-parsing.json")).unwrap();
    let mut failures = Vec::new();
    for case in cases["cases"].as_array().unwrap() {
        let text = case[0].as_str().unwrap();
        let want = match case[1].as_str().unwrap() {
            "yes" => Answer::Yes,
            "no" => Answer::No,
            _ => Answer::Unknown,
        };
        let got = parse_answer(text);
        if got != want {
            failures.push(format!("{text:?}: expected {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "answer parsing failures:\n{}", failures.join("\n"));
}
