//! `radlens probe` on the tiny llava-hf fixture: answers from an image file, a `--dump` that
//! reproduces the reference tensors, and clear errors for bad model directories.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::support::{fixture, radlens, Scratch};

fn llava_dir() -> String {
    fixture("reference-v1/llava-tiny").display().to_string()
}

fn case_dir(case: &str) -> std::path::PathBuf {
    fixture(&format!("reference-v1/reference/llava-tiny/{case}"))
}

fn manifest(case: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(case_dir(case).join("manifest.json")).unwrap()).unwrap()
}

fn json_out(args: &[&str]) -> Value {
    let out = radlens(args);
    assert!(out.status.success(), "radlens {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn probe_answers_from_an_image_file_with_a_normalised_map() {
    let m = manifest("case1");
    let image = fixture(&format!("reference-v1/{}", m["image"].as_str().unwrap())).display().to_string();
    let report = json_out(&[
        "probe", "--model", &llava_dir(), "--image", &image, "--question", m["question"].as_str().unwrap(),
        "--max-new-tokens", "5", "--json",
    ]);
    assert_eq!(report["architecture"], "llava");
    assert_eq!(report["input_ids"], m["input_ids"], "our prompt tokenises like the processor");
    assert_eq!(report["image_token_positions"], m["image_token_positions"]);
    let map = &report["map"];
    assert_eq!((map["h"].as_u64(), map["w"].as_u64()), (Some(4), Some(4)));
    let sum: f64 = map["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-9);
    // 300x240 -> 70x56, crop 56 at x = 7: x 30..270 in original pixels, full height.
    let crop = &map["provenance"]["geometry"]["crop"];
    assert_eq!((crop["x0"].as_f64(), crop["x1"].as_f64(), crop["y1"].as_f64()), (Some(30.0), Some(270.0), Some(240.0)));
    assert_eq!(map["provenance"]["layers"], serde_json::json!([2]), "last quarter of 3 layers");
    assert_eq!(map["provenance"]["method"], "query_to_visual");
    for key in ["focus", "gini", "entropy_nats", "top10_mass"] {
        assert!(map["metrics"][key].is_number(), "metric {key}");
    }
    assert!(report["parsed_answer"].is_string());
    assert!(report["yes_no_margin"].is_number());
}

/// `--dump` from stored pixel values writes the reference fixtures' tensors, and they match.
#[test]
fn dump_reproduces_the_reference_tensors() {
    let scratch = Scratch::new("probe-dump");
    for case in ["case0", "case2"] {
        let m = manifest(case);
        let dump = scratch.path().join(format!("{case}.safetensors"));
        let pv = case_dir(case).join("tensors.safetensors");
        let t = m["generated_ids"].as_array().unwrap().len().to_string();
        let report = json_out(&[
            "probe", "--model", &llava_dir(), "--pixel-values", pv.to_str().unwrap(), "--question",
            m["question"].as_str().unwrap(), "--max-new-tokens", &t, "--dump", dump.to_str().unwrap(), "--json",
        ]);
        assert_eq!(report["generated_ids"], m["generated_ids"], "{case}");
        let got: HashMap<String, Tensor> = candle_core::safetensors::load(&dump, &Device::Cpu).unwrap();
        let want: HashMap<String, Tensor> = candle_core::safetensors::load(&pv, &Device::Cpu).unwrap();
        for (name, tol) in [("prompt_last_logits", 1e-4), ("prompt_last_attn", 1e-5), ("gen_attn", 1e-5), ("pixel_values", 0.0)] {
            let (g, w) = (&got[name], &want[name]);
            assert_eq!(g.dims(), w.dims(), "{case} {name} shape");
            let diff = (g - w).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(diff <= tol, "{case} {name}: max abs diff {diff:e} > {tol:e}");
        }
        for name in ["input_ids", "generated_ids"] {
            assert_eq!(got[name].dtype(), DType::I64, "{name} is i64");
            assert_eq!(got[name].to_vec1::<i64>().unwrap(), want[name].to_vec1::<i64>().unwrap(), "{case} {name}");
        }
    }
}

#[test]
fn probe_names_what_is_wrong_with_its_inputs() {
    let scratch = Scratch::new("probe-errors");
    let image = fixture("reference-v1/images/img_a_gray_80x64.png").display().to_string();
    let run = |args: &[&str]| {
        let out = radlens(args);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let empty = scratch.path().display().to_string();
    let (code, err) = run(&["probe", "--model", &empty, "--image", &image, "--question", "q"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("config.json") && err.contains("not found"), "{err}");

    let not_png = scratch.write("broken.png", "not a png");
    let (code, err) = run(&["probe", "--model", &llava_dir(), "--image", not_png.to_str().unwrap(), "--question", "q"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("broken.png"), "{err}");

    let (code, err) = run(&["probe", "--model", &llava_dir(), "--image", &image, "--question", "q", "--layers", "7"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--layers") && err.contains("out of range"), "{err}");

    let (code, err) = run(&["probe", "--model", &llava_dir(), "--image", &image, "--question", "Is it?", "--query", "term:effusion"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("effusion"), "{err}");
}
