#!/usr/bin/env python3
"""Parity-fixture generator for multi-image prompts (radlens issue 21, part 3).

Builds two tiny, randomly initialised (seeded, float32) models and runs the full transformers pipeline on
prompts that carry SEVERAL images (processor -> eager forward with attentions -> greedy generate), then dumps
golden tensors for a Rust/candle port:

  gemma3-tiny-multi  Gemma3ForConditionalGeneration (MedGemma 1.5 path), same tiny shape as reference-v1's
                     gemma3-tiny, real Gemma3 chat template; 2 or 3 `{"type": "image"}` items in one user turn.
  maira2-tiny        MAIRA-2 shape: LLaVA layout with a DINOv2 (RAD-DINO-style) `Dinov2Backbone` tower whose
                     `feature_maps` (final LayerNorm applied) feed a 4-layer MLP projector; MAIRA-2's
                     processor prompt (current frontal, current lateral, prior frontal + text sections).

Usage:
    python make_multi_image_fixture.py --out OUTDIR [--seed 0] [--max-new-tokens 5]

Layout written (see tools/README-multi-image.md):
    OUTDIR/images/*.png
    OUTDIR/<model>/   config.json model.safetensors tokenizer.json tokenizer_config.json processor_config.json
                      chat_template.jinja generation_config.json tensor_names.txt
    OUTDIR/reference/index.json
    OUTDIR/reference/<model>/<case>/{tensors.safetensors,manifest.json}

Everything runs on CPU in float32 with attn_implementation="eager". Two runs with the same seed give
byte-identical files.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import time

import numpy as np
import torch
import torch.nn as nn

import PIL
from PIL import Image

import safetensors
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

import transformers
from transformers import (
    AutoBackbone,
    AutoModel,
    Dinov2Config,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3Processor,
    Gemma3TextConfig,
    GenerationConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    SiglipVisionConfig,
)
from transformers.activations import ACT2FN
from transformers.image_utils import PILImageResampling
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.llava.modeling_llava import LlavaModel, LlavaPreTrainedModel

try:  # transformers >= 5: explicit PIL backends (torchvision is deliberately not installed)
    from transformers import BitImageProcessorPil as _BitImageProcessor
    from transformers import Gemma3ImageProcessorPil as _Gemma3ImageProcessor
except ImportError:  # transformers 4.x
    from transformers import BitImageProcessor as _BitImageProcessor
    from transformers import Gemma3ImageProcessor as _Gemma3ImageProcessor

S, F = "sliding_attention", "full_attention"
GEMMA_DIR, MAIRA_DIR = "gemma3-tiny-multi", "maira2-tiny"

# --------------------------------------------------------------------------------------
# Architecture knobs
# --------------------------------------------------------------------------------------
# Same tiny shape as fixtures/reference-v1/gemma3-tiny (variant "default").
GEMMA = {
    "vision": dict(image_size=64, patch_size=4, hidden_size=32, intermediate_size=64,
                   num_hidden_layers=2, num_attention_heads=4),
    "mm_tokens_per_image": 16,  # 16x16 patches avg-pooled (kernel 4) to 4x4
    "text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=24, query_pre_attn_scalar=32, sliding_window=8,
                 layer_types=[S, S, F, S, S, F]),
    "rope_global": dict(rope_type="linear", factor=8.0, rope_theta=1_000_000.0),
    "rope_local_theta": 10_000.0,
    "vocab_target": 640,
}
# MAIRA-2: RAD-DINO = DINOv2 ViT-B/14 (12 layers, width 768, 518 px -> 37x37 patches, LayerScale, CLS, no
# registers); Vicuna-7B-shaped Llama (no GQA) with linear RoPE scaling 1.5; 4-layer GELU projector.
# Tiny: the processor crops to 70 px -> 5x5 = 25 patches, while the config's image_size is 56 (a 4x4 grid of
# learned position embeddings), so the DINOv2 bicubic position-embedding interpolation (4x4 -> 5x5) is exercised.
MAIRA = {
    "vision": dict(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                   mlp_ratio=2, hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=True, layerscale_value=1.0,
                   use_swiglu_ffn=False, drop_path_rate=0.0, apply_layernorm=True, reshape_hidden_states=False,
                   use_mask_token=True),
    "crop": 70,
    "text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=4),
    "rope": dict(rope_type="linear", factor=1.5, rope_theta=10_000.0),
    "projector_n_layers": 4,
    "vocab_target": 640,
    # RAD-DINO / MAIRA-2 image processor: BitImageProcessor, shortest edge 518, centre crop 518, mean/std.
    "image_mean": [0.5307, 0.5307, 0.5307],
    "image_std": [0.2583, 0.2583, 0.2583],
}

# --------------------------------------------------------------------------------------
# Chat templates
# --------------------------------------------------------------------------------------
GEMMA3_CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

# ASSUMPTION (see README-multi-image.md): the exact chat template of microsoft/maira-2 was not found in the
# searchable public code. This is a Vicuna-v1 style template (MAIRA-2's LLM is Vicuna-7B-v1.5) with MAIRA-2's
# default system prompt; user content items are concatenated verbatim (text) or as one `<image>` (image).
MAIRA2_SYSTEM = "You are an expert radiology assistant tasked with interpreting a chest X-ray study."
MAIRA2_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' -%}{%- set system_message = messages[0]['content'][0]['text'] -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}"
    "{%- set system_message = '" + MAIRA2_SYSTEM + "' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{{ system_message }}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'user' -%}{{ ' USER: ' }}{%- else -%}{{ ' ASSISTANT: ' }}{%- endif -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<image>' }}{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if message['role'] == 'assistant' -%}{{ eos_token }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ ' ASSISTANT:' }}{%- endif -%}"
)

# --------------------------------------------------------------------------------------
# MAIRA-2 prompt construction (re-implemented from Maira2Processor, processing_maira2.py of microsoft/maira-2:
# _construct_image_chat_messages_for_reporting / _construct_chat_messages_reporting /
# _construct_chat_messages_phrase_grounding). Image order: current frontal, current lateral, prior frontal.
# --------------------------------------------------------------------------------------
def _section(text):
    return text if isinstance(text, str) and len(text) > 0 else "N/A"


def maira2_reporting_content(has_lateral, has_prior, indication, technique, comparison, prior_report, grounding):
    content = []

    def add(label):
        content.append({"type": "text", "text": label})
        content.append({"type": "image"})

    if not has_prior and not has_lateral:
        add("Given the current frontal image only")
    else:
        add("Given the current frontal image")
        if has_prior:
            if has_lateral:
                add(" the current lateral image")
            add(" and the prior frontal image")
        elif has_lateral:
            add(" and the current lateral image")
    if has_prior:
        content.append({"type": "text", "text": f" PRIOR_REPORT: {_section(prior_report)}"})
    head = (" Provide a structured description of the impressions in the radiology study in comparison to the "
            "prior frontal image.")
    if grounding:
        head += (" Each finding should be described as a self-contained plain-text sentence. If the finding is "
                 "groundable, locate the finding in the current frontal chest X-ray image, with bounding boxes "
                 "indicating all locations where it can be seen in the current frontal image. Otherwise, generate "
                 "just the ungrounded finding without bounding boxes.")
    content.append({"type": "text", "text": f"{head} INDICATION: {_section(indication)} TECHNIQUE: "
                                            f"{_section(technique)} COMPARISON: {_section(comparison)}"})
    return [{"role": "user", "content": content}]


def maira2_phrase_grounding_content(phrase):
    return [{"role": "user", "content": [
        {"type": "text", "text": "Given the current frontal image"}, {"type": "image"},
        {"type": "text", "text": " Repeat the following finding as a grounded phrase with bounding boxes indicating "
                                 f"all locations where it can be seen in the given chest X-ray image. Finding: {phrase}"}]}]


def maira2_normalize_image(img):
    """Maira2Processor._normalize_image: greyscale, min-max stretch to [0, 255], uint8 (truncation)."""
    a = np.array(img.convert("L")).astype(float)
    a -= a.min()
    a /= a.max()
    a *= 255
    return Image.fromarray(a.astype(np.uint8)).convert("L")


# --------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------
GEMMA_SYSTEM = "You are an expert radiologist comparing a prior and a current study."
GEMMA_CASES = [
    # name, [(role, image key)], content builder tag, question, system?
    ("two_prior_current", [("prior", "prior"), ("current", "frontal")], "labelled",
     "Has the effusion worsened since the prior?", False),
    ("two_adjacent_system", [("prior", "prior"), ("current", "frontal")], "adjacent",
     "Is there a new opacity in the current image? Answer yes or no.", True),
    ("three_prior_current_lateral", [("prior", "prior"), ("current", "frontal"), ("lateral", "lateral")],
     "labelled", "Compare the studies. Has the effusion worsened?", False),
]
ROLE_LABEL = {"prior": "Prior study:", "current": "Current study:", "lateral": "Current lateral view:"}

MAIRA_CASES = [
    # name, roles present, kind, kwargs
    ("frontal_lateral_prior", ["frontal", "lateral", "prior"], "reporting",
     dict(indication="Dyspnea. Follow up of pleural effusion.", technique="PA and lateral views of the chest.",
          comparison="Prior study available.", prior_report="Small left pleural effusion.", grounding=False)),
    ("frontal_prior_grounded", ["frontal", "prior"], "reporting",
     dict(indication="Has the effusion worsened since the prior?", technique="Frontal view of the chest.",
          comparison=None, prior_report="Small left pleural effusion.", grounding=True)),
    ("frontal_only_phrase", ["frontal"], "phrase", dict(phrase="Left pleural effusion.")),
]

SMALL_CASE = {"gemma3": "two_prior_current", "maira2": "frontal_only_phrase"}

CORPUS_QA = [
    ("Has the effusion worsened since the prior?", "yes"),
    ("Is there a new opacity in the current image?", "no"),
    ("Compare the studies. Has the effusion worsened?", "yes"),
    ("Is there a fracture in this image?", "yes"),
    ("Does the chest x-ray show pneumonia?", "no"),
    ("Is the heart enlarged?", "no"),
    ("Is there a pleural effusion on the left?", "yes"),
    ("Has the opacity resolved since the prior study?", "no"),
    ("Is the lateral view normal?", "yes"),
    ("Is there a pneumothorax?", "no"),
    ("Are the lungs clear?", "yes"),
    ("Is the effusion larger than before?", "yes"),
    ("Is the cardiac silhouette stable?", "yes"),
    ("Is there a new nodule in the right lung?", "no"),
]
EXTRA_TEXT = [
    "Answer yes or no.", "Yes.", "No.", "The effusion has worsened.", "The effusion is stable.",
    "There is a small left pleural effusion.", "No acute cardiopulmonary process.", "Interval improvement.",
    "The heart size is normal.", "Lungs are clear. No pneumothorax.", "Moderate left pleural effusion, increased.",
    GEMMA_SYSTEM, MAIRA2_SYSTEM, "Prior study:", "Current study:", "Current lateral view:",
]


def log(*a):
    print(*a, flush=True)


# --------------------------------------------------------------------------------------
# Tokenizers: SentencePiece-like BPE (Metaspace + byte fallback), as fixtures/reference-v1
# --------------------------------------------------------------------------------------
def build_tokenizer(corpus, head_specials, tail_specials, vocab_target, prepend_scheme, strip_leading_space, bos,
                    tail_non_special=()):
    """tail_non_special: added tokens (after tail_specials' learned part) with special=False (decode keeps them)."""
    split_toks = list(head_specials) + list(tail_specials) + list(tail_non_special)
    split_re = re.compile("|".join(re.escape(t) for t in sorted(split_toks, key=len, reverse=True)))
    corpus = [piece for line in corpus for piece in split_re.split(line) if piece]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme=prepend_scheme, split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_target - 256, min_frequency=1,
                                  special_tokens=list(head_specials) + list(tail_specials), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    j = json.loads(tok.to_str())
    byte_toks = [f"<0x{b:02X}>" for b in range(256)]
    excl = set(head_specials) | set(tail_specials) | set(byte_toks) | set(tail_non_special)
    learned = [t for t, _ in sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1]) if t not in excl]
    tail = list(tail_non_special) + list(tail_specials)
    order = list(head_specials) + byte_toks + learned + tail
    vocab = {t: i for i, t in enumerate(order)}
    j["model"]["vocab"] = vocab
    j["model"]["byte_fallback"] = True
    j["added_tokens"] = [
        {"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": t not in tail_non_special}
        for t in list(head_specials) + tail]
    tok = Tokenizer.from_str(json.dumps(j))
    dec = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    if strip_leading_space:
        dec.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(dec)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])])
    return tok


