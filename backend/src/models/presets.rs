//! The full-size architectures users bring, as shapes only, for random-weight benchmarks (speed
//! does not depend on the weights' values). The shapes and the prompts follow the transformers
//! baseline (`scripts/gpu/hf_baseline.py`) so the two are timed on the same work.

use std::str::FromStr;

use super::activation::Activation;
use super::clip_vision::{self, VisionFeature};
use super::dino_vision;
use super::gemma3;
use super::gemma3_text::{self, LayerType, Rope};
use super::llama_text;
use super::llava::{self, FeatureSelect, IMAGE_PLACEHOLDER, ProjectorKind, VisionConfig};
use super::qwen25vl;
use super::siglip_vision;
use super::vit_block::BlockConfig;

/// A full-size architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14 at 336 px + Vicuna-7B.
    Llava15_7b,
    /// google/medgemma-4b-it: SigLIP So400m/14 at 896 px pooled to 256 tokens + Gemma3-4B.
    MedGemma4b,
    /// microsoft/llava-rad: BiomedCLIP-CXR's DINOv2-style ViT-B/14 at 518 px + Vicuna-7B.
    LlavaRad,
    /// Mid-size random LLaVA (CLIP 336/14 x4, Llama x8 at hidden 512): CPU-sized.
    MidLlava,
    /// Mid-size random Gemma3 (SigLIP 448/14 x4, text x8 at hidden 512): CPU-sized.
    MidGemma3,
    /// Qwen/Qwen2.5-VL-7B-Instruct: its window-attention ViT (patch 14, 2x2 merge) on a 448 x 336
    /// (H x W) input, 16 x 12 image tokens, + Qwen2-7B.
    Qwen25Vl7b,
    /// Mid-size random Qwen2.5-VL (ViT x4 at hidden 256, text x8 at hidden 512) on a 336 x 252
    /// input, 12 x 9 image tokens: CPU-sized.
    MidQwen25Vl,
    /// microsoft/maira-2: RAD-DINO (DINOv2 ViT-B/14 at 518 px, 37 x 37 = 1369 tokens per image,
    /// final LayerNorm), a 4-layer GELU projector, Vicuna-7B with linear RoPE 1.5; up to three
    /// images per prompt (current frontal, current lateral, prior frontal).
    Maira2,
    /// Mid-size random MAIRA-2 (DINOv2 518/14 x4 at hidden 256, still 1369 tokens per image,
    /// 4-layer projector, Llama x8 at hidden 512 with linear RoPE 1.5): CPU-sized.
    MidMaira2,
}

impl Preset {
    pub const ALL: [Preset; 9] = [
        Preset::Llava15_7b,
        Preset::MedGemma4b,
        Preset::LlavaRad,
        Preset::Qwen25Vl7b,
        Preset::Maira2,
        Preset::MidLlava,
        Preset::MidGemma3,
        Preset::MidQwen25Vl,
        Preset::MidMaira2,
    ];

    /// The architectures users bring (as opposed to the mid-size benchmark models).
    pub fn is_full_size(self) -> bool {
        !matches!(self, Self::MidLlava | Self::MidGemma3 | Self::MidQwen25Vl | Self::MidMaira2)
    }

    /// The most images one prompt of this architecture takes: MedGemma/Gemma3 (each image its
    /// own block) and MAIRA-2 (current, lateral, prior) take several, the others one.
    pub fn max_images(self) -> usize {
        match self {
            Self::MedGemma4b | Self::MidGemma3 => 3,
            Self::Maira2 | Self::MidMaira2 => super::processor::maira2::MAX_IMAGES,
            Self::Llava15_7b | Self::LlavaRad | Self::MidLlava | Self::Qwen25Vl7b | Self::MidQwen25Vl => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Llava15_7b => "llava-1.5-7b",
            Self::MedGemma4b => "medgemma-4b",
            Self::LlavaRad => "llava-rad",
            Self::MidLlava => "llava",
            Self::MidGemma3 => "gemma3",
            Self::Qwen25Vl7b => "qwen2.5-vl-7b",
            Self::MidQwen25Vl => "qwen2.5-vl",
            Self::Maira2 => "maira-2",
            Self::MidMaira2 => "maira2",
        }
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown architecture {s:?} ({})", Self::ALL.map(Preset::name).join(", ")))
    }
}

