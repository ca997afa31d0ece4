//! Parity with transformers on a tiny Qwen2.5-VL (`fixtures/qwen25vl-tiny-v1`, or the fixture
//! directory named by `RADLENS_QWEN25VL_FIXTURE`, same layout: `qwen25vl-tiny/`, `images/`,
//! `reference/qwen25vl-tiny/<case>/`). The engine takes the processor's normalised image
//! `[3, H, W]` (`pixel_image`) and patchifies it itself; from there: processor steps, mrope
//! positions, vision intermediates within 1e-4, logits within 1e-4, attention rows within 1e-5,
//! generated ids and text identical.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use radlens::models::VisionLanguageModel;
use radlens::models::generate::greedy;
use radlens::models::probe::{AttentionRecorder, CapturePolicy, NoProbe, RowSelection};
use radlens::models::processor::Prompter;
use radlens::models::processor::preprocess::{ImageProcessorConfig, load_image};
use radlens::models::processor::qwen25vl::QwenPrompter;
use radlens::models::qwen25vl::Qwen25Vl;

use crate::support::fixture;
use crate::support::parity::{ATTN_TOL, Case, HIDDEN_TOL, LOGITS_TOL, assert_close, flat};

const MODEL: &str = "qwen25vl-tiny";

fn root() -> PathBuf {
    std::env::var_os("RADLENS_QWEN25VL_FIXTURE").map_or_else(|| fixture("qwen25vl-tiny-v1"), PathBuf::from)
}

fn model_dir() -> PathBuf {
    root().join(MODEL)
}

/// Every case of the fixture, in name order.
fn cases() -> Vec<Case> {
    let dir = root().join("reference").join(MODEL);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no cases under {}", dir.display());
    names
        .iter()
        .map(|n| {
            let d = dir.join(n);
            let manifest = serde_json::from_str(&std::fs::read_to_string(d.join("manifest.json")).unwrap()).unwrap();
            let tensors = candle_core::safetensors::load(d.join("tensors.safetensors"), &Device::Cpu).unwrap();
            Case { name: format!("{MODEL}/{n}"), manifest, tensors }
        })
        .collect()
}

fn load() -> Qwen25Vl {
    Qwen25Vl::load(&model_dir(), DType::F32, &Device::Cpu).unwrap()
}

/// The engine's input: the processor's normalised image as a batch of one.
fn pixels(case: &Case) -> Tensor {
    case.t("pixel_image").unsqueeze(0).unwrap()
}