GEMMA_HEAD_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
GEMMA_TAIL_SPECIALS = ["<start_of_image>", "<end_of_image>", "<image_soft_token>"]
MAIRA_HEAD_SPECIALS = ["<unk>", "<s>", "</s>"]
# MAIRA-2's grounding vocabulary: <obj>, </obj>, <box>, </box> and 100 x / 100 y coordinate bins (the real
# vocabulary has 32207 tokens with <image> = 32204, i.e. 32000 Llama tokens + 204 grounding tokens, then <image>).
MAIRA_GROUNDING = ["<obj>", "</obj>", "<box>", "</box>"] + [f"<x{i}>" for i in range(100)] + \
                  [f"<y{i}>" for i in range(100)]
MAIRA_TAIL_SPECIALS = ["<image>", "<pad>"]


def gemma_corpus():
    lines = []
    for q, a in CORPUS_QA:
        lines += [q, a, a.capitalize() + "."]
        lines.append(f"<start_of_turn>user\nPrior study:\n\n<start_of_image><end_of_image>\n\nCurrent study:\n\n"
                     f"<start_of_image><end_of_image>\n\n{q}<end_of_turn>\n<start_of_turn>model\n"
                     f"{a.capitalize()}.<end_of_turn>\n")
    return (lines + EXTRA_TEXT) * 2