/// A preset's model configuration.
#[derive(Debug, Clone)]
pub enum PresetConfig {
    Llava(llava::Config),
    Gemma3(gemma3::Config),
    /// With the `(H, W)` input it is benchmarked on (dynamic resolution: no fixed size).
    Qwen25Vl(qwen25vl::Config, (usize, usize)),
}

/// Vicuna-7B (Llama-2-7B shapes) as llava-1.5 and LLaVA-Rad use it.
fn vicuna_7b() -> llama_text::Config {
    llama_text::Config {
        vocab_size: 32064,
        hidden_size: 4096,
        intermediate_size: 11008,
        num_layers: 32,
        num_heads: 32,
        num_kv_heads: 32,
        head_dim: 128,
        max_positions: 4096,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_linear_factor: 1.0,
        tie_word_embeddings: false,
        attention_bias: false,
        o_proj_bias: false,
        mlp_bias: false,
        bos_token_id: 1,
        // No EOS inside the vocabulary: every run decodes exactly the asked-for tokens.
        eos_token_ids: vec![u32::MAX],
    }
}

impl Preset {
    /// The configuration, with the text decoder cut to `text_layers` and the vision tower to
    /// `vision_layers` when given (CPU smoke runs; the output says so).
    pub fn config(self, text_layers: Option<usize>, vision_layers: Option<usize>) -> PresetConfig {
        match self {
            Self::Qwen25Vl7b | Self::MidQwen25Vl => {
                let (mut json, hw) =
                    if self == Self::Qwen25Vl7b { (qwen25vl_7b_json(), (448, 336)) } else { (mid_qwen25vl_json(), (336, 252)) };
                if let Some(n) = text_layers {
                    json["num_hidden_layers"] = n.into();
                }
                if let Some(n) = vision_layers {
                    let v = &mut json["vision_config"];
                    v["depth"] = n.into();
                    // The full-attention blocks that remain.
                    let full: Vec<serde_json::Value> = v["fullatt_block_indexes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|i| i.as_u64().is_some_and(|i| (i as usize) < n))
                        .cloned()
                        .collect();
                    v["fullatt_block_indexes"] = full.into();
                }
                PresetConfig::Qwen25Vl(qwen25vl::Config::from_json(&json).expect("the preset's config resolves"), hw)
            }
            Self::MidLlava => {
                let mut c = mid_llava();
                c.text.num_layers = text_layers.unwrap_or(c.text.num_layers);
                if let (Some(n), VisionConfig::Clip(v)) = (vision_layers, &mut c.vision) {
                    v.num_layers = n;
                    c.feature = VisionFeature::from_hf_index(-2, n).unwrap_or(VisionFeature::BlockOutput(n));
                }
                PresetConfig::Llava(c)
            }
            Self::Maira2 | Self::MidMaira2 => {
                let mut c = if self == Self::Maira2 { maira2_full() } else { mid_maira2() };
                c.text.num_layers = text_layers.unwrap_or(c.text.num_layers);
                if let (Some(n), VisionConfig::Dino(v)) = (vision_layers, &mut c.vision) {
                    // MAIRA-2 reads the last block (feature_maps of stage 12, final norm applied).
                    v.depth = n;
                    c.feature = VisionFeature::BlockOutput(n);
                }
                PresetConfig::Llava(c)
            }
            Self::MidGemma3 => {
                let mut c = mid_gemma3();
                if let Some(n) = text_layers {
                    c.text.layer_types.truncate(n);
                }
                c.vision.num_layers = vision_layers.unwrap_or(c.vision.num_layers);
                PresetConfig::Gemma3(c)
            }
            Self::Llava15_7b | Self::LlavaRad => {
                let mut text = vicuna_7b();
                text.num_layers = text_layers.unwrap_or(text.num_layers);
                let (vision, image_token_id) = if self == Self::Llava15_7b {
                    let v = clip_vision::Config {
                        hidden_size: 1024,
                        intermediate_size: 4096,
                        num_layers: vision_layers.unwrap_or(24),
                        num_heads: 16,
                        num_channels: 3,
                        image_size: 336,
                        patch_size: 14,
                        activation: Activation::QuickGelu,
                        layer_norm_eps: 1e-5,
                    };
                    (VisionConfig::Clip(v), 32000)
                } else {
                    let v = dino_vision::Config {
                        width: 768,
                        depth: vision_layers.unwrap_or(12),
                        num_heads: 12,
                        mlp_hidden: 3072,
                        patch_size: 14,
                        image_size: 518,
                        pos_grid: 37,
                        layer_norm_eps: 1e-6,
                        final_norm: false,
                    };
                    (VisionConfig::Dino(v), IMAGE_PLACEHOLDER)
                };
                let blocks = vision.num_layers();
                PresetConfig::Llava(llava::Config {
                    // vision_feature_layer / mm_vision_select_layer = -2 in both releases.
                    feature: VisionFeature::from_hf_index(-2, blocks).unwrap_or(VisionFeature::BlockOutput(blocks)),
                    text,
                    vision,
                    image_token_id,
                    projector_activation: Activation::Gelu,
                    projector_bias: true,
                    projector: ProjectorKind::Mlp2xGelu,
                    select: FeatureSelect::Default,
                })
            }
            Self::MedGemma4b => {
                let layers = text_layers.unwrap_or(34);
                PresetConfig::Gemma3(gemma3::Config {
                    text: gemma3_text::Config {
                        vocab_size: 262208,
                        hidden_size: 2560,
                        intermediate_size: 10240,
                        num_heads: 8,
                        num_kv_heads: 4,
                        head_dim: 256,
                        activation: Activation::GeluTanh,
                        rms_norm_eps: 1e-6,
                        query_pre_attn_scalar: 256.0,
                        sliding_window: 1024,
                        // sliding_window_pattern 6: every sixth layer attends globally.
                        layer_types: (0..layers).map(|i| if (i + 1) % 6 == 0 { LayerType::Full } else { LayerType::Sliding }).collect(),
                        rope_full: Rope { theta: 1e6, linear_factor: 8.0 },
                        rope_sliding: Rope { theta: 1e4, linear_factor: 1.0 },
                        attn_logit_softcapping: None,
                        final_logit_softcapping: None,
                        tie_word_embeddings: true,
                        bos_token_id: 2,
                        eos_token_ids: vec![u32::MAX],
                    },
                    vision: siglip_vision::Config {
                        block: BlockConfig {
                            hidden_size: 1152,
                            intermediate_size: 4304,
                            num_heads: 16,
                            layer_norm_eps: 1e-6,
                            activation: Activation::GeluTanh,
                        },
                        num_layers: vision_layers.unwrap_or(27),
                        num_channels: 3,
                        image_size: 896,
                        patch_size: 14,
                    },
                    image_token_id: 262144,
                    boi_token_id: 255999,
                    eoi_token_id: 256000,
                    tokens_per_side: 16,
                })
            }
        }
    }
}

impl PresetConfig {
    /// The benchmark input's `(H, W)`: the model's square input, or the size a dynamic-resolution
    /// preset is run at.
    pub fn image_hw(&self) -> (usize, usize) {
        match self {
            Self::Llava(c) => (c.vision.image_size(), c.vision.image_size()),
            Self::Gemma3(c) => (c.vision.image_size, c.vision.image_size),
            Self::Qwen25Vl(_, hw) => *hw,
        }
    }

