//! Parity with transformers on `fixtures/reference-v1/gemma3-tiny`: from the stored
//! `pixel_values`, logits within 1e-4, attention rows within 1e-5 (the full prompt attention of
//! case0 too, which shows the sliding windows and the bidirectional image block), generated ids
//! and text identical, case0's vision intermediates within 1e-4.

use std::path::PathBuf;

use candle_core::{DType, Device};
use radlens::models::gemma3::Gemma3;
use radlens::models::generate::greedy;
use radlens::models::probe::{AttentionRecorder, CapturePolicy, NoProbe, RowSelection};
use radlens::models::processor::Prompter;
use radlens::models::processor::gemma3::Gemma3Prompter;

use crate::support::fixture;
use crate::support::parity::{ATTN_TOL, Case, HIDDEN_TOL, LOGITS_TOL, assert_close, flat};

fn model_dir() -> PathBuf {
    fixture("reference-v1/gemma3-tiny")
}

fn cases() -> Vec<Case> {
    ["case0", "case1", "case2"].into_iter().map(|c| Case::load("gemma3-tiny", c)).collect()
}

#[test]
fn chat_prompts_tokenize_exactly_as_the_processor_did() {
    let model = Gemma3::load(&model_dir(), DType::F32, &Device::Cpu).unwrap();
    let prompter = Gemma3Prompter::load(&model_dir(), model.config().image_token_id, model.config().image_tokens()).unwrap();
    for case in cases() {
        let question = case.manifest["question"].as_str().unwrap();
        let system = case.manifest["system_prompt"].as_str();
        let encoded = prompter.encode(question, system).unwrap();
        assert_eq!(encoded.input_ids, case.ids("input_ids"), "{}: input_ids", case.name);
        let type_ids: Vec<u32> = (0..encoded.input_ids.len()).map(|i| u32::from(encoded.image_positions.contains(&i))).collect();
        assert_eq!(type_ids, case.ids("token_type_ids"), "{}: token_type_ids", case.name);
    }
}

#[test]
fn logits_attention_and_generation_match_transformers() {
    let model = Gemma3::load(&model_dir(), DType::F32, &Device::Cpu).unwrap();
    let prompter = Gemma3Prompter::load(&model_dir(), model.config().image_token_id, model.config().image_tokens()).unwrap();
    let layers = model.config().text.num_layers();
    for case in cases() {
        let name = &case.name;
        let input_ids = case.ids("input_ids");
        let want_ids = case.ids("generated_ids");
        let l = input_ids.len();
        // Every prompt row, so case0's full prompt attention can be compared too.
        let policy = CapturePolicy {
            layers: (0..layers).collect(),
            rows: RowSelection { prompt_positions: (0..l).collect(), decode_steps: true },
            prompt_len: l,
        };
        let mut recorder = AttentionRecorder::new(policy);
        let generation = greedy(&model, &input_ids, case.t("pixel_values"), want_ids.len(), &mut recorder).unwrap();

        assert_eq!(generation.ids, want_ids, "{name}: generated ids");
        let text = prompter.tokenizer().decode(&generation.ids, true).unwrap();
        assert_eq!(text, case.manifest["generated_text"].as_str().unwrap(), "{name}: generated text");
        assert_close(
            &format!("{name} prompt_last_logits"),
            generation.prompt_last_logits(),
            &flat(case.t("prompt_last_logits")),
            LOGITS_TOL,
        );
        let gen_logits = case.t("gen_logits");
        for (k, logits) in generation.step_logits.iter().enumerate() {
            assert_close(&format!("{name} gen_logits[{k}]"), logits, &flat(&gen_logits.get(k).unwrap()), LOGITS_TOL);
        }
        let prompt_attn = case.t("prompt_last_attn");
        for layer in 0..layers {
            let row = recorder.row(layer, l - 1).unwrap();
            assert_close(
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
                assert_close(
                    &format!("{name} gen_attn[{k}] layer {layer}"),
                    &row.probs,
                    &flat(&want.narrow(1, 0, l + k).unwrap()),
                    ATTN_TOL,
                );
            }
        }
        if let Some(full) = case.tensors.get("prompt_attn_full") {
            // [NL, H, L, L]: every prompt row of every layer.
            for layer in 0..layers {
                let want = full.get(layer).unwrap(); // [H, L, L]
                for q in 0..l {
                    let row = recorder.row(layer, q).unwrap();
                    let want_row = flat(&want.narrow(1, q, 1).unwrap()); // [H, 1, L]
                    assert_close(&format!("{name} prompt_attn_full layer {layer} query {q}"), &row.probs, &want_row, ATTN_TOL);
                }
            }
        }
    }
}

#[test]
fn vision_intermediates_match_on_case0() {
    let model = Gemma3::load(&model_dir(), DType::F32, &Device::Cpu).unwrap();
    let case = Case::load("gemma3-tiny", "case0");
    let pv = case.t("pixel_values");
    let states = model.vision().hidden_states(pv, &mut NoProbe).unwrap();
    let want = case.t("vision.hidden_states");
    assert_eq!(states.len(), want.dim(0).unwrap());
    for (i, s) in states.iter().enumerate() {
        assert_close(&format!("vision.hidden_states[{i}]"), &flat(s), &flat(&want.get(i).unwrap()), HIDDEN_TOL);
    }
    let last = model.vision().forward(pv, &mut NoProbe).unwrap();
    assert_close("vision.last_hidden_state (post_layernorm)", &flat(&last), &flat(case.t("vision.last_hidden_state")), HIDDEN_TOL);
    assert_close("vision.pooled", &flat(&model.pooled_features(pv, &mut NoProbe).unwrap()), &flat(case.t("vision.pooled")), HIDDEN_TOL);
    assert_close(
        "vision.pooled_normed",
        &flat(&model.pooled_normed(pv, &mut NoProbe).unwrap()),
        &flat(case.t("vision.pooled_normed")),
        HIDDEN_TOL,
    );
    assert_close(
        "vision.projector_output",
        &flat(&model.image_features(pv, &mut NoProbe).unwrap()),
        &flat(case.t("vision.projector_output")),
        HIDDEN_TOL,
    );
}
