//! Tensor-name layouts: every release's key names mapped onto one canonical layout, apart from
//! the math of the layers. The canonical layout is the hub's (`llava-hf/llava-1.5-7b-hf`,
//! `google/gemma-3-4b-it`): `language_model.model.*`, `language_model.lm_head.*`,
//! `vision_tower.vision_model.*`, `multi_modal_projector.*`.

/// A prefix rewrite: keys starting with `from` start with `to` instead.
struct Rename {
    from: &'static str,
    to: &'static str,
}

/// transformers 4.52-4.57 `save_pretrained` output, applied first.
const TRANSFORMERS_4_5X: &[Rename] = &[
    Rename { from: "model.language_model.", to: "language_model.model." },
    Rename { from: "model.vision_tower.", to: "vision_tower." },
    Rename { from: "model.multi_modal_projector.", to: "multi_modal_projector." },
    Rename { from: "lm_head.", to: "language_model.lm_head." },
];

/// The canonical name of a checkpoint key of the LLaVA / Gemma3 families.
pub fn canonical_name(key: &str) -> String {
    let mut name = key.to_string();
    if let Some(r) = TRANSFORMERS_4_5X.iter().find(|r| key.starts_with(r.from)) {
        name = format!("{}{}", r.to, &key[r.from.len()..]);
    }
    // transformers 5.x raw saves drop the tower's `vision_model.` level.
    if let Some(rest) = name.strip_prefix("vision_tower.")
        && !rest.starts_with("vision_model.")
    {
        name = format!("vision_tower.vision_model.{rest}");
    }
    name
}

/// transformers 5 nests Qwen2.5-VL's towers under `model.`; the hub release (and the canonical
/// layout) has `visual.*`, `model.*` (the decoder) and `lm_head.*`.
const QWEN25VL_TRANSFORMERS_5: &[Rename] =
    &[Rename { from: "model.visual.", to: "visual." }, Rename { from: "model.language_model.", to: "model." }];

/// The canonical name of a Qwen2.5-VL checkpoint key.
pub fn qwen25vl_canonical_name(key: &str) -> String {
    match QWEN25VL_TRANSFORMERS_5.iter().find(|r| key.starts_with(r.from)) {
        Some(r) => format!("{}{}", r.to, &key[r.from.len()..]),
        None => key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{canonical_name, qwen25vl_canonical_name};

    #[test]
    fn both_qwen25vl_layouts_map_to_the_hub_names() {
        for (key, want) in [
            ("model.visual.blocks.0.attn.qkv.weight", "visual.blocks.0.attn.qkv.weight"),
            ("visual.blocks.0.attn.qkv.weight", "visual.blocks.0.attn.qkv.weight"),
            ("model.language_model.layers.1.self_attn.q_proj.bias", "model.layers.1.self_attn.q_proj.bias"),
            ("model.layers.1.self_attn.q_proj.bias", "model.layers.1.self_attn.q_proj.bias"),
            ("lm_head.weight", "lm_head.weight"),
        ] {
            assert_eq!(qwen25vl_canonical_name(key), want);
        }
    }

    #[test]
    fn all_three_llava_layouts_map_to_the_hub_names() {
        let hub = "language_model.model.layers.0.self_attn.q_proj.weight";
        assert_eq!(canonical_name(hub), hub);
        assert_eq!(canonical_name("model.language_model.layers.0.self_attn.q_proj.weight"), hub);
        assert_eq!(canonical_name("lm_head.weight"), "language_model.lm_head.weight");
        assert_eq!(canonical_name("language_model.lm_head.weight"), "language_model.lm_head.weight");
        let tower = "vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight";
        assert_eq!(canonical_name(tower), tower);
        assert_eq!(canonical_name("vision_tower.encoder.layers.1.mlp.fc1.weight"), tower);
        assert_eq!(canonical_name("model.vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight"), tower);
        assert_eq!(canonical_name("model.multi_modal_projector.linear_1.bias"), "multi_modal_projector.linear_1.bias");
    }
}