/// The largest |ours - transformers'| per tensor family over the cases, printed at the end of a
/// test (`--nocapture`) so the parity figures can be quoted.
#[derive(Default)]
struct Figures(std::collections::BTreeMap<&'static str, f32>);

impl Figures {
    fn check(&mut self, family: &'static str, what: &str, got: &[f32], want: &[f32], tol: f32) {
        assert_close(what, got, want, tol);
        let d = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let e = self.0.entry(family).or_default();
        *e = e.max(d);
    }
}

impl Drop for Figures {
    fn drop(&mut self) {
        for (family, d) in &self.0 {
            eprintln!("qwen25vl parity: {family}: max abs diff {d:.3e}");
        }
    }
}

fn i64s(t: &Tensor) -> Vec<i64> {
    t.flatten_all().unwrap().to_dtype(DType::I64).unwrap().to_vec1::<i64>().unwrap()
}

#[test]
fn the_processor_resizes_normalises_and_patchifies_as_transformers() {
    let model = load();
    let processor = ImageProcessorConfig::load(&model_dir()).unwrap();
    let mut figures = Figures::default();
    for case in cases() {
        let name = &case.name;
        let image = load_image(&root().join(case.manifest["image"].as_str().unwrap())).unwrap();
        let pre = processor.preprocess(&image).unwrap();
        let want = case.t("pixel_image");
        assert_eq!([3, pre.height, pre.width], want.dims(), "{name}: resized size");
        // PIL's 8-bit resize is reproduced exactly; only the f32 rescale differs from numpy's f64
        // one by a rounding.
        let ours = pre.to_tensor(&Device::Cpu).unwrap();
        figures.check("pixel_image", &format!("{name} pixel_image"), &flat(&ours), &flat(want), 1e-6);

        // Patchify (and the grid) from the stored image: exact.
        let patches = model.vision().patchify(&pixels(&case)).unwrap();
        assert_eq!(flat(&patches), flat(case.t("pixel_values")), "{name}: pixel_values");
        let (gh, gw) = model.vision().patch_grid(&pixels(&case)).unwrap();
        assert_eq!(vec![1, gh as i64, gw as i64], i64s(case.t("image_grid_thw")), "{name}: image_grid_thw");
        let (rows, cols) = model.image_grid(&pixels(&case)).unwrap();
        assert_eq!(
            vec![rows, cols],
            case.manifest["merged_grid_hw"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect::<Vec<_>>()
        );
    }
}

#[test]
fn chat_prompts_and_mrope_positions_match_the_processor_and_get_rope_index() {
    let model = load();
    let prompter = QwenPrompter::load(&model_dir(), model.config().image_token_id).unwrap();
    for case in cases() {
        let name = &case.name;
        let question = case.manifest["question"].as_str().unwrap();
        let system = case.manifest["system_prompt"].as_str();
        let (rows, cols) = model.image_grid(&pixels(&case)).unwrap();
        let encoded = prompter.encode_for_image(question, system, rows * cols).unwrap();
        assert_eq!(encoded.input_ids, case.ids("input_ids"), "{name}: input_ids");
        let want_positions: Vec<usize> = i64s(case.t("image_token_positions")).into_iter().map(|p| p as usize).collect();
        assert_eq!(encoded.image_positions, want_positions, "{name}: image token positions");

        let (positions, delta) = model.positions(&encoded.input_ids, Some((rows, cols))).unwrap();
        let want = case.t("position_ids"); // [3, L]
        for axis in 0..3 {
            let got: Vec<i64> = positions.iter().map(|p| p[axis]).collect();
            assert_eq!(got, i64s(&want.get(axis).unwrap()), "{name}: position_ids[{axis}]");
        }
        assert_eq!(vec![delta], i64s(case.t("rope_deltas")), "{name}: rope_deltas");
    }
}

#[test]
fn vision_intermediates_match_in_window_order() {
    let model = load();
    let mut figures = Figures::default();
    for case in cases() {
        let name = &case.name;
        let pv = pixels(&case);
        let (gh, gw) = model.vision().patch_grid(&pv).unwrap();
        let windows = model.vision().windows(gh, gw);
        let index: Vec<i64> = windows.window_index.iter().map(|&u| u as i64).collect();
        assert_eq!(index, i64s(case.t("vision.window_index")), "{name}: window_index");
        let cu: Vec<i64> = windows.cu_window_seqlens.iter().map(|&c| c as i64).collect();
        assert_eq!(cu, i64s(case.t("vision.cu_window_seqlens")), "{name}: cu_window_seqlens");

        let states = model.vision().hidden_states(&pv, &mut NoProbe).unwrap();
        figures.check(
            "vision.patch_embed",
            &format!("{name} vision.patch_embed"),
            &flat(&states[0]),
            &flat(case.t("vision.patch_embed")),
            HIDDEN_TOL,
        );
        // transformers' blocks run in window order: compare ours permuted the same way.
        let perm = case.t("vision.patch_permutation").to_dtype(DType::U32).unwrap();
        let want = case.t("vision.hidden_states");
        assert_eq!(states.len(), want.dim(0).unwrap(), "{name}: embeddings + blocks");
        for (i, s) in states.iter().enumerate() {
            let ordered = s.index_select(&perm, 0).unwrap();
            figures.check(
                "vision.hidden_states",
                &format!("{name} vision.hidden_states[{i}]"),
                &flat(&ordered),
                &flat(&want.get(i).unwrap()),
                HIDDEN_TOL,
            );
        }
        let features = model.encode_image(&pv, &mut NoProbe).unwrap();
        assert_eq!(features.dims()[..2], [gh / 2, gw / 2], "{name}: features on the token grid");
        figures.check(
            "vision.merger_output",
            &format!("{name} vision.merger_output"),
            &flat(&features),
            &flat(case.t("vision.merger_output")),
            HIDDEN_TOL,
        );
    }
}

#[test]
fn logits_attention_and_generation_match_transformers() {
    let model = load();
    let prompter = QwenPrompter::load(&model_dir(), model.config().image_token_id).unwrap();
    let layers = model.config().text.llama.num_layers;
    let mut figures = Figures::default();
    for case in cases() {
        let name = &case.name;
        let input_ids = case.ids("input_ids");
        let want_ids = case.ids("generated_ids");
        let l = input_ids.len();
        let policy = CapturePolicy {
            layers: (0..layers).collect(),
            rows: RowSelection { prompt_positions: (0..l).collect(), decode_steps: true },
            prompt_len: l,
        };
        let mut recorder = AttentionRecorder::new(policy);
        let generation = greedy(&model, &input_ids, &pixels(&case), want_ids.len(), &mut recorder).unwrap();

        assert_eq!(generation.ids, want_ids, "{name}: generated ids");
        let text = prompter.tokenizer().decode(&generation.ids, true).unwrap();
        assert_eq!(text, case.manifest["generated_text"].as_str().unwrap(), "{name}: generated text");
        figures.check(
            "prompt_last_logits",
            &format!("{name} prompt_last_logits"),
            generation.prompt_last_logits(),
            &flat(case.t("prompt_last_logits")),
            LOGITS_TOL,
        );
        let gen_logits = case.t("gen_logits");
        for (k, logits) in generation.step_logits.iter().enumerate() {
            figures.check("gen_logits", &format!("{name} gen_logits[{k}]"), logits, &flat(&gen_logits.get(k).unwrap()), LOGITS_TOL);
        }
        let prompt_attn = case.t("prompt_last_attn");
        for layer in 0..layers {
            let row = recorder.row(layer, l - 1).unwrap();
            figures.check(
                "prompt_last_attn",
                &format!("{name} text.blocks.{layer}.attn.pattern[{}]", l - 1),
                &row.probs,
                &flat(&prompt_attn.get(layer).unwrap()),
                ATTN_TOL,
            );
        }
        let gen_attn = case.t("gen_attn");
        for k in 0..want_ids.len() {
            for layer in 0..layers {
                let row = recorder.row(layer, l - 1 + k).unwrap();
                let want = gen_attn.get(k).unwrap().get(layer).unwrap();
                figures.check(
                    "gen_attn",
                    &format!("{name} gen_attn[{k}] layer {layer}"),
                    &row.probs,
                    &flat(&want.narrow(1, 0, l + k).unwrap()),
                    ATTN_TOL,
                );
            }
        }
        if let Some(full) = case.tensors.get("prompt_attn_full") {
            for layer in 0..layers {
                let want = full.get(layer).unwrap(); // [H, L, L]
                for q in 0..l {
                    let row = recorder.row(layer, q).unwrap();
                    figures.check(
                        "prompt_attn_full",
                        &format!("{name} prompt_attn_full layer {layer} query {q}"),
                        &row.probs,
                        &flat(&want.narrow(1, q, 1).unwrap()),
                        ATTN_TOL,
                    );
                }
            }
        }
    }
}

/// A checkpoint without one tensor: the error names it and the file it was looked for in.
#[test]
fn a_missing_tensor_is_named_with_its_file() {
    let scratch = crate::support::Scratch::new("qwen-missing-tensor");
    for f in std::fs::read_dir(model_dir()).unwrap() {
        let p = f.unwrap().path();
        if p.is_file() && p.file_name().unwrap() != "model.safetensors" {
            std::fs::copy(&p, scratch.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let mut tensors = candle_core::safetensors::load(model_dir().join("model.safetensors"), &Device::Cpu).unwrap();
    let gone = "visual.blocks.1.attn.qkv.bias";
    assert!(tensors.remove(gone).is_some() || tensors.remove(&format!("model.{gone}")).is_some(), "the fixture has {gone}");
    let file = scratch.path().join("model.safetensors");
    candle_core::safetensors::save(&tensors, &file).unwrap();
    let msg = Qwen25Vl::load(scratch.path(), DType::F32, &Device::Cpu).err().expect("a missing tensor fails").to_string();
    assert!(msg.contains(gone) && msg.contains(&file.display().to_string()), "{msg}");
}

/// `radlens probe` on a non-square image: the prompt has the image's own token count, the map
/// has its grid, and the answer is transformers'.
#[test]
fn probe_draws_the_map_on_the_images_own_grid() {
    for case in cases() {
        let image = root().join(case.manifest["image"].as_str().unwrap());
        let want_ids = case.ids("generated_ids");
        let mut args = vec![
            "probe".to_string(),
            "--model".into(),
            model_dir().display().to_string(),
            "--image".into(),
            image.display().to_string(),
            "--question".into(),
            case.manifest["question"].as_str().unwrap().into(),
            "--max-new-tokens".into(),
            want_ids.len().to_string(),
            "--json".into(),
        ];
        if let Some(system) = case.manifest["system_prompt"].as_str() {
            args.extend(["--system".into(), system.into()]);
        }
        let out = crate::support::radlens(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}: {}", case.name, String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["architecture"], "qwen2_5_vl");
        assert_eq!(report["input_ids"], case.manifest["input_ids"], "{}: prompt", case.name);
        assert_eq!(report["generated_ids"], case.manifest["generated_ids"], "{}: answer", case.name);
        let grid = &case.manifest["merged_grid_hw"];
        let map = &report["map"];
        assert_eq!((&map["h"], &map["w"]), (&grid[0], &grid[1]), "{}: map grid", case.name);
        assert_ne!(grid[0], grid[1], "{}: the fixture's images are not square", case.name);
        let values = map["values"].as_array().unwrap();
        assert_eq!(values.len() as u64, grid[0].as_u64().unwrap() * grid[1].as_u64().unwrap());

        // `--dump` keeps the model input [1, 3, H, W]; `--pixel-values` reads it back.
        let scratch = crate::support::Scratch::new("qwen-dump");
        let dump = scratch.path().join("dump.safetensors");
        let mut with_dump = args.clone();
        with_dump.extend(["--dump".into(), dump.display().to_string()]);
        let out = crate::support::radlens(&with_dump.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}: {}", case.name, String::from_utf8_lossy(&out.stderr));
        let image_at = args.iter().position(|a| a == "--image").unwrap();
        let mut from_pixels = args.clone();
        from_pixels.splice(image_at..image_at + 2, ["--pixel-values".to_string(), dump.display().to_string()]);
        let out = crate::support::radlens(&from_pixels.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}: {}", case.name, String::from_utf8_lossy(&out.stderr));
        let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(again["generated_ids"], report["generated_ids"], "{}: from the dumped pixels", case.name);
        assert_eq!((&again["map"]["h"], &again["map"]["w"]), (&grid[0], &grid[1]));
    }
}

/// `radlens study` with Qwen2.5-VL: each record's map lies on its own image's grid, with the
/// prompt prefix shared between a study's variants, Grad-CAM and the box conditions.
#[test]
fn a_study_records_maps_on_each_images_grid() {
    let scratch = crate::support::Scratch::new("qwen-study");
    // Two variants per case image, with a box inside the image.
    let mut csv = String::from(
        "study_id,image_path,question,answer,finding,question_variant,variant_index,strategy,polarity,roi_x,roi_y,roi_w,roi_h\n",
    );
    let mut grids = std::collections::BTreeMap::new();
    for case in cases() {
        let m = &case.manifest;
        let image = m["image"].as_str().unwrap().trim_start_matches("images/").to_string();
        let study = image.replace('.', "_");
        if grids
            .insert(study.clone(), (m["merged_grid_hw"][0].as_u64().unwrap() as usize, m["merged_grid_hw"][1].as_u64().unwrap() as usize))
            .is_some()
        {
            continue;
        }
        let (w, h) = (m["image_size_wh"][0].as_u64().unwrap(), m["image_size_wh"][1].as_u64().unwrap());
        for (k, q) in ["Is there a fracture in this image?", "Is a fracture present?"].iter().enumerate() {
            csv.push_str(&format!("{study},{image},{q},yes,fracture,v{k},{k},phrasing,1,1,1,{},{}\n", w / 2, h / 2));
        }
    }
    let csv = scratch.write("study.csv", &csv);
    let out = scratch.path().join("run");
    let model = format!("qwen={}", model_dir().display());
    let images = root().join("images");
    let run = crate::support::radlens(&[
        "study",
        "--csv",
        csv.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--model",
        &model,
        "--out",
        out.to_str().unwrap(),
        "--max-new-tokens",
        "3",
        "--conditions",
        "roi_occluded,control_occluded",
        "--gradcam",
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let records = crate::support::run_records(&out);
    let mut maps = 0;
    for r in &records {
        assert!(r.error.is_none(), "{}: {:?}", r.sample_id, r.error);
        if let Some(map) = &r.map {
            let g = map.provenance.geometry;
            assert_eq!((g.h, g.w), grids[&r.study_id], "{}: the map lies on the image's grid", r.sample_id);
            assert_eq!(map.values.len(), g.h * g.w);
            maps += 1;
        }
    }
    assert_eq!(maps, 2 * grids.len(), "one map per row of the image pass");
}

/// Both config layouts (hub: text fields at the top level with `rope_scaling`; transformers 5:
/// `text_config` with `rope_parameters`) resolve to the same config, and both tensor layouts
/// (hub: `visual.*`, `model.*`; transformers 5: `model.visual.*`, `model.language_model.*`) load
/// the same model.
#[test]
fn hub_and_transformers_5_layouts_load_alike() {
    use radlens::models::qwen25vl::Config;
    let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model_dir().join("config.json")).unwrap()).unwrap();
    let both = Config::from_json(&value).unwrap();
    let mut hub = value.clone();
    hub.as_object_mut().unwrap().remove("text_config");
    assert_eq!(Config::from_json(&hub).unwrap(), both, "hub config (no text_config)");
    let keep =
        ["model_type", "text_config", "vision_config", "image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"];
    let mut nested = value.clone();
    nested.as_object_mut().unwrap().retain(|k, _| keep.contains(&k.as_str()));
    assert_eq!(Config::from_json(&nested).unwrap(), both, "transformers 5 config (text_config only)");

    let scratch = crate::support::Scratch::new("qwen-t5-layout");
    for f in std::fs::read_dir(model_dir()).unwrap() {
        let p = f.unwrap().path();
        if p.is_file() && p.file_name().unwrap() != "model.safetensors" {
            std::fs::copy(&p, scratch.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let tensors = candle_core::safetensors::load(model_dir().join("model.safetensors"), &Device::Cpu).unwrap();
    let renamed: std::collections::HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, t)| {
            let k = match (k.strip_prefix("visual."), k.strip_prefix("model.")) {
                (Some(rest), _) => format!("model.visual.{rest}"),
                (_, Some(rest)) if !rest.starts_with("visual.") && !rest.starts_with("language_model.") => {
                    format!("model.language_model.{rest}")
                }
                _ => k,
            };
            (k, t)
        })
        .collect();
    assert!(
        renamed.keys().any(|k| k.starts_with("model.language_model.layers.")) && renamed.keys().any(|k| k.starts_with("model.visual."))
    );
    candle_core::safetensors::save(&renamed, scratch.path().join("model.safetensors")).unwrap();
    let (a, b) = (load(), Qwen25Vl::load(scratch.path(), DType::F32, &Device::Cpu).unwrap());
    let case = &cases()[0];
    let logits = |m: &Qwen25Vl| {
        let f = m.encode_image(&pixels(case), &mut NoProbe).unwrap();
        let mut cache = m.new_cache();
        flat(&m.prefill_from(&case.ids("input_ids"), 0, &f, &mut cache, &mut NoProbe).unwrap())
    };
    assert_eq!(logits(&a), logits(&b), "the same weights under either layout");
}

/// Occlusion (G1) on a non-square input: `g x g` cells of `H/g x W/g` pixels, the record keeps
/// both sides, and the occlusion map lies over the same crop as the attention map.
#[test]
fn occlusion_runs_on_a_non_square_input() {
    let case = &cases()[0];
    let image = root().join(case.manifest["image"].as_str().unwrap());
    let out = crate::support::radlens(&[
        "probe",
        "--model",
        model_dir().to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--question",
        case.manifest["question"].as_str().unwrap(),
        "--max-new-tokens",
        "2",
        "--occlusion",
        "--occlusion-grid",
        "4",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let occlusion = &report["grounding"]["occlusion"];
    let (h, w) = (pixels(case).dim(2).unwrap(), pixels(case).dim(3).unwrap());
    assert_ne!(h, w);
    assert_eq!(occlusion["grid"], 4);
    assert_eq!(occlusion["input_hw"], serde_json::json!([h, w]));
    assert_eq!(occlusion["input_side"], h.min(w));
    assert_eq!(occlusion["support"].as_array().unwrap().len(), 16);
}