    /// Image tokens of the benchmark input (per image).
    pub fn image_tokens(&self) -> usize {
        match self {
            Self::Llava(c) => c.image_tokens(),
            Self::Gemma3(c) => c.image_tokens(),
            Self::Qwen25Vl(c, (h, w)) => {
                let unit = c.vision.patch_size * c.vision.spatial_merge_size;
                (h / unit) * (w / unit)
            }
        }
    }

    /// The baseline's prompt layout with `question` in place of its 24 random question ids:
    /// LLaVA `[BOS] + 4 ids + image + question` (605 tokens at full size, LLaVA-Rad 1398), Gemma3
    /// `[BOS, <start_of_turn>] + 2 ids + [boi] + image + [eoi] + question + 5 turn ids` (291).
    /// Returns the ids and the length of the prefix every question variant shares.
    pub fn prompt(&self, question: &[u32]) -> (Vec<u32>, usize) {
        let image_tokens = self.image_tokens();
        match self {
            Self::Llava(c) => {
                let mut ids = vec![1, 3148, 1001, 29901, 29871];
                ids.extend(std::iter::repeat_n(c.image_token_id, image_tokens));
                let shared = ids.len();
                ids.extend_from_slice(question);
                (ids, shared)
            }
            Self::Gemma3(c) => {
                let mut ids = vec![2, 105, 2364, 107, c.boi_token_id];
                ids.extend(std::iter::repeat_n(c.image_token_id, image_tokens));
                ids.push(c.eoi_token_id);
                let shared = ids.len();
                ids.extend_from_slice(question);
                ids.extend([106, 107, 105, 4368, 107]);
                (ids, shared)
            }
            // `<|im_start|>user\n<|vision_start|>` pads `<|vision_end|>` question
            // `<|im_end|>\n<|im_start|>assistant\n`, with the 7B tokenizer's ids.
            Self::Qwen25Vl(c, _) => {
                let mut ids = vec![151644, 872, 198, c.vision_start_token_id];
                ids.extend(std::iter::repeat_n(c.image_token_id, image_tokens));
                ids.push(c.vision_end_token_id);
                let shared = ids.len();
                ids.extend_from_slice(question);
                ids.extend([151645, 198, 151644, 77091, 198]);
                (ids, shared)
            }
        }
    }