def maira_corpus():
    lines = []
    for name, roles, kind, kw in MAIRA_CASES:
        msgs = (maira2_reporting_content("lateral" in roles, "prior" in roles, **kw) if kind == "reporting"
                else maira2_phrase_grounding_content(**kw))
        text = "".join(c.get("text", "<image>") for c in msgs[0]["content"])
        lines.append(f"{MAIRA2_SYSTEM} USER: {text} ASSISTANT: <obj>Left pleural effusion<box><x10><y55><x40>"
                     f"<y90></box></obj></s>")
    for q, a in CORPUS_QA:
        lines += [q, a, a.capitalize() + "."]
    return (lines + EXTRA_TEXT) * 2


# --------------------------------------------------------------------------------------
# Random re-initialisation (HF's default init gives near-uniform attention, zero-initialised
# Gemma3 projector and DINOv2 LayerScale 1.0 / zero CLS: a weak test). Every parameter is re-drawn.
# --------------------------------------------------------------------------------------
def randomize_(model, token_emb_std):
    seen = set()

    def fill(p, fn):
        if p is None or id(p) in seen:
            return
        seen.add(id(p))
        with torch.no_grad():
            fn(p)

    for mname, m in model.named_modules():
        cls = type(m).__name__
        if isinstance(m, nn.Linear):
            gain = 1.5 if mname.endswith(("q_proj", "k_proj", "query", "key")) else 1.0
            fill(m.weight, lambda p, g=gain: p.normal_(0.0, g / math.sqrt(p.shape[1])))
            if m.bias is not None:
                fill(m.bias, lambda p: p.normal_(0.0, 0.05))
        elif isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            fill(m.weight, lambda p, f=fan_in: p.normal_(0.0, 1.0 / math.sqrt(f)))
            if m.bias is not None:
                fill(m.bias, lambda p: p.normal_(0.0, 0.05))
        elif isinstance(m, nn.Embedding):
            std = 0.5 if "position" in mname else token_emb_std
            fill(m.weight, lambda p, s=std: p.normal_(0.0, s))
        elif isinstance(m, nn.LayerNorm):
            fill(m.weight, lambda p: p.normal_(1.0, 0.1))
            fill(m.bias, lambda p: p.normal_(0.0, 0.05))
        elif "RMSNorm" in cls:
            if cls.startswith("Gemma"):  # applied as x * (1 + w)
                fill(m.weight, lambda p: p.normal_(0.0, 0.1))
            else:  # Llama: x * w
                fill(m.weight, lambda p: p.normal_(1.0, 0.1))
        elif cls == "Gemma3MultiModalProjector":
            fill(m.mm_input_projection_weight, lambda p: p.normal_(0.0, 1.0 / math.sqrt(p.shape[0])))
        elif cls == "Dinov2Embeddings":
            fill(m.cls_token, lambda p: p.normal_(0.0, 0.5))
            fill(m.mask_token, lambda p: p.normal_(0.0, 0.5))
            fill(m.position_embeddings, lambda p: p.normal_(0.0, 0.5))
        elif cls == "Dinov2LayerScale":  # per-channel gamma; real RAD-DINO values are O(0.1-1), not 1
            fill(m.lambda1, lambda p: p.uniform_(0.2, 1.2))
    left = [n for n, p in model.named_parameters() if id(p) not in seen]
    if left:
        raise RuntimeError(f"parameters not re-initialised: {left}")


# --------------------------------------------------------------------------------------
# Images: synthetic chest-X-ray-like pictures for frontal / lateral / prior
# --------------------------------------------------------------------------------------
def _chest(h, w, effusion, nodule):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    g = 15.0 + 25.0 * yy / (h - 1)
    for cx in (0.3 * w, 0.7 * w):
        lung = ((xx - cx) / (0.18 * w)) ** 2 + ((yy - 0.48 * h) / (0.34 * h)) ** 2 < 1.0
        g[lung] += 60.0 + 35.0 * (0.5 + 0.5 * np.cos(yy[lung] / 3.5))
    g += 110.0 * np.exp(-((xx - 0.5 * w) ** 2) / (2 * (0.04 * w) ** 2))  # spine / mediastinum
    # pleural effusion: bright meniscus at the left lung base (image right), height `effusion` (fraction of h)
    base = (yy > (0.82 - effusion) * h) & (np.abs(xx - 0.7 * w) < 0.2 * w)
    g[base] += 90.0
    if nodule:
        g += 140.0 * np.exp(-(((xx - 0.32 * w) ** 2) + ((yy - 0.35 * h) ** 2)) / (2 * (0.035 * w) ** 2))
    return g


