//! Loading the same weights from every layout that exists: one file or shards with an index,
//! and the three key layouts (hub, transformers 5.x raw saves, transformers 4.52-4.57 saves).
//! A missing or misshapen tensor is an error that names it.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use radlens::models::generate::greedy;
use radlens::models::llava::Llava;
use radlens::models::probe::NoProbe;

use crate::support::{Scratch, fixture};

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("reference-v1/llava-tiny/model.safetensors"), &Device::Cpu).unwrap()
}

/// A model directory with the fixture's config and the given tensors, split into `shards` files.
fn write_model(dir: &Path, tensors: &HashMap<String, Tensor>, shards: usize) {
    let src = fixture("reference-v1/llava-tiny");
    for f in ["config.json", "tokenizer.json", "processor_config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    if shards == 1 {
        candle_core::safetensors::save(tensors, dir.join("model.safetensors")).unwrap();
        return;
    }
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (i, chunk) in names.chunks(names.len().div_ceil(shards)).enumerate() {
        let file = format!("model-{:05}-of-{shards:05}.safetensors", i + 1);
        let part: HashMap<String, Tensor> = chunk.iter().map(|n| ((*n).clone(), tensors[*n].clone())).collect();
        candle_core::safetensors::save(&part, dir.join(&file)).unwrap();
        for n in chunk {
            weight_map.insert((*n).clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

fn first_logits(dir: &Path) -> Vec<f32> {
    let model = Llava::load(dir, DType::F32, &Device::Cpu).unwrap();
    let case =
        candle_core::safetensors::load(fixture("reference-v1/reference/llava-tiny/case0/tensors.safetensors"), &Device::Cpu).unwrap();
    let ids: Vec<u32> = case["input_ids"].to_vec1::<i64>().unwrap().into_iter().map(|x| x as u32).collect();
    greedy(&model, &ids, &case["pixel_values"], 1, &mut NoProbe).unwrap().prompt_last_logits().to_vec()
}

fn renamed(f: impl Fn(&str) -> String) -> HashMap<String, Tensor> {
    reference().into_iter().map(|(k, v)| (f(&k), v)).collect()
}

#[test]
fn every_layout_and_sharding_gives_the_same_logits() {
    let baseline = first_logits(&fixture("reference-v1/llava-tiny"));
    let layouts: [(&str, HashMap<String, Tensor>, usize); 3] = [
        ("hub-sharded", reference(), 3),
        // transformers 5.x raw save: the tower lost its `vision_model.` level.
        ("v5-raw", renamed(|k| k.replace("vision_tower.vision_model.", "vision_tower.")), 1),
        // transformers 4.52-4.57: everything under `model.`, lm_head at the top.
        (
            "v4-5x",
            renamed(|k| {
                if let Some(rest) = k.strip_prefix("language_model.model.") {
                    format!("model.language_model.{rest}")
                } else if let Some(rest) = k.strip_prefix("language_model.") {
                    rest.to_string()
                } else {
                    format!("model.{k}")
                }
            }),
            2,
        ),
    ];
    for (name, tensors, shards) in layouts {
        let scratch = Scratch::new(&format!("layout-{name}"));
        write_model(scratch.path(), &tensors, shards);
        assert_eq!(first_logits(scratch.path()), baseline, "{name}: logits differ from the hub layout");
    }
}

#[test]
fn a_missing_or_misshapen_tensor_is_named() {
    let missing = "language_model.model.layers.1.mlp.up_proj.weight";
    let scratch = Scratch::new("layout-missing");
    let mut tensors = reference();
    tensors.remove(missing);
    write_model(scratch.path(), &tensors, 1);
    let err = Llava::load(scratch.path(), DType::F32, &Device::Cpu).err().expect("load fails").to_string();
    assert!(err.contains(missing) && err.contains("not found"), "{err}");

    let scratch = Scratch::new("layout-shape");
    let mut tensors = reference();
    let bad = "multi_modal_projector.linear_1.weight";
    tensors.insert(bad.into(), Tensor::zeros((3, 5), DType::F32, &Device::Cpu).unwrap());
    write_model(scratch.path(), &tensors, 1);
    let err = Llava::load(scratch.path(), DType::F32, &Device::Cpu).err().expect("load fails").to_string();
    assert!(err.contains(bad) && err.contains("[3, 5]"), "{err}");

    let scratch = Scratch::new("layout-shard-missing");
    write_model(scratch.path(), &reference(), 2);
    std::fs::remove_file(scratch.path().join("model-00002-of-00002.safetensors")).unwrap();
    let err = Llava::load(scratch.path(), DType::F32, &Device::Cpu).err().expect("load fails").to_string();
    assert!(err.contains("model-00002-of-00002.safetensors") && err.contains("index"), "{err}");
}