    /// The architecture in one line (towers, layers, widths).
    pub fn describe(&self) -> String {
        match self {
            Self::Llava(c) => format!(
                "{}: {} {}/{} x{} blocks (hidden {}), {}Llama x{} layers (hidden {}, heads {}/{} kv)",
                if let ProjectorKind::Sequential(_) = c.projector { "MAIRA-2 (LLaVA)" } else { "LLaVA" },
                if matches!(c.vision, VisionConfig::Clip(_)) { "CLIP" } else { "DINOv2" },
                c.vision.image_size(),
                c.vision.image_size() / c.vision.grid(),
                c.vision.num_layers(),
                c.vision.hidden_size(),
                match c.projector {
                    ProjectorKind::Sequential(n) => format!("{n}-layer projector, "),
                    ProjectorKind::Mlp2xGelu => String::new(),
                },
                c.text.num_layers,
                c.text.hidden_size,
                c.text.num_heads,
                c.text.num_kv_heads
            ),
            Self::Gemma3(c) => {
                let t = &c.text;
                format!(
                    "Gemma3: SigLIP {}/{} x{} blocks (hidden {}) pooled to {} tokens, text x{} layers {} (hidden {}, heads {}/{} kv, window {})",
                    c.vision.image_size,
                    c.vision.patch_size,
                    c.vision.num_layers,
                    c.vision.block.hidden_size,
                    c.image_tokens(),
                    t.num_layers(),
                    t.layer_types.iter().map(|l| if *l == LayerType::Full { 'F' } else { 'S' }).collect::<String>(),
                    t.hidden_size,
                    t.num_heads,
                    t.num_kv_heads,
                    t.sliding_window
                )
            }
            Self::Qwen25Vl(c, (h, w)) => {
                let (v, t) = (&c.vision, &c.text.llama);
                format!(
                    "Qwen2.5-VL: ViT/{} x{} blocks (hidden {}, window {}, full attention at {:?}) on {h} x {w} -> {} tokens, Qwen2 x{} layers (hidden {}, heads {}/{} kv)",
                    v.patch_size,
                    v.depth,
                    v.hidden_size,
                    v.window_size,
                    v.fullatt_block_indexes,
                    self.image_tokens(),
                    t.num_layers,
                    t.hidden_size,
                    t.num_heads,
                    t.num_kv_heads
                )
            }
        }
    }