def make_images(outdir):
    os.makedirs(outdir, exist_ok=True)
    # frontal: 96x120 (W x H) 8-bit grayscale (portrait), larger effusion than the prior, a nodule.
    fr = np.clip(np.rint(_chest(120, 96, 0.22, True)), 0, 255).astype(np.uint8)
    frontal = Image.fromarray(fr, mode="L")
    # lateral: 110x90 (W x H) grayscale (landscape): one elongated lung field, spine at the right edge, dim range
    # (values 40..200, so MAIRA-2's min-max stretch changes it).
    h, w = 90, 110
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    g = 40.0 + 20.0 * xx / (w - 1)
    lung = ((xx - 0.45 * w) / (0.33 * w)) ** 2 + ((yy - 0.5 * h) / (0.38 * h)) ** 2 < 1.0
    g[lung] += 50.0 + 30.0 * np.sin(xx[lung] / 4.0)
    g += 80.0 * np.exp(-((xx - 0.88 * w) ** 2) / (2 * (0.05 * w) ** 2))
    g[(yy > 0.78 * h) & lung] += 40.0  # posterior costophrenic fluid
    lateral = Image.fromarray(np.clip(np.rint(g), 40, 200).astype(np.uint8), mode="L")
    # prior: 140x128 (W x H) RGB (a colour-converted export): smaller effusion, no nodule, warm tint.
    p = _chest(128, 140, 0.10, False)
    rgb = np.stack([p * 1.0 + 10.0, p * 0.92, p * 0.8], axis=-1)
    prior = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), mode="RGB")
    paths = {"frontal": os.path.join(outdir, "frontal_gray_96x120.png"),
             "lateral": os.path.join(outdir, "lateral_gray_110x90.png"),
             "prior": os.path.join(outdir, "prior_rgb_140x128.png")}
    frontal.save(paths["frontal"])
    lateral.save(paths["lateral"])
    prior.save(paths["prior"])
    return paths


