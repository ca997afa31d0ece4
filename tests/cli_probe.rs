//! `radlens probe` on the tiny llava-hf fixture: answers from an image file, a `--dump` that
//! reproduces the reference tensors, and clear errors for bad model directories.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::support::{Scratch, fixture, radlens};

fn llava_dir() -> String {
    fixture("reference-v1/llava-tiny").display().to_string()
}

fn gemma3_dir() -> String {
    fixture("reference-v1/gemma3-tiny").display().to_string()
}

fn case_dir(model: &str, case: &str) -> std::path::PathBuf {
    fixture(&format!("reference-v1/reference/{model}/{case}"))
}

fn manifest_of(model: &str, case: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(case_dir(model, case).join("manifest.json")).unwrap()).unwrap()
}

fn manifest(case: &str) -> Value {
    manifest_of("llava-tiny", case)
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
        "probe",
        "--model",
        &llava_dir(),
        "--image",
        &image,
        "--question",
        m["question"].as_str().unwrap(),
        "--max-new-tokens",
        "5",
        "--json",
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

/// `--dump` from stored pixel values writes the reference fixtures' tensors, and they match,
/// for both architectures (Gemma3 with its system prompt and `token_type_ids`).
#[test]
fn dump_reproduces_the_reference_tensors() {
    let scratch = Scratch::new("probe-dump");
    for (model, dir, case) in
        [("llava-tiny", llava_dir(), "case0"), ("llava-tiny", llava_dir(), "case2"), ("gemma3-tiny", gemma3_dir(), "case2")]
    {
        let m = manifest_of(model, case);
        let dump = scratch.path().join(format!("{model}-{case}.safetensors"));
        let pv = case_dir(model, case).join("tensors.safetensors");
        let t = m["generated_ids"].as_array().unwrap().len().to_string();
        let mut args = vec![
            "probe",
            "--model",
            &dir,
            "--pixel-values",
            pv.to_str().unwrap(),
            "--question",
            m["question"].as_str().unwrap(),
            "--max-new-tokens",
            &t,
            "--dump",
            dump.to_str().unwrap(),
            "--json",
        ];
        if let Some(system) = m["system_prompt"].as_str() {
            args.extend(["--system", system]);
        }
        let report = json_out(&args);
        assert_eq!(report["generated_ids"], m["generated_ids"], "{model} {case}");
        let got: HashMap<String, Tensor> = candle_core::safetensors::load(&dump, &Device::Cpu).unwrap();
        let want: HashMap<String, Tensor> = candle_core::safetensors::load(&pv, &Device::Cpu).unwrap();
        for (name, tol) in [("prompt_last_logits", 1e-4), ("prompt_last_attn", 1e-5), ("gen_attn", 1e-5), ("pixel_values", 0.0)] {
            let (g, w) = (&got[name], &want[name]);
            assert_eq!(g.dims(), w.dims(), "{model} {case} {name} shape");
            let diff = (g - w).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(diff <= tol, "{model} {case} {name}: max abs diff {diff:e} > {tol:e}");
        }
        let mut id_tensors = vec!["input_ids", "generated_ids"];
        if model == "gemma3-tiny" {
            id_tensors.push("token_type_ids");
        } else {
            assert!(!got.contains_key("token_type_ids"), "LLaVA has no token_type_ids");
        }
        for name in id_tensors {
            assert_eq!(got[name].dtype(), DType::I64, "{name} is i64");
            assert_eq!(got[name].to_vec1::<i64>().unwrap(), want[name].to_vec1::<i64>().unwrap(), "{model} {case} {name}");
        }
    }
}

/// Gemma3 from an image file: the grid covers the whole (stretched) image, and a sliding-window
/// layer that cannot see the image is left out of the map and reported.
#[test]
fn gemma3_probe_reports_whole_image_geometry_and_blind_layers() {
    let m = manifest_of("gemma3-tiny", "case0");
    let image = fixture(&format!("reference-v1/{}", m["image"].as_str().unwrap())).display().to_string();
    let report = json_out(&[
        "probe",
        "--model",
        &gemma3_dir(),
        "--image",
        &image,
        "--question",
        m["question"].as_str().unwrap(),
        "--max-new-tokens",
        "5",
        "--json",
    ]);
    assert_eq!(report["architecture"], "gemma3");
    assert_eq!(report["input_ids"], m["input_ids"]);
    assert_eq!(report["generated_ids"], m["generated_ids"]);
    let prov = &report["map"]["provenance"];
    let crop = &prov["geometry"]["crop"];
    assert_eq!(
        (crop["x0"].as_f64(), crop["y0"].as_f64(), crop["x1"].as_f64(), crop["y1"].as_f64()),
        (Some(0.0), Some(0.0), Some(80.0), Some(64.0))
    );
    // 6 layers [S,S,F,S,S,F]: the last quarter is 4..5; layer 4's window (8) ends before the image.
    assert_eq!(prov["layers"], serde_json::json!([5]));
    assert_eq!(prov["layers_without_image"], serde_json::json!([4]));
    // Token-conditioned maps: the rows of a word of the question.
    let term = json_out(&[
        "probe",
        "--model",
        &gemma3_dir(),
        "--image",
        &image,
        "--question",
        m["question"].as_str().unwrap(),
        "--max-new-tokens",
        "2",
        "--query",
        "term:fracture",
        "--layers",
        "all",
        "--json",
    ]);
    assert_eq!(term["map"]["provenance"]["query_mode"], "term:fracture");
    assert!(!term["map"]["provenance"]["query_positions"].as_array().unwrap().is_empty());
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

/// A LLaVA-Rad release directory (`base/` + `llava-rad/`) is detected, and its dump marks the
/// image span with -200 as the reference does.
#[test]
fn llava_rad_release_probes_and_dumps_like_the_reference() {
    let root = fixture("llava-rad-tiny-v1");
    let case = root.join("reference/llava-rad-tiny/case0");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(case.join("manifest.json")).unwrap()).unwrap();
    let scratch = Scratch::new("probe-llava-rad");
    let dump = scratch.path().join("dump.safetensors");
    let pv = case.join("tensors.safetensors");
    let model = root.join("llava-rad-tiny").display().to_string();
    let report = json_out(&[
        "probe",
        "--model",
        &model,
        "--pixel-values",
        pv.to_str().unwrap(),
        "--question",
        m["question"].as_str().unwrap(),
        "--max-new-tokens",
        "5",
        "--dump",
        dump.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(report["architecture"], "llava_rad");
    assert_eq!(report["generated_ids"], m["generated_ids"]);
    let got: HashMap<String, Tensor> = candle_core::safetensors::load(&dump, &Device::Cpu).unwrap();
    let want: HashMap<String, Tensor> = candle_core::safetensors::load(&pv, &Device::Cpu).unwrap();
    assert_eq!(got["input_ids"].to_vec1::<i64>().unwrap(), want["input_ids"].to_vec1::<i64>().unwrap());
    for (name, tol) in [("prompt_last_attn", 1e-5f32), ("gen_attn", 1e-5)] {
        let diff = (&got[name] - &want[name]).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(diff <= tol, "{name}: {diff:e}");
    }
}

/// f16 runs on the CPU (maps still sum to one); bf16 is refused there with a clear reason.
#[test]
fn half_precision_on_the_cpu() {
    let image = fixture("reference-v1/images/img_b_rgb_300x240.png").display().to_string();
    let report = json_out(&[
        "probe",
        "--model",
        &llava_dir(),
        "--image",
        &image,
        "--question",
        "Is there an effusion?",
        "--max-new-tokens",
        "2",
        "--dtype",
        "f16",
        "--json",
    ]);
    let sum: f64 = report["map"]["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-6);
    let out = radlens(&["probe", "--model", &llava_dir(), "--image", &image, "--question", "q", "--dtype", "bf16"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("f16"));
}

/// `--quantize q8` holds the decoder's projections as 8-bit blocks: the answer starts the same
/// and the map barely moves on both tiny fixtures; the report says the weights were quantised.
#[test]
fn q8_weights_keep_the_answer_and_the_map() {
    let image = fixture("reference-v1/images/img_b_rgb_300x240.png").display().to_string();
    for dir in [llava_dir(), gemma3_dir()] {
        let ask = |q: &str| {
            json_out(&[
                "probe",
                "--model",
                &dir,
                "--image",
                &image,
                "--question",
                "Is there an effusion?",
                "--max-new-tokens",
                "2",
                "--quantize",
                q,
                "--json",
            ])
        };
        let (dense, q8) = (ask("none"), ask("q8"));
        assert_eq!(q8["dtype"], "f32 + q8 weights", "{dir}");
        assert_eq!(dense["generated_ids"][0], q8["generated_ids"][0], "{dir}: first answer token moved");
        let values = |r: &Value| r["map"]["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>();
        let js = radlens_shared::metrics::js_distance(&values(&dense), &values(&q8)).unwrap();
        assert!(js > 0.0 && js < 0.05, "{dir}: map JS distance {js} bits between f32 and q8");
    }
    // Grad-CAM's backward passes through the 8-bit layers (by their dequantised weights).
    let cam = json_out(&[
        "probe",
        "--model",
        &llava_dir(),
        "--image",
        &image,
        "--question",
        "Is there an effusion?",
        "--max-new-tokens",
        "1",
        "--quantize",
        "q8",
        "--gradcam",
        "--json",
    ]);
    let methods: Vec<&str> = cam["trust"]["maps"].as_array().unwrap().iter().map(|m| m["provenance"]["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["gradcam"], "{}", cam["trust"]);
    let out = radlens(&["probe", "--model", &llava_dir(), "--image", &image, "--question", "q", "--quantize", "q4"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--quantize"));
}

/// The precision comparison of `radlens bench --agreement-with`, on a cut mid-size model: every
/// figure is a fraction or a distance, and f16 keeps the answers of f32.
#[test]
fn bench_compares_precisions_on_the_same_random_model() {
    let out = radlens(&[
        "bench",
        "--arch",
        "llava",
        "--agreement-with",
        "f32",
        "--dtype",
        "f16",
        "--text-layers",
        "2",
        "--vision-layers",
        "1",
        "--reps",
        "1",
        "--new-tokens",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((r["reference"].as_str(), r["candidate"].as_str(), r["cases"].as_u64()), (Some("f32"), Some("f16"), Some(6)));
    assert!(r["scale"].as_str().unwrap().contains("cut to 2 text and 1 vision layers"));
    assert_eq!(r["first_token_agreement"], 1.0);
    let js = r["map_js_distance_max"].as_f64().unwrap();
    assert!(js > 0.0 && js < 0.02, "f16 vs f32 map JS distance {js}");
}

/// Full-size architectures are built without weights for their parameter count, and never
/// without --random-weights.
#[test]
fn bench_full_size_architectures_need_random_weights() {
    let out = radlens(&["bench", "--arch", "medgemma-4b", "--random-weights", "--dry-run"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("medgemma-4b: 4300079472 parameters"));
    let out = radlens(&["bench", "--arch", "llava-rad"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--random-weights"));
    let out = radlens(&["bench", "--arch", "gpt2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("llava-1.5-7b, medgemma-4b, llava-rad"));
}

/// `--gradcam --faithfulness --sinks`: Grad-CAM and relative maps on the attention map's grid and
/// geometry, one deletion row per method and size, the sinks and every pair's JS distance.
#[test]
fn probe_runs_the_trust_checks() {
    let image = fixture("reference-v1/images/img_b_rgb_300x240.png").display().to_string();
    let report = json_out(&[
        "probe",
        "--model",
        &llava_dir(),
        "--image",
        &image,
        "--question",
        "Is there an effusion?",
        "--max-new-tokens",
        "2",
        "--gradcam",
        "--faithfulness",
        "--sinks",
        "--json",
    ]);
    let trust = &report["trust"];
    let maps = trust["maps"].as_array().unwrap();
    let methods: Vec<&str> = maps.iter().map(|m| m["provenance"]["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["gradcam", "relative"]);
    for m in maps {
        assert_eq!((m["h"].as_u64(), m["w"].as_u64()), (Some(4), Some(4)));
        assert_eq!(m["provenance"]["geometry"], report["map"]["provenance"]["geometry"]);
        let values: Vec<f64> = m["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(values.iter().all(|&v| v >= 0.0) && (values.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    assert_eq!(maps[0]["provenance"]["site"], "vision.blocks.1.output", "llava-tiny feeds block 1's output (-2 of 3) to the projector");
    let rows = trust["faithfulness"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 3, "k = 10, 25 x three methods");
    for r in rows {
        let (top, random) = (r["delta_top"].as_f64().unwrap(), r["delta_random"].as_f64().unwrap());
        assert_eq!(r["flagged"].as_bool().unwrap(), top.abs() <= random.abs());
        assert_eq!(r["random_draws"], 3);
    }
    assert_eq!(rows[0]["cells"], 2, "10% of 16 cells, rounded up");
    assert_eq!(trust["sinks"]["generic_prompt"], "Describe the image.");
    assert_eq!(trust["agreement"].as_array().unwrap().len(), 3);
}

/// Where attention cannot be captured (only layer 4, a sliding-window layer whose window ends
/// before the image), the map is Grad-CAM, labelled as a fallback with the reason.
#[test]
fn probe_falls_back_to_a_labelled_gradcam() {
    let image = fixture("reference-v1/images/img_b_rgb_300x240.png").display().to_string();
    let report = json_out(&[
        "probe",
        "--model",
        &gemma3_dir(),
        "--image",
        &image,
        "--question",
        "Is there a fracture?",
        "--max-new-tokens",
        "2",
        "--layers",
        "4",
        "--json",
    ]);
    let prov = &report["map"]["provenance"];
    assert_eq!(prov["method"], "gradcam");
    assert_eq!(prov["site"], "vision.blocks.1.output");
    assert!(prov["fallback_reason"].as_str().unwrap().contains("sliding-window"), "{prov}");
    assert_eq!((report["map"]["h"].as_u64(), report["map"]["w"].as_u64()), (Some(4), Some(4)));
}
