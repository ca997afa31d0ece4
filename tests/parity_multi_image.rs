//! Parity with transformers on prompts with several images (`fixtures/multi-image-v1`, or the
//! fixture directory named by `RADLENS_MULTI_IMAGE_FIXTURE`, same layout): a tiny Gemma3 with two
//! or three images per turn (each image its own bidirectional block) and a tiny MAIRA-2 (RAD-DINO
//! tower with interpolated position embeddings, 4-layer projector, Llama with linear RoPE 1.5)
//! with a current frontal, lateral and prior. Per case: prompt ids (and Gemma3's token types),
//! each image's token span, preprocessing from the image files, vision outputs per image, logits
//! within 1e-4, attention rows within 1e-5 (all of them, split per image too, and the full prompt
//! attention of `two_prior_current`), generated ids and text identical. `--nocapture` prints the
//! largest difference per tensor family and case.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use candle_core::{DType, Device, Module, Tensor};
use radlens::models::VisionLanguageModel;
use radlens::models::gemma3::Gemma3;
use radlens::models::generate::greedy_from;
use radlens::models::llava::{Llava, VisionTower};
use radlens::models::loader::load_engine;
use radlens::models::probe::{AttentionRecorder, CapturePolicy, NoProbe, RowSelection};
use radlens::models::processor::gemma3::Gemma3Prompter;
use radlens::models::processor::llava::LlavaPrompter;
use radlens::models::processor::maira2::{Maira2Prompter, Sections, Task};
use radlens::models::processor::preprocess::{ImageProcessorConfig, load_image};
use radlens::models::processor::{ImageRole, PromptImage, Prompter};
use radlens::models::projector::Projector;

use crate::support::fixture;
use crate::support::parity::{ATTN_TOL, Case, HIDDEN_TOL, LOGITS_TOL, assert_close, flat};

const GEMMA3: &str = "gemma3-tiny-multi";
const MAIRA2: &str = "maira2-tiny";

fn root() -> PathBuf {
    std::env::var_os("RADLENS_MULTI_IMAGE_FIXTURE").map_or_else(|| fixture("multi-image-v1"), PathBuf::from)
}

fn model_dir(model: &str) -> PathBuf {
    root().join(model)
}

/// Every case of `model`, in name order.
fn cases(model: &str) -> Vec<Case> {
    let dir = root().join("reference").join(model);
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
            Case { name: format!("{model}/{n}"), manifest, tensors }
        })
        .collect()
}