# --------------------------------------------------------------------------------------
# MAIRA-2-shaped model: LLaVA with a Dinov2Backbone tower (feature_maps = final LayerNorm applied) and a
# `projector_n_layers`-deep MLP projector named `multi_modal_projector.layers.{0,2,4,...}` like the checkpoint.
# --------------------------------------------------------------------------------------
class Maira2TinyProjector(nn.Module):
    def __init__(self, config):
        super().__init__()
        dv, dt = config.vision_config.hidden_size, config.text_config.hidden_size
        layers = [nn.Linear(dv, dt, bias=True)]
        for _ in range(config.projector_n_layers - 1):
            layers += [ACT2FN[config.projector_hidden_act], nn.Linear(dt, dt, bias=True)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class Maira2TinyModel(LlavaModel):
    def __init__(self, config):
        LlavaPreTrainedModel.__init__(self, config)
        self.vision_tower = AutoBackbone.from_config(config.vision_config)
        self.multi_modal_projector = Maira2TinyProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_image_features(self, pixel_values, vision_feature_layer=None, vision_feature_select_strategy=None,
                           **kwargs):
        vfl = self.config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer
        strategy = (self.config.vision_feature_select_strategy if vision_feature_select_strategy is None
                    else vision_feature_select_strategy)
        out = self.vision_tower(pixel_values, output_hidden_states=True)
        sel = out.feature_maps[vfl]  # MAIRA-2: feature_maps (LayerNorm'd), not hidden_states
        if strategy == "default":
            sel = sel[:, 1:]
        feats = self.multi_modal_projector(sel)
        return BaseModelOutputWithPooling(last_hidden_state=sel, pooler_output=list(feats),
                                          hidden_states=out.hidden_states)


class Maira2TinyForConditionalGeneration(LlavaForConditionalGeneration):
    def __init__(self, config):
        LlavaPreTrainedModel.__init__(self, config)
        self.model = Maira2TinyModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()


# --------------------------------------------------------------------------------------
# Saving (hub checkpoint layout)
# --------------------------------------------------------------------------------------
def rename_to_hub(path, kind):
    """Rename tensors to the hub checkpoint layout:
    gemma3: vision_tower.vision_model.*, multi_modal_projector.*, language_model.model.* (tied, no lm_head)
    maira2: vision_tower.* (Dinov2Backbone names, as microsoft/maira-2), multi_modal_projector.layers.*,
            language_model.model.*, language_model.lm_head.weight"""
    sd = load_file(path)
    out = {}
    for k, v in sd.items():
        nk = k
        if nk.startswith("model."):
            nk = nk[len("model."):]
        if nk.startswith("language_model.") and not nk.startswith("language_model.model."):
            nk = "language_model.model." + nk[len("language_model."):]
        if nk == "lm_head.weight":
            nk = "language_model.lm_head.weight"
        if kind == "gemma3" and nk.startswith("vision_tower.") and not nk.startswith("vision_tower.vision_model."):
            nk = "vision_tower.vision_model." + nk[len("vision_tower."):]
        assert nk not in out, nk
        out[nk] = v.contiguous()
    save_file({k: out[k] for k in sorted(out)}, path, metadata={"format": "pt"})


def save_model_dir(model, processor, gen_cfg, outdir, kind):
    if os.path.exists(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    model.save_pretrained(outdir, safe_serialization=True)
    mpath = os.path.join(outdir, "model.safetensors")
    rename_to_hub(mpath, kind)
    processor.save_pretrained(outdir)
    gen_cfg.save_pretrained(outdir)
    lines = []
    with safe_open(mpath, "pt") as f:
        for k in sorted(f.keys()):
            sl = f.get_slice(k)
            lines.append(f"{k}\t{sl.get_dtype()}\t{list(sl.get_shape())}")
    with open(os.path.join(outdir, "tensor_names.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return len(lines)


def build_gemma3(outdir, seed):
    tok = build_tokenizer(gemma_corpus(), GEMMA_HEAD_SPECIALS, GEMMA_TAIL_SPECIALS, GEMMA["vocab_target"],
                          prepend_scheme="never", strip_leading_space=False, bos="<bos>")
    V = tok.get_vocab_size()
    ids = {t: tok.token_to_id(t) for t in GEMMA_HEAD_SPECIALS + GEMMA_TAIL_SPECIALS}
    t = dict(GEMMA["text"])
    lt = t["layer_types"]
    pattern = lt.index(F) + 1
    vision_config = SiglipVisionConfig(**GEMMA["vision"], hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
                                       vision_use_head=False)
    text_config = Gemma3TextConfig(
        vocab_size=V, max_position_embeddings=512, rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh",
        rope_parameters={"full_attention": dict(GEMMA["rope_global"]),
                         "sliding_attention": {"rope_type": "default", "rope_theta": GEMMA["rope_local_theta"]}},
        final_logit_softcapping=None, attn_logit_softcapping=None,
        bos_token_id=ids["<bos>"], eos_token_id=[ids["<eos>"], ids["<end_of_turn>"]], pad_token_id=ids["<pad>"],
        tie_word_embeddings=True, sliding_window_pattern=pattern, **t)
    config = Gemma3Config(vision_config=vision_config, text_config=text_config,
                          mm_tokens_per_image=GEMMA["mm_tokens_per_image"],
                          boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
                          image_token_index=ids["<image_soft_token>"], tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    randomize_(model, token_emb_std=0.5 / math.sqrt(t["hidden_size"]))
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>",
        extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                              "image_token": "<image_soft_token>", "start_of_turn_token": "<start_of_turn>",
                              "end_of_turn_token": "<end_of_turn>", "mask_token": "<mask>"})
    v = GEMMA["vision"]
    image_processor = _Gemma3ImageProcessor(
        do_resize=True, size={"height": v["image_size"], "width": v["image_size"]},
        resample=PILImageResampling.BILINEAR, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_convert_rgb=True, do_pan_and_scan=False)
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=hf_tok, chat_template=GEMMA3_CHAT_TEMPLATE,
                                image_seq_length=GEMMA["mm_tokens_per_image"])
    gen_cfg = GenerationConfig(bos_token_id=ids["<bos>"], eos_token_id=[ids["<eos>"], ids["<end_of_turn>"]],
                               pad_token_id=ids["<pad>"], do_sample=False, max_new_tokens=5)
    n_t = save_model_dir(model, processor, gen_cfg, outdir, "gemma3")
    return dict(model=model, special_token_ids=ids, vocab_size=V, n_tensors=n_t)


def build_maira2(outdir, seed):
    tok = build_tokenizer(maira_corpus(), MAIRA_HEAD_SPECIALS, MAIRA_TAIL_SPECIALS, MAIRA["vocab_target"],
                          prepend_scheme="first", strip_leading_space=True, bos="<s>",
                          tail_non_special=MAIRA_GROUNDING)
    V = tok.get_vocab_size()
    ids = {t: tok.token_to_id(t) for t in MAIRA_HEAD_SPECIALS + MAIRA_TAIL_SPECIALS + MAIRA_GROUNDING[:4]}
    vc = dict(MAIRA["vision"])
    nl = vc["num_hidden_layers"]
    vision_config = Dinov2Config(**vc, out_features=[f"stage{nl}"])
    t = dict(MAIRA["text"])
    text_config = LlamaConfig(vocab_size=V, max_position_embeddings=512, rms_norm_eps=1e-5,
                              rope_parameters=dict(MAIRA["rope"]), bos_token_id=ids["<s>"], eos_token_id=ids["</s>"],
                              pad_token_id=ids["<pad>"], tie_word_embeddings=False, hidden_act="silu", **t)
    n_img = (MAIRA["crop"] // vc["patch_size"]) ** 2
    config = LlavaConfig(vision_config=vision_config, text_config=text_config, image_token_index=ids["<image>"],
                         image_seq_length=n_img, projector_hidden_act="gelu", vision_feature_layer=-1,
                         vision_feature_select_strategy="default", multimodal_projector_bias=True,
                         pad_token_id=ids["<pad>"], tie_word_embeddings=False)
    config.projector_n_layers = MAIRA["projector_n_layers"]
    config.architectures = ["Maira2ForConditionalGeneration"]
    torch.manual_seed(seed)
    model = Maira2TinyForConditionalGeneration(config).eval()
    randomize_(model, token_emb_std=1.0)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                     pad_token="<pad>", extra_special_tokens={"image_token": "<image>"},
                                     clean_up_tokenization_spaces=False)
    image_processor = _BitImageProcessor(
        do_resize=True, size={"shortest_edge": MAIRA["crop"]}, resample=PILImageResampling.BICUBIC,
        do_center_crop=True, crop_size={"height": MAIRA["crop"], "width": MAIRA["crop"]}, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=MAIRA["image_mean"], image_std=MAIRA["image_std"],
        do_convert_rgb=True)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=hf_tok, patch_size=vc["patch_size"],
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=MAIRA2_CHAT_TEMPLATE, image_token="<image>")
    gen_cfg = GenerationConfig(bos_token_id=ids["<s>"], eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"],
                               do_sample=False, max_new_tokens=5)
    n_t = save_model_dir(model, processor, gen_cfg, outdir, "maira2")
    # the config keeps MAIRA-2's projector depth (LlavaConfig has no such field): make sure it is on disk
    cpath = os.path.join(outdir, "config.json")
    with open(cpath) as fh:
        cj = json.load(fh)
    cj["projector_n_layers"] = MAIRA["projector_n_layers"]
    cj["architectures"] = ["Maira2ForConditionalGeneration"]
    with open(cpath, "w") as fh:
        json.dump(dict(sorted(cj.items())), fh, indent=2)
        fh.write("\n")
    return dict(model=model, special_token_ids=ids, vocab_size=V, n_tensors=n_t, n_image_tokens=n_img)


def reload(kind, mdir, built):
    if kind == "gemma3":
        model = Gemma3ForConditionalGeneration.from_pretrained(mdir, attn_implementation="eager", dtype=torch.float32)
    else:
        cfg = LlavaConfig.from_pretrained(mdir)
        assert cfg.projector_n_layers == MAIRA["projector_n_layers"]
        cfg._attn_implementation = "eager"
        # transformers' llava checkpoint mapping is not applied to this subclass: map the hub prefixes explicitly
        # (the Dinov2 query/key/value/output.dense names are converted by transformers' dinov2 mapping).
        model = Maira2TinyForConditionalGeneration.from_pretrained(
            mdir, config=cfg, attn_implementation="eager", dtype=torch.float32,
            key_mapping={r"^language_model\.model\.": "model.language_model.",
                         r"^language_model\.lm_head\.": "lm_head.",
                         r"^vision_tower\.": "model.vision_tower.",
                         r"^multi_modal_projector\.": "model.multi_modal_projector."})
    model.eval()
    a, b = built.state_dict(), model.state_dict()
    assert sorted(a) == sorted(b), set(a) ^ set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), f"reloaded weight differs: {k}"
    return model


