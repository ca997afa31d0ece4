//! LLaVA-Rad in its native release format against `fixtures/llava-rad-tiny-v1` (see its README):
//! the LoRA merge, the DINOv2-style trunk, chunk-wise tokenisation, logits within 1e-4, attention
//! rows within 1e-5, generated ids and text identical; the same from the PyTorch pickles alone.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use radlens::models::checkpoint::llava_rad::{self, LlavaRadParts, PartOverrides, assemble};
use radlens::models::generate::greedy;
use radlens::models::llava::Llava;
use radlens::models::probe::{AttentionRecorder, CapturePolicy, NoProbe, RowSelection};
use radlens::models::processor::Prompter;
use radlens::models::processor::llava::LlavaRadPrompter;

use crate::support::parity::{ATTN_TOL, Case, HIDDEN_TOL, LOGITS_TOL, assert_close, flat};
use crate::support::{Scratch, fixture};

fn release() -> PathBuf {
    fixture("llava-rad-tiny-v1/llava-rad-tiny")
}

fn case(name: &str) -> Case {
    Case::load_from(&format!("llava-rad-tiny-v1/reference/llava-rad-tiny/{name}"), &format!("llava-rad-tiny/{name}"))
}

fn load(dir: &Path) -> Llava {
    let parts = LlavaRadParts::locate(dir, &PartOverrides::default()).unwrap();
    llava_rad::load(&parts, DType::F32, &Device::Cpu).unwrap()
}

#[test]
fn the_lora_merge_gives_the_reference_weights() {
    let parts = LlavaRadParts::locate(&release(), &PartOverrides::default()).unwrap();
    let (_, store) = assemble(&parts, DType::F32).unwrap();
    let c = case("case0");
    for (name, canonical) in [
        ("merged.layers.0.self_attn.q_proj.weight", "language_model.model.layers.0.self_attn.q_proj.weight"),
        ("merged.layers.2.mlp.down_proj.weight", "language_model.model.layers.2.mlp.down_proj.weight"),
    ] {
        let (got, _, _) = store.load(canonical, &Device::Cpu).unwrap();
        assert_close(name, &flat(&got), &flat(c.t(name)), HIDDEN_TOL);
    }
    // Per-module sums of every merged weight: q, k, v, o, gate, up, down of each layer.
    let sums = c.t("merged.checksum_sum").to_vec2::<f64>().unwrap();
    let abs_sums = c.t("merged.checksum_abs_sum").to_vec2::<f64>().unwrap();
    let modules =
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];
    for (layer, (want_sum, want_abs)) in sums.iter().zip(&abs_sums).enumerate() {
        for (m, module) in modules.iter().enumerate() {
            let (w, _, _) = store.load(&format!("language_model.model.layers.{layer}.{module}.weight"), &Device::Cpu).unwrap();
            let w = w.to_dtype(DType::F64).unwrap();
            let sum = w.sum_all().unwrap().to_scalar::<f64>().unwrap();
            let abs = w.abs().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
            assert!((sum - want_sum[m]).abs() <= 1e-3, "layer {layer} {module}: sum {sum} vs {}", want_sum[m]);
            assert!((abs - want_abs[m]).abs() <= 1e-6 * want_abs[m], "layer {layer} {module}: abs sum {abs} vs {}", want_abs[m]);
        }
    }
}

#[test]
fn prompts_tokenize_chunkwise_like_tokenizer_image_token() {
    let model = load(&release());
    let prompter = LlavaRadPrompter::load(&release().join("base"), model.config().image_tokens()).unwrap();
    for name in ["case0", "case1", "case2"] {
        let c = case(name);
        let encoded = prompter.encode(c.manifest["question"].as_str().unwrap(), None).unwrap();
        assert_eq!(encoded.input_ids, c.ids("input_ids"), "{name}: input_ids");
        let positions: Vec<usize> = c.ids("image_token_positions").into_iter().map(|p| p as usize).collect();
        assert_eq!(encoded.image_positions, positions, "{name}: image span");
    }
}