    /// Transformer layers of the language model.
    pub fn text_layers(&self) -> usize {
        match self {
            Self::Llava(c) => c.text.num_layers,
            Self::Gemma3(c) => c.text.num_layers(),
            Self::Qwen25Vl(c, _) => c.text.llama.num_layers,
        }
    }
}

/// microsoft/maira-2 as its loader resolves the hub's config (`maira2::RawConfig::resolve`): the
/// values below are those of `tools/README-multi-image.md` ("Real configuration", a secondary
/// source): RAD-DINO ViT-B/14 (12 blocks, width 768, 12 heads, MLP 3072, eps 1e-6) at 518 px on
/// its native 37 x 37 position table, `out_features` ["stage12"] with the final LayerNorm, a
/// 4-layer projector 768 -> 4096 with bias, Vicuna-7B with vocab 32207 (`<image>` = 32204) and
/// linear RoPE 1.5. ASSUMED (not in that source): `max_position_embeddings` 6144 (Vicuna's 4096
/// times the linear factor; three images alone take 4107 positions) and untied embeddings.
fn maira2_full() -> llava::Config {
    let mut text = vicuna_7b();
    text.vocab_size = 32207;
    text.rope_linear_factor = 1.5;
    text.max_positions = 6144;
    let vision = dino_vision::Config {
        width: 768,
        depth: 12,
        num_heads: 12,
        mlp_hidden: 3072,
        patch_size: 14,
        image_size: 518,
        pos_grid: 37,
        layer_norm_eps: 1e-6,
        final_norm: true,
    };
    maira2_with(vision, text)
}

/// MAIRA-2's composition around a tower and a decoder: the last block's output with the final
/// norm, CLS dropped ("default"), `layers.{0,2,4,6}` with GELU between them.
fn maira2_with(vision: dino_vision::Config, text: llama_text::Config) -> llava::Config {
    llava::Config {
        feature: VisionFeature::BlockOutput(vision.depth),
        text,
        vision: VisionConfig::Dino(vision),
        image_token_id: 32204,
        projector_activation: Activation::Gelu,
        projector_bias: true,
        projector: ProjectorKind::Sequential(4),
        select: FeatureSelect::Default,
    }
}

// The mid-size random models of `radlens bench --arch llava|gemma3`: small enough for a CPU.

/// DINOv2 518/14 (the real 1369 tokens per image, so several images make MAIRA-2's long
/// prompts) with 4 blocks at hidden 256; the 4-layer projector; Llama x8 at hidden 512 with
/// MAIRA-2's vocabulary and linear RoPE 1.5, room for three images.
pub fn mid_maira2() -> llava::Config {
    let vision = dino_vision::Config {
        width: 256,
        depth: 4,
        num_heads: 4,
        mlp_hidden: 1024,
        patch_size: 14,
        image_size: 518,
        pos_grid: 37,
        layer_norm_eps: 1e-6,
        final_norm: true,
    };
    let mut text = mid_llava().text;
    text.vocab_size = 32207;
    text.rope_linear_factor = 1.5;
    text.max_positions = 6144;
    maira2_with(vision, text)
}

/// CLIP 336/14 (576 image tokens) with 4 blocks; Llama with 8 layers, hidden 512, GQA 8/4.
pub fn mid_llava() -> llava::Config {
    let vision = clip_vision::Config {
        hidden_size: 256,
        intermediate_size: 1024,
        num_layers: 4,
        num_heads: 4,
        num_channels: 3,
        image_size: 336,
        patch_size: 14,
        activation: Activation::QuickGelu,
        layer_norm_eps: 1e-5,
    };
    let text = llama_text::Config {
        vocab_size: 32064,
        hidden_size: 512,
        intermediate_size: 1408,
        num_layers: 8,
        num_heads: 8,
        num_kv_heads: 4,
        head_dim: 64,
        max_positions: 2048,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_linear_factor: 1.0,
        tie_word_embeddings: false,
        attention_bias: false,
        o_proj_bias: false,
        mlp_bias: false,
        bos_token_id: 1,
        // No EOS inside the vocabulary: every run decodes exactly the asked-for tokens.
        eos_token_ids: vec![u32::MAX],
    };
    llava::Config {
        feature: VisionFeature::from_hf_index(-2, vision.num_layers).expect("valid"),
        text,
        vision: VisionConfig::Clip(vision),
        image_token_id: 32000,
        projector_activation: Activation::Gelu,
        projector_bias: true,
        projector: ProjectorKind::Mlp2xGelu,
        select: FeatureSelect::Default,
    }
}

/// SigLIP 448/14 (32x32 patches pooled 2x2 to 256 tokens) with 4 blocks; Gemma3 text with 8
/// layers of both types (full every 4th), window 128 so the prompt outgrows it, hidden 512.
pub fn mid_gemma3() -> gemma3::Config {
    gemma3::Config {
        text: gemma3_text::Config {
            vocab_size: 32000,
            hidden_size: 512,
            intermediate_size: 1408,
            num_heads: 8,
            num_kv_heads: 4,
            head_dim: 64,
            activation: Activation::GeluTanh,
            rms_norm_eps: 1e-6,
            query_pre_attn_scalar: 64.0,
            sliding_window: 128,
            layer_types: (0..8).map(|i| if (i + 1) % 4 == 0 { LayerType::Full } else { LayerType::Sliding }).collect(),
            rope_full: Rope { theta: 1e6, linear_factor: 8.0 },
            rope_sliding: Rope { theta: 1e4, linear_factor: 1.0 },
            attn_logit_softcapping: None,
            final_logit_softcapping: None,
            tie_word_embeddings: true,
            bos_token_id: 2,
            eos_token_ids: vec![u32::MAX],
        },
        vision: siglip_vision::Config {
            block: BlockConfig {
                hidden_size: 256,
                intermediate_size: 1024,
                num_heads: 4,
                layer_norm_eps: 1e-6,
                activation: Activation::GeluTanh,
            },
            num_layers: 4,
            num_channels: 3,
            image_size: 448,
            patch_size: 14,
        },
        image_token_id: 31999,
        boi_token_id: 31997,
        eoi_token_id: 31998,
        tokens_per_side: 16,
    }
}

/// Qwen/Qwen2.5-VL-7B-Instruct's `config.json` as the hub ships it (text settings at the top).
fn qwen25vl_7b_json() -> serde_json::Value {
    serde_json::json!({
        "model_type": "qwen2_5_vl", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "max_position_embeddings": 128000, "use_sliding_window": false, "sliding_window": 32768,
        "tie_word_embeddings": false, "hidden_act": "silu", "bos_token_id": 151643, "eos_token_id": 151645,
        "image_token_id": 151655, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
        "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
            "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2,
            "spatial_patch_size": 14, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
            "tokens_per_second": 2, "temporal_patch_size": 2}
    })
}