# --------------------------------------------------------------------------------------
# Reference runs
# --------------------------------------------------------------------------------------
def t32(x):
    return x.detach().to(torch.float32).cpu().clone().contiguous()


def i64(x):
    return torch.as_tensor(x).detach().to(torch.int64).cpu().clone().contiguous()


def scatter_row(row, q_pos, total_len):
    """row [H, kv]: attention of the query at q_pos over the LAST kv positions (HF sliding caches keep only a
    window). -> [H, total_len] at absolute key positions."""
    H, kv = row.shape
    out = torch.zeros(H, total_len, dtype=torch.float32)
    start = q_pos + 1 - kv
    assert start >= 0, (q_pos, kv)
    out[:, start:q_pos + 1] = row
    return out


def runs_of(pos):
    """contiguous runs of sorted positions -> list of [start, end)"""
    pos = pos.tolist()
    runs, s = [], pos[0]
    for a, b in zip(pos, pos[1:] + [None]):
        if b is None or b != a + 1:
            runs.append([s, a + 1])
            s = b
    return runs


def gemma_messages(roles_keys, layout, question, system):
    content = []
    for role, _ in roles_keys:
        if layout == "labelled":
            content.append({"type": "text", "text": ROLE_LABEL[role]})
        content.append({"type": "image"})
    content.append({"type": "text", "text": question})
    msgs = []
    if system:
        msgs.append({"role": "system", "content": [{"type": "text", "text": GEMMA_SYSTEM}]})
    msgs.append({"role": "user", "content": content})
    return msgs


def gemma_vision(model, pv, full):
    vt = model.model.vision_tower
    vo = vt(pixel_values=pv, output_hidden_states=True, return_dict=True)
    mmp = model.model.multi_modal_projector
    x = vo.last_hidden_state.transpose(1, 2).reshape(pv.shape[0], -1, mmp.patches_per_image, mmp.patches_per_image)
    pooled = mmp.avg_pool(x).flatten(2).transpose(1, 2)
    proj = mmp(vo.last_hidden_state)
    res = {
        "vision.pooled": t32(pooled),
        "vision.pooled_normed": t32(mmp.mm_soft_emb_norm(pooled)),
        "vision.projector_output": t32(proj),
    }
    if full:
        res["vision.last_hidden_state"] = t32(vo.last_hidden_state)  # [n, P, Dv], post_layernorm applied
    return res


def maira_vision(model, pv, full):
    bb = model.model.vision_tower
    emb = bb.embeddings
    patch = emb.patch_embeddings(pv)                                     # [n, P, Dv]
    cls_plus = torch.cat([emb.cls_token.expand(pv.shape[0], -1, -1), patch], dim=1)
    pos = emb.interpolate_pos_encoding(cls_plus, pv.shape[2], pv.shape[3])  # [1, 1+P, Dv]
    out = bb(pv, output_hidden_states=True)
    hs = torch.stack(list(out.hidden_states), dim=1)                    # [n, nl+1, 1+P, Dv]
    assert torch.equal(hs[:, 0], cls_plus + pos)
    fmap = out.feature_maps[-1]                                          # layernorm(hs[-1])
    assert torch.equal(fmap, bb.layernorm(hs[:, -1]))
    sel = fmap[:, 1:]
    proj_layers, x = [], sel
    for m in model.model.multi_modal_projector.layers:
        x = m(x)
        if isinstance(m, nn.Linear):
            proj_layers.append(x)
    res = {
        "vision.patch_embeddings": t32(patch),
        "vision.position_embeddings_interpolated": t32(pos[0]),
        "vision.hidden_states": t32(hs),
        "vision.feature_map": t32(fmap),
        "vision.selected_features": t32(sel),
        "vision.projector_output": t32(x),
    }
    if full:
        res["vision.projector_linear_outputs"] = t32(torch.stack(proj_layers, dim=1))  # [n, n_lin, P, Dt] pre-GELU
    return res


