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

/// transformers' `Dinov2Backbone` names (MAIRA-2's RAD-DINO tower, hub and 5.x alike) -> the
/// timm trunk names that `dino_vision` reads, under `vision_tower.trunk.`. q/k/v stay separate
/// (`attn.{q,k,v}`) and are fused at load; `mask_token` is carried but never used.
const DINOV2_TO_TRUNK: &[Rename] = &[
    Rename { from: "embeddings.cls_token", to: "cls_token" },
    Rename { from: "embeddings.mask_token", to: "mask_token" },
    Rename { from: "embeddings.position_embeddings", to: "pos_embed" },
    Rename { from: "embeddings.patch_embeddings.projection.", to: "patch_embed.proj." },
    Rename { from: "layernorm.", to: "norm." },
];

/// Inside `encoder.layer.N.`: transformers' leaf names -> timm's.
const DINOV2_BLOCK_TO_TRUNK: &[Rename] = &[
    Rename { from: "attention.attention.query.", to: "attn.q." },
    Rename { from: "attention.attention.key.", to: "attn.k." },
    Rename { from: "attention.attention.value.", to: "attn.v." },
    Rename { from: "attention.output.dense.", to: "attn.proj." },
    Rename { from: "layer_scale1.lambda1", to: "ls1.gamma" },
    Rename { from: "layer_scale2.lambda1", to: "ls2.gamma" },
];

fn apply(renames: &[Rename], key: &str) -> Option<String> {
    renames.iter().find(|r| key.starts_with(r.from)).map(|r| format!("{}{}", r.to, &key[r.from.len()..]))
}

/// The canonical name of a MAIRA-2 checkpoint key (hub layout, or transformers 5.x's
/// `model.*`): the decoder and projector as llava-hf, the RAD-DINO tower as the timm trunk.
pub fn maira2_canonical_name(key: &str) -> String {
    let name = apply(TRANSFORMERS_4_5X, key).unwrap_or_else(|| key.to_string());
    let Some(tower) = name.strip_prefix("vision_tower.") else { return name };
    let trunk = if let Some(rest) = tower.strip_prefix("encoder.layer.") {
        let (index, leaf) = rest.split_once('.').unwrap_or((rest, ""));
        format!("blocks.{index}.{}", apply(DINOV2_BLOCK_TO_TRUNK, leaf).unwrap_or_else(|| leaf.to_string()))
    } else {
        apply(DINOV2_TO_TRUNK, tower).unwrap_or_else(|| tower.to_string())
    };
    format!("vision_tower.trunk.{trunk}")
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
    use super::{canonical_name, maira2_canonical_name, qwen25vl_canonical_name};

    #[test]
    fn maira2_hub_and_transformers_5_names_map_to_the_trunk() {
        for (key, want) in [
            ("vision_tower.embeddings.position_embeddings", "vision_tower.trunk.pos_embed"),
            ("model.vision_tower.embeddings.cls_token", "vision_tower.trunk.cls_token"),
            ("vision_tower.embeddings.patch_embeddings.projection.weight", "vision_tower.trunk.patch_embed.proj.weight"),
            ("vision_tower.encoder.layer.11.attention.attention.query.bias", "vision_tower.trunk.blocks.11.attn.q.bias"),
            ("vision_tower.encoder.layer.0.attention.output.dense.weight", "vision_tower.trunk.blocks.0.attn.proj.weight"),
            ("vision_tower.encoder.layer.2.layer_scale2.lambda1", "vision_tower.trunk.blocks.2.ls2.gamma"),
            ("vision_tower.encoder.layer.2.mlp.fc1.weight", "vision_tower.trunk.blocks.2.mlp.fc1.weight"),
            ("vision_tower.encoder.layer.2.norm1.bias", "vision_tower.trunk.blocks.2.norm1.bias"),
            ("vision_tower.layernorm.weight", "vision_tower.trunk.norm.weight"),
            ("multi_modal_projector.layers.6.bias", "multi_modal_projector.layers.6.bias"),
            ("model.multi_modal_projector.layers.0.weight", "multi_modal_projector.layers.0.weight"),
            ("language_model.lm_head.weight", "language_model.lm_head.weight"),
            ("lm_head.weight", "language_model.lm_head.weight"),
            ("model.language_model.layers.0.self_attn.q_proj.weight", "language_model.model.layers.0.self_attn.q_proj.weight"),
        ] {
            assert_eq!(maira2_canonical_name(key), want, "{key}");
        }
    }

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