/// The largest |ours - transformers'| per case and tensor family, printed when the test ends.
#[derive(Default)]
struct Figures(BTreeMap<(String, &'static str), f32>);

impl Figures {
    fn check(&mut self, case: &str, family: &'static str, what: &str, got: &[f32], want: &[f32], tol: f32) {
        assert_close(&format!("{case} {what}"), got, want, tol);
        let d = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let e = self.0.entry((case.to_string(), family)).or_default();
        *e = e.max(d);
    }
}

impl Drop for Figures {
    fn drop(&mut self) {
        for ((case, family), d) in &self.0 {
            eprintln!("multi-image parity: {case}: {family}: max abs diff {d:.3e}");
        }
    }
}

fn i64s(t: &Tensor) -> Vec<i64> {
    t.flatten_all().unwrap().to_dtype(DType::I64).unwrap().to_vec1::<i64>().unwrap()
}

fn strs(case: &Case, key: &str) -> Vec<String> {
    case.manifest[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

fn roles(case: &Case) -> Vec<ImageRole> {
    strs(case, "image_roles").iter().map(|r| r.parse().unwrap()).collect()
}

/// The stored per-image token positions as `[start, end)` spans.
fn stored_spans(case: &Case) -> Vec<Range<usize>> {
    let per_image = case.t("image_token_positions_per_image");
    (0..per_image.dim(0).unwrap())
        .map(|i| {
            let p = i64s(&per_image.get(i).unwrap());
            let (start, end) = (p[0] as usize, *p.last().unwrap() as usize + 1);
            assert_eq!(p, (start as i64..end as i64).collect::<Vec<_>>(), "{}: image {i} is one run", case.name);
            start..end
        })
        .collect()
}

/// Each image of the case, `[1, 3, S, S]`, in prompt order.
fn images(case: &Case) -> Vec<Tensor> {
    let pv = case.t("pixel_values");
    (0..pv.dim(0).unwrap()).map(|i| pv.narrow(0, i, 1).unwrap()).collect()
}

fn gemma3() -> (Gemma3, Gemma3Prompter) {
    let dir = model_dir(GEMMA3);
    let model = Gemma3::load(&dir, DType::F32, &Device::Cpu).unwrap();
    let prompter = Gemma3Prompter::load(&dir, model.config().image_token_id, model.config().image_tokens()).unwrap();
    (model, prompter)
}

fn maira2() -> (Llava, Maira2Prompter) {
    let dir = model_dir(MAIRA2);
    let (cfg, store) = radlens::models::maira2::open(&dir).unwrap();
    let model = Llava::from_store(cfg, store, DType::F32, &Device::Cpu, Default::default()).unwrap();
    let prompter = Maira2Prompter::load(&dir, model.config().image_token_id, model.config().image_tokens()).unwrap();
    (model, prompter)
}

/// Preprocessing from the image files against the stored `pixel_values`, image by image.
fn check_preprocessing(case: &Case, processor: &ImageProcessorConfig, tol: f32, figures: &mut Figures) {
    let pv = case.t("pixel_values");
    for (i, file) in strs(case, "images").iter().enumerate() {
        let pre = processor.preprocess(&load_image(&root().join(file)).unwrap()).unwrap();
        let want = pv.get(i).unwrap();
        assert_eq!([3, pre.height, pre.width], want.dims(), "{}: image {i} size", case.name);
        let ours = flat(&pre.to_tensor(&Device::Cpu).unwrap());
        figures.check(&case.name, "pixel_values", &format!("pixel_values[{i}]"), &ours, &flat(&want), tol);
    }
}

/// Logits, every attention row (and per image), the full prompt attention where stored, and
/// greedy ids and text, from the stored pixel values and prompt.
fn check_generation(model: &dyn VisionLanguageModel, tokenizer: &dyn Prompter, case: &Case, figures: &mut Figures) {
    let name = &case.name;
    let input_ids = case.ids("input_ids");
    let want_ids = case.ids("generated_ids");
    let l = input_ids.len();
    let layers = model.summary().num_layers;
    let policy = CapturePolicy {
        layers: (0..layers).collect(),
        rows: RowSelection { prompt_positions: (0..l).collect(), decode_steps: true },
        prompt_len: l,
    };
    let mut recorder = AttentionRecorder::new(policy);
    let features = model.encode_image_list(&images(case), &mut NoProbe).unwrap();
    let generation = greedy_from(model, &input_ids, &features, None, want_ids.len(), &mut recorder).unwrap();

    assert_eq!(generation.ids, want_ids, "{name}: generated ids");
    let text = tokenizer.tokenizer().decode(&generation.ids, true).unwrap();
    assert_eq!(text, case.manifest["generated_text"].as_str().unwrap(), "{name}: generated text");
    figures.check(name, "logits", "prompt_last_logits", generation.prompt_last_logits(), &flat(case.t("prompt_last_logits")), LOGITS_TOL);
    let gen_logits = case.t("gen_logits");
    for (k, logits) in generation.step_logits.iter().enumerate() {
        figures.check(name, "logits", &format!("gen_logits[{k}]"), logits, &flat(&gen_logits.get(k).unwrap()), LOGITS_TOL);
    }

    let spans = stored_spans(case);
    // [.., H, n, N] rows of one query over each image's tokens.
    let per_image = |row: &[f32], heads: usize, keys: usize| -> Vec<f32> {
        (0..heads).flat_map(|h| spans.iter().flat_map(move |s| s.clone().map(move |p| row[h * keys + p]))).collect()
    };
    let (prompt_attn, prompt_attn_image) = (case.t("prompt_last_attn"), case.t("prompt_last_attn_image"));
    for layer in 0..layers {
        let row = recorder.row(layer, l - 1).unwrap();
        let what = format!("text.blocks.{layer}.attn.pattern[{}]", l - 1);
        figures.check(name, "attention rows", &what, &row.probs, &flat(&prompt_attn.get(layer).unwrap()), ATTN_TOL);
        let split = per_image(&row.probs, row.heads, row.keys);
        figures.check(name, "attention per image", &what, &split, &flat(&prompt_attn_image.get(layer).unwrap()), ATTN_TOL);
    }
    let (gen_attn, gen_attn_image) = (case.t("gen_attn"), case.t("gen_attn_image"));
    for k in 0..want_ids.len() {
        for layer in 0..layers {
            let row = recorder.row(layer, l - 1 + k).unwrap();
            let want = gen_attn.get(k).unwrap().get(layer).unwrap();
            let what = format!("gen_attn[{k}] layer {layer}");
            figures.check(name, "attention rows", &what, &row.probs, &flat(&want.narrow(1, 0, l + k).unwrap()), ATTN_TOL);
            let split = per_image(&row.probs, row.heads, row.keys);
            let want_split = flat(&gen_attn_image.get(k).unwrap().get(layer).unwrap());
            figures.check(name, "attention per image", &what, &split, &want_split, ATTN_TOL);
        }
    }
    if let Some(full) = case.tensors.get("prompt_attn_full") {
        // [NL, H, L, L]: every prompt row, which shows one bidirectional block per image.
        for layer in 0..layers {
            let want = full.get(layer).unwrap();
            for q in 0..l {
                let row = recorder.row(layer, q).unwrap();
                let what = format!("prompt_attn_full layer {layer} query {q}");
                figures.check(name, "full prompt attention", &what, &row.probs, &flat(&want.narrow(1, q, 1).unwrap()), ATTN_TOL);
            }
        }
    }
}

#[test]
fn gemma3_prompts_place_each_image_after_its_label() {
    let (_, prompter) = gemma3();
    for case in cases(GEMMA3) {
        let name = &case.name;
        let images: Vec<PromptImage> = roles(&case).into_iter().map(|role| PromptImage { role, tokens: 16 }).collect();
        let labelled = case.manifest["layout"].as_str() == Some("labelled");
        let question = case.manifest["question"].as_str().unwrap();
        let system = case.manifest["system_prompt"].as_str();
        let encoded = prompter.encode_images_labelled(question, system, &images, labelled).unwrap();
        assert_eq!(encoded.prompt.input_ids, case.ids("input_ids"), "{name}: input_ids");
        let type_ids: Vec<u32> =
            (0..encoded.prompt.input_ids.len()).map(|i| u32::from(encoded.prompt.image_positions.contains(&i))).collect();
        assert_eq!(type_ids, case.ids("token_type_ids"), "{name}: token_type_ids");
        assert_eq!(encoded.image_spans, stored_spans(&case), "{name}: image spans");
        assert_eq!(encoded.order, (0..images.len()).collect::<Vec<_>>(), "{name}: the order given");
        if labelled {
            // The trait's multi-image prompt is the labelled one.
            assert_eq!(prompter.encode_images(question, system, &images).unwrap(), encoded, "{name}");
        }
    }
}

#[test]
fn gemma3_preprocessing_and_vision_per_image_match() {
    let (model, _) = gemma3();
    let processor = ImageProcessorConfig::load(&model_dir(GEMMA3)).unwrap();
    let mut figures = Figures::default();
    for case in cases(GEMMA3) {
        let name = &case.name;
        // The `image` crate's bilinear resize vs PIL's (8-bit between passes): one grey level,
        // 2/255 after Gemma3's (x - 0.5) / 0.5.
        check_preprocessing(&case, &processor, 2.0 / 255.0 + 1e-6, &mut figures);
        for (i, pv) in images(&case).iter().enumerate() {
            let pooled = model.pooled_features(pv, &mut NoProbe).unwrap();
            let want = |key: &str| flat(&case.t(key).get(i).unwrap());
            figures.check(name, "vision", &format!("vision.pooled[{i}]"), &flat(&pooled), &want("vision.pooled"), HIDDEN_TOL);
            let normed = model.pooled_normed(pv, &mut NoProbe).unwrap();
            figures.check(name, "vision", &format!("vision.pooled_normed[{i}]"), &flat(&normed), &want("vision.pooled_normed"), HIDDEN_TOL);
            let projected = model.encode_image(pv, &mut NoProbe).unwrap();
            let what = format!("vision.projector_output[{i}]");
            figures.check(name, "vision", &what, &flat(&projected), &want("vision.projector_output"), HIDDEN_TOL);
            if case.tensors.contains_key("vision.last_hidden_state") {
                let last = model.vision().forward(pv, &mut NoProbe).unwrap();
                let what = format!("vision.last_hidden_state[{i}]");
                figures.check(name, "vision", &what, &flat(&last), &want("vision.last_hidden_state"), HIDDEN_TOL);
            }
        }
    }
}

#[test]
fn gemma3_logits_attention_and_generation_match_with_one_block_per_image() {
    let (model, prompter) = gemma3();
    let mut figures = Figures::default();
    for case in cases(GEMMA3) {
        check_generation(&model, &prompter, &case, &mut figures);
        if let Some(want) = case.tensors.get("prompt_logits") {
            // Every position's logits: a single block over all images is off by 1.5 here.
            let features = model.encode_image_list(&images(&case), &mut NoProbe).unwrap();
            let got = model.prompt_logits(&case.ids("input_ids"), &features).unwrap();
            figures.check(&case.name, "logits", "prompt_logits (every position)", &flat(&got), &flat(want), LOGITS_TOL);
        }
        // The blocks: one per contiguous run of image tokens, however close the images are.
        let blocks = model.image_blocks(&case.ids("input_ids")).block;
        for (i, span) in stored_spans(&case).iter().enumerate() {
            assert!(span.clone().all(|p| blocks[p] == i as i32), "{}: image {i} is block {i}", case.name);
        }
    }
}

/// MAIRA-2's task and sections as the case's manifest holds them.
fn maira2_task(case: &Case) -> (Task, Sections) {
    let m = &case.manifest;
    let text = |k: &str| m[k].as_str().map(str::to_string);
    match m["task"].as_str().unwrap() {
        "phrase" => (Task::PhraseGrounding { phrase: text("phrase").unwrap() }, Sections::default()),
        "reporting" => (
            Task::Reporting { grounding: m["grounding"].as_bool().unwrap() },
            Sections {
                indication: text("indication"),
                technique: text("technique"),
                comparison: text("comparison"),
                prior_report: text("prior_report"),
            },
        ),
        other => panic!("{}: task {other}", case.name),
    }
}

#[test]
fn maira2_prompts_follow_its_processor_whatever_order_the_images_come_in() {
    let (model, prompter) = maira2();
    assert_eq!(model.config().image_tokens(), 25);
    for case in cases(MAIRA2) {
        let name = &case.name;
        let (task, sections) = maira2_task(&case);
        // Asked in reverse order: MAIRA-2 still places current, lateral, prior.
        let mut images: Vec<PromptImage> = roles(&case).into_iter().map(|role| PromptImage { role, tokens: 25 }).collect();
        images.reverse();
        let encoded = prompter.encode_task(&task, &sections, None, &images).unwrap();
        assert_eq!(encoded.prompt.input_ids, case.ids("input_ids"), "{name}: input_ids");
        assert_eq!(encoded.image_spans, stored_spans(&case), "{name}: image spans");
        assert_eq!(encoded.roles, roles(&case), "{name}: roles in prompt order");
        let n = images.len();
        assert_eq!(encoded.order, (0..n).rev().collect::<Vec<_>>(), "{name}: request index per span");
    }
}

#[test]
fn maira2_preprocessing_vision_and_projector_per_image_match() {
    let (model, _) = maira2();
    let processor = radlens::models::maira2::image_processor(&model_dir(MAIRA2)).unwrap();
    let VisionTower::Dino(tower) = model.vision() else { panic!("MAIRA-2 has a DINOv2 tower") };
    let Projector::Sequential(projector) = model.projector() else { panic!("MAIRA-2 has a sequential projector") };
    let mut figures = Figures::default();
    for case in cases(MAIRA2) {
        let name = &case.name;
        // Greyscale, min-max stretch, PIL's 8-bit bicubic resize, centre crop: exact up to the
        // f32 normalisation.
        check_preprocessing(&case, &processor, 1e-6, &mut figures);
        // 70 px input, 4 x 4 table: the bicubic interpolation runs.
        let pos = tower.position_embeddings(5, 5, 70, 70).unwrap();
        let want_pos = flat(case.t("vision.position_embeddings_interpolated"));
        figures.check(name, "vision", "vision.position_embeddings_interpolated", &flat(&pos), &want_pos, HIDDEN_TOL);
        for (i, pv) in images(&case).iter().enumerate() {
            let want = |key: &str| case.t(key).get(i).unwrap();
            let states = tower.hidden_states(pv, tower.loaded_blocks(), &mut NoProbe).unwrap();
            let want_states = want("vision.hidden_states");
            assert_eq!(states.len(), want_states.dim(0).unwrap(), "{name}: embeddings + blocks");
            for (b, s) in states.iter().enumerate() {
                let what = format!("vision.hidden_states[{i}][{b}]");
                figures.check(name, "vision", &what, &flat(s), &flat(&want_states.get(b).unwrap()), HIDDEN_TOL);
            }
            let patches = (states[0].narrow(1, 1, 25).unwrap() - pos.narrow(1, 1, 25).unwrap()).unwrap();
            let what = format!("vision.patch_embeddings[{i}]");
            figures.check(name, "vision", &what, &flat(&patches), &flat(&want("vision.patch_embeddings")), HIDDEN_TOL);
            let map = tower.feature_norm(states.last().unwrap()).unwrap();
            figures.check(name, "vision", &format!("vision.feature_map[{i}]"), &flat(&map), &flat(&want("vision.feature_map")), HIDDEN_TOL);
            let selected = model.selected_features(pv, &mut NoProbe).unwrap();
            let what = format!("vision.selected_features[{i}]");
            figures.check(name, "vision", &what, &flat(&selected), &flat(&want("vision.selected_features")), HIDDEN_TOL);
            if let Some(linears) = case.tensors.get("vision.projector_linear_outputs") {
                for (k, out) in projector.linear_outputs(&selected).unwrap().iter().enumerate() {
                    let what = format!("vision.projector_linear_outputs[{i}][{k}]");
                    figures.check(name, "projector", &what, &flat(out), &flat(&linears.get(i).unwrap().get(k).unwrap()), HIDDEN_TOL);
                }
            }
            let projected = model.encode_image(pv, &mut NoProbe).unwrap();
            assert_eq!(flat(&projected), flat(&projector.forward(&selected).unwrap()), "{name}: encode_image = projector(selected)");
            let what = format!("vision.projector_output[{i}]");
            figures.check(name, "projector", &what, &flat(&projected), &flat(&want("vision.projector_output")), HIDDEN_TOL);
        }
    }
}

#[test]
fn maira2_logits_attention_and_generation_match_transformers() {
    let (model, prompter) = maira2();
    let mut figures = Figures::default();
    for case in cases(MAIRA2) {
        check_generation(&model, &prompter, &case, &mut figures);
    }
}

/// The loader tells MAIRA-2 from llava-hf by `architectures`, and Grad-CAM differentiates at the
/// last RAD-DINO block, before the final LayerNorm that the features take.
#[test]
fn maira2_loads_as_an_engine_with_its_grad_cam_site() {
    let engine = load_engine(&model_dir(MAIRA2), &Default::default(), DType::F32, &Device::Cpu, Default::default()).unwrap();
    let summary = engine.model.summary();
    assert_eq!((summary.architecture, summary.grid_h, summary.grid_w, summary.image_tokens), ("maira2", 5, 5, 25));
    assert!(engine.image_processor.grey_stretch);
    let case = &cases(MAIRA2)[0];
    let pv = &images(case)[0];
    let site = engine.model.gradcam_site(pv).unwrap();
    assert_eq!((site.name.to_string().as_str(), site.skip, site.patch_grid, site.pool), ("vision.blocks.2.output", 1, (5, 5), 1));
    let through = engine.model.features_from_gradcam_block(&engine.model.gradcam_activations(pv).unwrap(), &site).unwrap();
    assert_close("gradcam path", &flat(&through), &flat(&engine.model.encode_image(pv, &mut NoProbe).unwrap()), 1e-6);
    // The generic prompt: the current frontal image, the question as the INDICATION.
    let prompt = engine.prompter.encode("Is there an effusion?", None).unwrap();
    assert_eq!(prompt.image_positions.len(), 25);
    assert!(engine.prompter.tokenizer().decode(&prompt.input_ids, false).unwrap().contains("INDICATION: Is there an effusion?"));
}

#[test]
fn too_many_images_or_an_unknown_role_is_refused_by_name() {
    let (_, prompter) = maira2();
    let img = |role| PromptImage { role, tokens: 25 };
    let four = [img(ImageRole::Current), img(ImageRole::Lateral), img(ImageRole::Prior), img(ImageRole::Prior)];
    let err = prompter.encode_images("Q?", None, &four).unwrap_err().to_string();
    assert!(err.contains("MAIRA-2 takes at most 3 images") && err.contains("not 4"), "{err}");
    let err = prompter.encode_images("Q?", None, &[img(ImageRole::Current), img(ImageRole::Current)]).unwrap_err().to_string();
    assert!(err.contains("2 `current` images"), "{err}");
    let err = "oblique".parse::<ImageRole>().unwrap_err().to_string();
    assert!(err.contains("unknown image role \"oblique\""), "{err}");
    // Phrase grounding takes the frontal image alone.
    let phrase = Task::PhraseGrounding { phrase: "Effusion.".into() };
    let err = prompter.encode_task(&phrase, &Sections::default(), None, &[img(ImageRole::Current), img(ImageRole::Prior)]).unwrap_err();
    assert!(err.to_string().contains("current frontal image only"), "{err}");
    // A wrong token count names the image.
    let err = prompter.encode_images("Q?", None, &[PromptImage { role: ImageRole::Current, tokens: 9 }]).unwrap_err().to_string();
    assert!(err.contains("9 image tokens") && err.contains("25 per image"), "{err}");

    // Single-image models keep their prompts and refuse a second image.
    let llava_dir = fixture("reference-v1/llava-tiny");
    let llava = LlavaPrompter::load(&llava_dir, 638, 16).unwrap();
    let one = llava.encode_images("Q?", None, &[PromptImage { role: ImageRole::Current, tokens: 16 }]).unwrap();
    assert_eq!(one.prompt, llava.encode("Q?", None).unwrap());
    assert_eq!(one.image_spans.len(), 1);
    let err = llava.encode_images("Q?", None, &[img(ImageRole::Current), img(ImageRole::Prior)]).unwrap_err().to_string();
    assert!(err.contains("one image per prompt, not 2"), "{err}");
}