fn check_generation(model: &Llava, prompter: &LlavaRadPrompter, c: &Case) {
    let name = &c.name;
    let input_ids = c.ids("input_ids");
    let want_ids = c.ids("generated_ids");
    let l = input_ids.len();
    let layers = model.config().text.num_layers;
    let policy = CapturePolicy {
        layers: (0..layers).collect(),
        rows: RowSelection { prompt_positions: vec![l - 1], decode_steps: true },
        prompt_len: l,
    };
    let mut recorder = AttentionRecorder::new(policy);
    let generation = greedy(model, &input_ids, c.t("pixel_values"), want_ids.len(), &mut recorder).unwrap();
    assert_eq!(generation.ids, want_ids, "{name}: generated ids");
    assert_eq!(prompter.tokenizer().decode(&generation.ids, true).unwrap(), c.manifest["generated_text"].as_str().unwrap(), "{name}: text");
    assert_close(&format!("{name} prompt_last_logits"), generation.prompt_last_logits(), &flat(c.t("prompt_last_logits")), LOGITS_TOL);
    for (k, logits) in generation.step_logits.iter().enumerate() {
        assert_close(&format!("{name} gen_logits[{k}]"), logits, &flat(&c.t("gen_logits").get(k).unwrap()), LOGITS_TOL);
    }
    for k in 0..want_ids.len() {
        for layer in 0..layers {
            let row = recorder.row(layer, l - 1 + k).unwrap();
            let want = c.t("gen_attn").get(k).unwrap().get(layer).unwrap();
            assert_close(&format!("{name} gen_attn[{k}] layer {layer}"), &row.probs, &flat(&want.narrow(1, 0, l + k).unwrap()), ATTN_TOL);
        }
    }
}

#[test]
fn logits_attention_and_generation_match_the_reference() {
    let model = load(&release());
    let prompter = LlavaRadPrompter::load(&release().join("base"), model.config().image_tokens()).unwrap();
    for name in ["case0", "case1", "case2"] {
        check_generation(&model, &prompter, &case(name));
    }
}

#[test]
fn the_dinov2_trunk_and_projector_match_on_case0() {
    let model = load(&release());
    let c = case("case0");
    let pv = c.t("pixel_values");
    let vision = model.vision();
    let states = vision.hidden_states(pv, vision.num_layers(), &mut NoProbe).unwrap();
    let want = c.t("vision.hidden_states");
    assert_eq!(states.len(), want.dim(0).unwrap());
    for (i, s) in states.iter().enumerate() {
        assert_close(&format!("vision.hidden_states[{i}]"), &flat(s), &flat(&want.get(i).unwrap()), HIDDEN_TOL);
    }
    assert_close(
        "vision.selected_features",
        &flat(&model.selected_features(pv, &mut NoProbe).unwrap()),
        &flat(c.t("vision.selected_features")),
        HIDDEN_TOL,
    );
    assert_close(
        "vision.projector_output",
        &flat(&model.image_features(pv, &mut NoProbe).unwrap()),
        &flat(c.t("vision.projector_output")),
        HIDDEN_TOL,
    );
}

/// The real Vicuna repo ships only `pytorch_model-*.bin` shards: the same model from them.
#[test]
fn the_base_loads_from_pytorch_pickles_alone() {
    let scratch = Scratch::new("llava-rad-pickles");
    let root = scratch.path().join("release");
    for sub in ["base", "llava-rad"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
        for entry in std::fs::read_dir(release().join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap() != "model.safetensors" {
                std::fs::copy(&path, root.join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    let model = load(&root);
    let prompter = LlavaRadPrompter::load(&root.join("base"), model.config().image_tokens()).unwrap();
    check_generation(&model, &prompter, &case("case1"));

    // A missing shard is named, with the index that lists it.
    std::fs::remove_file(root.join("base/pytorch_model-00002-of-00002.bin")).unwrap();
    let parts = LlavaRadParts::locate(&root, &PartOverrides::default()).unwrap();
    let err = llava_rad::load(&parts, DType::F32, &Device::Cpu).err().expect("load fails").to_string();
    assert!(err.contains("pytorch_model-00002-of-00002.bin"), "{err}");
}

#[test]
fn missing_parts_are_named() {
    let scratch = Scratch::new("llava-rad-missing");
    let repo = scratch.path().join("llava-rad");
    std::fs::create_dir_all(&repo).unwrap();
    for f in ["config.json", "adapter_config.json", "adapter_model.bin", "non_lora_trainables.bin", "biomedclipcxr_tiny.json"] {
        std::fs::copy(release().join("llava-rad").join(f), repo.join(f)).unwrap();
    }
    // No base/ beside it and no --base.
    let err = LlavaRadParts::locate(&repo, &PartOverrides::default()).unwrap_err().to_string();
    assert!(err.contains("--base"), "{err}");
    // With the base, the vision checkpoint config.json names is missing.
    let overrides = PartOverrides { base: Some(release().join("base")), vision_checkpoint: None };
    let err = LlavaRadParts::locate(&repo, &overrides).unwrap_err().to_string();
    assert!(err.contains("biomedclipcxr_518_checkpoint.pt") && err.contains("vision-tower checkpoint"), "{err}");
}