def run_case(kind, model, processor, raw_tok, images, roles, messages, max_new_tokens, full_attn, store_all_logits,
             store_hidden):
    cfg = model.config
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    n_images = len(images)
    if kind == "gemma3":
        add_special = False
        inputs = processor(images=[images], text=prompt, return_tensors="pt", add_special_tokens=False)
        n_per = GEMMA["mm_tokens_per_image"]
        expanded = prompt.replace("<start_of_image>",
                                  "\n\n<start_of_image>" + "<image_soft_token>" * n_per + "<end_of_image>\n\n")
        pp_images = images
    else:
        add_special = True
        pp_images = [maira2_normalize_image(im) for im in images]
        inputs = processor(images=pp_images, text=prompt, return_tensors="pt")
        n_per = MAIRA["crop"] // MAIRA["vision"]["patch_size"]
        n_per = n_per * n_per
        expanded = prompt.replace("<image>", "<image>" * n_per)
    assert prompt.count("<start_of_image>" if kind == "gemma3" else "<image>") == n_images
    input_ids = inputs["input_ids"]
    L = input_ids.shape[1]
    img_pos = (input_ids[0] == cfg.image_token_id).nonzero().flatten()
    runs = runs_of(img_pos)
    assert len(runs) == n_images and all(b - a == n_per for a, b in runs), runs
    per_image = torch.stack([torch.arange(a, b) for a, b in runs])  # [n_images, n_per]
    pv = inputs["pixel_values"]
    assert pv.shape[0] == n_images, pv.shape
    raw_ids = raw_tok.encode(expanded, add_special_tokens=add_special).ids
    assert raw_ids == input_ids[0].tolist(), ("tokenizer.json mismatch", raw_ids, input_ids[0].tolist())

    out = model(**inputs, output_attentions=True, output_hidden_states=True, use_cache=False, return_dict=True)
    logits = out.logits[0]
    attn = torch.stack([a[0] for a in out.attentions])  # [NL, H, L, L]
    hidden = torch.stack([h[0] for h in out.hidden_states])
    NL = attn.shape[0]

    if kind == "gemma3":
        # per-image bidirectional blocks: an image token sees the later tokens of its OWN image on full layers,
        # never the tokens of a later image.
        full_layers = [i for i, lt in enumerate(cfg.text_config.layer_types) if lt == F]
        for i, (a, b) in enumerate(runs):
            fl = full_layers[0]
            assert float(attn[fl, :, a, a + 1:b].sum()) > 0.0
            if i + 1 < n_images:
                na, nb = runs[i + 1]
                assert float(attn[:, :, a:b, na:nb].abs().max()) == 0.0, "image block sees a later image"

    gen = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, return_dict_in_generate=True,
                         output_attentions=True, output_logits=True, pad_token_id=processor.tokenizer.pad_token_id)
    gen_ids = gen.sequences[0, L:]
    T = int(gen_ids.numel())
    total = L + T - 1
    gen_attn = torch.zeros(T, NL, attn.shape[1], total)
    for k in range(T):
        for li, a in enumerate(gen.attentions[k]):
            gen_attn[k, li] = scatter_row(t32(a[0, :, -1, :]), L - 1 + k, total)
    gen_logits = torch.stack([t32(x[0]) for x in gen.logits])
    d_logits = (gen_logits[0] - logits[-1]).abs().max().item()
    d_attn = (gen_attn[0, :, :, :L] - attn[:, :, -1, :]).abs().max().item()
    assert d_logits < 1e-4 and d_attn < 1e-5, (d_logits, d_attn)
    assert int(gen_ids[0]) == int(logits[-1].argmax())
    top2 = torch.topk(gen_logits, 2, dim=-1).values
    assert float((top2[:, 0] - top2[:, 1]).min()) > 2e-3, "greedy step too close to a tie for a parity test"
    text_hf = processor.tokenizer.decode(gen_ids, skip_special_tokens=True)
    text_raw = raw_tok.decode(gen_ids.tolist(), skip_special_tokens=True)
    assert text_hf == text_raw, (text_hf, text_raw)

    vis = gemma_vision(model, pv, store_hidden) if kind == "gemma3" else maira_vision(model, pv, store_hidden)
    d_splice = (hidden[0][per_image.reshape(-1)] - vis["vision.projector_output"].reshape(-1, hidden.shape[-1])
                ).abs().max().item()
    assert d_splice == 0.0, d_splice

    tensors = {
        "input_ids": i64(input_ids[0]),
        "image_token_positions": i64(img_pos),
        "image_token_positions_per_image": i64(per_image),
        "pixel_values": t32(pv),
        "prompt_last_logits": t32(logits[-1]),
        "prompt_last_attn": t32(attn[:, :, -1, :]),
        "prompt_last_attn_image": t32(attn[:, :, -1, :][:, :, per_image]),  # [NL, H, n_images, n_per]
        "generated_ids": i64(gen_ids),
        "gen_logits": gen_logits.contiguous(),
        "gen_attn": gen_attn.contiguous(),
        "gen_attn_image": gen_attn[:, :, :, per_image].contiguous(),     # [T, NL, H, n_images, n_per]
    }
    if kind == "gemma3":
        tensors["token_type_ids"] = i64(inputs["token_type_ids"][0])
        assert torch.equal(tensors["token_type_ids"], (input_ids[0] == cfg.image_token_id).long())
    if store_all_logits:
        tensors["prompt_logits"] = t32(logits)
    if store_hidden:
        tensors["prompt_hidden_states"] = t32(hidden)
    if full_attn:
        tensors["prompt_attn_full"] = t32(attn)
    tensors.update(vis)

    if kind == "gemma3":
        boi = (input_ids[0] == cfg.boi_token_index).nonzero().flatten().tolist()
        eoi = (input_ids[0] == cfg.eoi_token_index).nonzero().flatten().tolist()
        assert len(boi) == len(eoi) == n_images
        assert all(bo + 1 == a and b == eo for bo, eo, (a, b) in zip(boi, eoi, runs))
    top = torch.topk(logits[-1], 5)
    top2 = torch.topk(gen_logits, 2, dim=-1).values
    manifest = {
        "model": kind,
        "n_images": n_images,
        "image_roles": roles,
        "messages": messages,
        "prompt_text": prompt,
        "expanded_prompt_text": expanded,
        "tokenizer_add_special_tokens": add_special,
        "seq_len": L,
        "input_ids": input_ids[0].tolist(),
        "input_tokens": [raw_tok.id_to_token(i) for i in input_ids[0].tolist()],
        "image_token_id": int(cfg.image_token_id),
        "n_image_tokens_per_image": n_per,
        "image_token_positions": img_pos.tolist(),
        "image_token_ranges": runs,
        "pixel_values_shape": list(pv.shape),
        "last_logits_top5": {"ids": top.indices.tolist(), "values": [float(x) for x in top.values]},
        "generated_ids": gen_ids.tolist(),
        "generated_tokens": [raw_tok.id_to_token(i) for i in gen_ids.tolist()],
        "generated_text": text_hf,
        "generated_text_with_special": processor.tokenizer.decode(gen_ids, skip_special_tokens=False),
        "gen_top1_top2_margin": (top2[:, 0] - top2[:, 1]).tolist(),
        "gen_query_positions": [L - 1 + k for k in range(T)],
        "gen_kv_lengths": [L + k for k in range(T)],
        "gen_raw_attn_kv_lengths_per_layer": [[int(a.shape[-1]) for a in step] for step in gen.attentions],
        "self_check": {"gen_prefill_vs_forward_logits_maxabs": d_logits, "gen_prefill_vs_forward_attn_maxabs": d_attn,
                       "projector_output_vs_spliced_embeddings_maxabs": d_splice},
    }
    if kind == "gemma3":
        manifest["token_type_ids"] = tensors["token_type_ids"].tolist()
        manifest["boi_positions"], manifest["eoi_positions"] = boi, eoi
    else:
        manifest["normalized_image_sizes_wh"] = [list(im.size) for im in pp_images]
    manifest["image_sizes_wh"] = [list(im.size) for im in images]
    manifest["image_modes"] = [im.mode for im in images]
    manifest["tensors"] = {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                           for k, v in sorted(tensors.items())}
    return tensors, manifest