/// A CPU-sized Qwen2.5-VL with the 7B's structure (window and full-attention blocks, GQA, mrope).
fn mid_qwen25vl_json() -> serde_json::Value {
    serde_json::json!({
        "model_type": "qwen2_5_vl", "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 8,
        "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 152064, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]},
        "max_position_embeddings": 32768, "use_sliding_window": false, "tie_word_embeddings": false,
        "hidden_act": "silu", "bos_token_id": 151643, "eos_token_id": 151645,
        "image_token_id": 151655, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
        "vision_config": {"depth": 4, "hidden_act": "silu", "hidden_size": 256, "intermediate_size": 1024,
            "num_heads": 4, "in_chans": 3, "out_hidden_size": 512, "patch_size": 14, "spatial_merge_size": 2,
            "window_size": 112, "fullatt_block_indexes": [1, 3], "temporal_patch_size": 2}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The maira-2 preset is what radlens' MAIRA-2 loader makes of the hub config as documented
    /// (tools/README-multi-image.md), with Vicuna-7B's text settings written out and the
    /// assumed 6144 positions; only the EOS (none inside the vocabulary, for fixed-length runs)
    /// is the bench's own.
    #[test]
    fn the_maira2_preset_is_the_loaders_resolution_of_the_hub_config() {
        let raw: crate::models::maira2::RawConfig = serde_json::from_value(serde_json::json!({
            "model_type": "maira2",
            "image_token_index": 32204,
            "projector_n_layers": 4,
            "text_config": {"vocab_size": 32207, "hidden_size": 4096, "intermediate_size": 11008,
                "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                "max_position_embeddings": 6144, "rms_norm_eps": 1e-5,
                "rope_scaling": {"rope_type": "linear", "factor": 1.5}},
            "vision_config": {"model_type": "dinov2", "image_size": 518, "out_features": ["stage12"]},
        }))
        .unwrap();
        let mut loaded = raw.resolve(518).unwrap();
        let PresetConfig::Llava(preset) = Preset::Maira2.config(None, None) else { panic!("maira-2 is a LLaVA") };
        loaded.text.eos_token_ids = preset.text.eos_token_ids.clone();
        assert_eq!(loaded, preset);
        assert_eq!(preset.image_tokens(), 1369);
    }
}
