//! Parity with transformers on `fixtures/reference-v1/llava-tiny` (see
//! `fixtures/reference-v1/README.md`): from the stored `pixel_values`, logits within 1e-4,
//! attention rows within 1e-5, generated ids and text identical, and case0's vision
//! intermediates within 1e-4.

use std::path::PathBuf;

use candle_core::{DType, Device};
use radlens::models::generate::greedy;
use radlens::models::llava::Llava;
use radlens::models::probe::{AttentionRecorder, CapturePolicy, NoProbe, RowSelection};
use radlens::models::processor::Prompter;
use radlens::models::processor::llava::LlavaPrompter;

use crate::support::fixture;
use crate::support::parity::{ATTN_TOL, Case, HIDDEN_TOL, LOGITS_TOL, assert_close, flat};

fn model_dir() -> PathBuf {
    fixture("reference-v1/llava-tiny")
}

fn cases() -> Vec<Case> {
    ["case0", "case1", "case2"].into_iter().map(|c| Case::load("llava-tiny", c)).collect()
}

#[test]
fn prompts_tokenize_exactly_as_the_processor_did() {
    let model = Llava::load(&model_dir(), DType::F32, &Device::Cpu).unwrap();
    let prompter = LlavaPrompter::load(&model_dir(), model.config().image_token_id, model.config().image_tokens()).unwrap();
    for case in cases() {
        let question = case.manifest["question"].as_str().unwrap();
        let encoded = prompter.encode(question, None).unwrap();
        assert_eq!(encoded.input_ids, case.ids("input_ids"), "{}: input_ids", case.name);
        let positions: Vec<usize> = case.ids("image_token_positions").into_iter().map(|p| p as usize).collect();
        assert_eq!(encoded.image_positions, positions, "{}: image positions", case.name);
    }
}

#[test]
fn logits_attention_and_generation_match_transformers() {
    let model = Llava::load(&model_dir(), DType::F32, &Device::Cpu).unwrap();
    let prompter = LlavaPrompter::load(&model_dir(), model.config().image_token_id, model.config().image_tokens()).unwrap();
    let layers = model.config().text.num_layers;
    for case in cases() {
        let name = &case.name;
        let input_ids = case.ids("input_ids");
        let want_ids = case.ids("generated_ids");
        let l = input_ids.len();
        let policy = CapturePolicy {
            layers: (0..layers).collect(),
            rows: RowSelection { prompt_positions: vec![l - 1], decode_steps: true },
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

        // prompt_last_attn [NL, H, L]: the last prompt row of every layer.
        let prompt_attn = case.t("prompt_last_attn");
        for layer in 0..layers {
            let row = recorder.row(layer, l - 1).unwrap_or_else(|| panic!("{name}: layer {layer} row not captured"));
            assert_eq!(row.keys, l);
            assert_close(
                &format!("{name} text.blocks.{layer}.attn.pattern[query {}]", l - 1),
                &row.probs,
                &flat(&prompt_attn.get(layer).unwrap()),
                ATTN_TOL,
            );
        }
        // gen_attn [T, NL, H, L+T-1]: step k is the row at position L-1+k over L+k keys; zero beyond.
        let gen_attn = case.t("gen_attn");
        for k in 0..want_ids.len() {
            for layer in 0..layers {
                let row = recorder.row(layer, l - 1 + k).unwrap_or_else(|| panic!("{name}: step {k} layer {layer} not captured"));
                let want = gen_attn.get(k).unwrap().get(layer).unwrap(); // [H, L+T-1]
                let heads = want.dim(0).unwrap();
                let want_valid = flat(&want.narrow(1, 0, l + k).unwrap());
                assert_eq!(row.heads, heads);
                assert_close(&format!("{name} gen_attn[{k}] layer {layer}"), &row.probs, &want_valid, ATTN_TOL);
                let rest = want.dim(1).unwrap() - (l + k);
                if rest > 0 {
                    assert!(flat(&want.narrow(1, l + k, rest).unwrap()).iter().all(|&v| v == 0.0));
                }
            }
        }
        // The capture kept exactly what was asked: one row per (layer, step).
        assert_eq!(recorder.stored_values(), (0..want_ids.len()).map(|k| layers * model.config().text.num_heads * (l + k)).sum::<usize>());
    }
}

#[test]
fn vision_intermediates_match_on_case0() {
    let model = Llava::load(&model_dir(), DType::F32, &Device::Cpu).unwrap();
    let case = Case::load("llava-tiny", "case0");
    let pv = case.t("pixel_values");
    let vision = model.vision();
    let blocks = vision.num_layers();
    let states = vision.hidden_states(pv, blocks, &mut NoProbe).unwrap();
    let want = case.t("vision.hidden_states");
    assert_eq!(states.len(), want.dim(0).unwrap());
    for (i, s) in states.iter().enumerate() {
        assert_close(&format!("vision.hidden_states[{i}]"), &flat(s), &flat(&want.get(i).unwrap()), HIDDEN_TOL);
    }
    assert_close("vision.last_hidden_state", &flat(&states[blocks]), &flat(case.t("vision.last_hidden_state")), HIDDEN_TOL);
    let selected = model.selected_features(pv, &mut NoProbe).unwrap();
    assert_close("vision.selected_features", &flat(&selected), &flat(case.t("vision.selected_features")), HIDDEN_TOL);
    let projected = model.image_features(pv, &mut NoProbe).unwrap();
    assert_close("vision.projector_output", &flat(&projected), &flat(case.t("vision.projector_output")), HIDDEN_TOL);
}