def versions():
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "safetensors": safetensors.__version__,
            "numpy": np.__version__, "pillow": PIL.__version__}


def dir_size(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=5)
    ap.add_argument("--models", default="gemma3,maira2")
    args = ap.parse_args(argv)

    t0 = time.time()
    torch.set_grad_enabled(False)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    log("versions:", versions())
    if os.path.exists(os.path.join(out, "images")):
        shutil.rmtree(os.path.join(out, "images"))
    img_paths = make_images(os.path.join(out, "images"))
    images = {}
    for k, p in img_paths.items():
        images[k] = Image.open(p)
        images[k].load()
    index = {"seed": args.seed, "versions": versions(), "dtype": "float32", "attn_implementation": "eager",
             "max_new_tokens": args.max_new_tokens,
             "images": {k: os.path.relpath(p, out) for k, p in img_paths.items()}, "models": {}}
    ref_root = os.path.join(out, "reference")
    os.makedirs(ref_root, exist_ok=True)

    for kind in args.models.split(","):
        mname = GEMMA_DIR if kind == "gemma3" else MAIRA_DIR
        mdir = os.path.join(out, mname)
        log(f"== building {kind} -> {mdir}")
        info = (build_gemma3 if kind == "gemma3" else build_maira2)(mdir, args.seed)
        model = reload(kind, mdir, info.pop("model"))
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained(mdir)
        raw_tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
        mref = os.path.join(ref_root, mname)
        if os.path.exists(mref):
            shutil.rmtree(mref)
        os.makedirs(mref)
        cases = []
        specs = []
        if kind == "gemma3":
            for ci, (cname, rk, layout, q, system) in enumerate(GEMMA_CASES):
                specs.append((cname, [r for r, _ in rk], [images[k] for _, k in rk],
                              [index["images"][k] for _, k in rk], gemma_messages(rk, layout, q, system),
                              dict(question=q, system_prompt=GEMMA_SYSTEM if system else None, layout=layout)))
        else:
            role_key = {"frontal": "frontal", "lateral": "lateral", "prior": "prior"}
            for cname, roles, ck, kw in MAIRA_CASES:
                msgs = (maira2_reporting_content("lateral" in roles, "prior" in roles, **kw) if ck == "reporting"
                        else maira2_phrase_grounding_content(**kw))
                specs.append((cname, roles, [images[role_key[r]] for r in roles],
                              [index["images"][role_key[r]] for r in roles], msgs, dict(task=ck, **kw)))
        small = SMALL_CASE[kind]  # the shortest prompt carries the big debug tensors (size budget)
        for ci, (cname, roles, imgs, img_files, msgs, extra) in enumerate(specs):
            tensors, manifest = run_case(kind, model, processor, raw_tok, imgs, roles, msgs, args.max_new_tokens,
                                         full_attn=(cname == small and kind == "gemma3"),
                                         store_all_logits=(cname == small and kind == "gemma3"), store_hidden=(cname == small))
            manifest.update({"case": cname, "images": img_files, "seed": args.seed, "model_dir": mname, **extra})
            cdir = os.path.join(mref, cname)
            os.makedirs(cdir)
            save_file(tensors, os.path.join(cdir, "tensors.safetensors"), metadata={"format": "pt"})
            with open(os.path.join(cdir, "manifest.json"), "w") as fh:
                json.dump(manifest, fh, indent=1)
            log(f"   {cname}: images={roles} L={manifest['seq_len']} ranges={manifest['image_token_ranges']} "
                f"gen={manifest['generated_ids']} text={manifest['generated_text']!r} "
                f"min_margin={min(manifest['gen_top1_top2_margin']):.4f}")
            cases.append({"case": cname, "image_roles": roles, "images": img_files, "seq_len": manifest["seq_len"],
                          "image_token_ranges": manifest["image_token_ranges"]})
        cfg = model.config
        entry = {"kind": kind, "class": type(model).__name__, "n_params": sum(p.numel() for p in model.parameters()),
                 "cases": [c["case"] for c in cases], "case_info": cases,
                 "special_token_ids": info["special_token_ids"], "vocab_size": info["vocab_size"],
                 "n_tensors": info["n_tensors"], "processor": type(processor).__name__,
                 "image_processor": type(processor.image_processor).__name__}
        if kind == "gemma3":
            entry.update({"layer_types": cfg.text_config.layer_types, "sliding_window": cfg.text_config.sliding_window,
                          "mm_tokens_per_image": cfg.mm_tokens_per_image,
                          "tensor_name_layout": "hub (language_model.model.*, vision_tower.vision_model.*, "
                                                "multi_modal_projector.*; tied lm_head)"})
        else:
            entry.update({"n_image_tokens_per_image": info["n_image_tokens"], "crop_size": MAIRA["crop"],
                          "config_image_size": cfg.vision_config.image_size,
                          "position_grid": cfg.vision_config.image_size // cfg.vision_config.patch_size,
                          "patch_grid": MAIRA["crop"] // cfg.vision_config.patch_size,
                          "projector_n_layers": MAIRA["projector_n_layers"],
                          "vision_feature_layer": cfg.vision_feature_layer,
                          "vision_feature_select_strategy": cfg.vision_feature_select_strategy,
                          "rope_parameters": dict(MAIRA["rope"]),
                          "tensor_name_layout": "hub as microsoft/maira-2 (vision_tower.* Dinov2Backbone, "
                                                "multi_modal_projector.layers.{0,2,4,6}.*, language_model.model.*, "
                                                "language_model.lm_head.weight)",
                          "chat_template_is_assumed": True})
        index["models"][mname] = entry
    with open(os.path.join(ref_root, "index.json"), "w") as fh:
        json.dump(index, fh, indent=1)
    log(f"total size of {out}: {dir_size(out) / 1e6:.2f} MB in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
