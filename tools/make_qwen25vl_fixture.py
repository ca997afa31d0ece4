#!/usr/bin/env python3
"""Parity-fixture generator for a tiny random Qwen2.5-VL (radlens issue 20, part 2).

Builds a tiny, randomly initialised (seeded, float32) `Qwen2_5_VLForConditionalGeneration`, a small
byte-level BPE tokenizer with Qwen's real special tokens, the real Qwen2.5-VL chat template, a
`Qwen2_5_VLProcessor` (PIL image-processor backend) and a few synthetic images, then runs the full
transformers pipeline (processor -> eager forward with attentions -> greedy generate) and dumps golden
tensors for a Rust/candle port.

Usage:
    python make_qwen25vl_fixture.py --out OUTDIR [--seed 0] [--max-new-tokens 5]

Layout written (see tools/README-qwen25vl.md):
    OUTDIR/qwen25vl-tiny/   config.json model.safetensors tokenizer.json tokenizer_config.json
                            processor_config.json chat_template.jinja generation_config.json tensor_names.txt
    OUTDIR/images/          *.png
    OUTDIR/reference/index.json
    OUTDIR/reference/qwen25vl-tiny/<case>/{tensors.safetensors,manifest.json}

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
import sys
import time

import numpy as np
import torch
import torch.nn as nn

import PIL
from PIL import Image

import safetensors
from safetensors import safe_open
from safetensors.torch import save_file

import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

import transformers
from transformers import (
    AutoProcessor,
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
)

try:  # transformers >= 5: explicit PIL backend (torchvision is deliberately not installed)
    from transformers import Qwen2VLImageProcessorPil as _QwenImageProcessor
except ImportError:  # transformers 4.x
    from transformers import Qwen2VLImageProcessor as _QwenImageProcessor
from transformers.image_utils import PILImageResampling
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize
from transformers.vision_utils import get_vision_attention_seqlens, get_vision_position_ids, get_vision_window_index

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
MODEL_DIR = "qwen25vl-tiny"

# --------------------------------------------------------------------------------------
# Architecture knobs
# --------------------------------------------------------------------------------------
VISION = dict(depth=4, hidden_size=32, num_heads=2, intermediate_size=64, patch_size=14, spatial_merge_size=2,
              temporal_patch_size=2, window_size=56, hidden_act="silu", in_channels=3,
              fullatt_block_indexes=[1, 3], tokens_per_second=2)
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            rms_norm_eps=1e-6, rope_theta=1_000_000.0, mrope_section=[2, 3, 3], max_position_embeddings=2048)
# Image processor: real Qwen2.5-VL uses min 56*56, max 28*28*16384 (12845056); a tiny max keeps images small.
MIN_PIXELS = 56 * 56          # 3136
MAX_PIXELS = 28 * 28 * 30     # 23520 -> at most 120 patches / 30 merged tokens (keeps the fixture < 3 MB)
VOCAB_LEARNED_TARGET = 460    # bytes (256) + learned merges; specials come after
VOCAB_PAD_MULTIPLE = 64       # like real checkpoints, config.vocab_size > tokenizer size (unused rows)

# Qwen2 / Qwen2.5 special tokens, in their real order (151643..151656 in the real vocabulary).
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                 "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
# The real Qwen2 pre-tokenizer split regex.
QWEN_SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                    r"|\s*[\r\n]+|\s+(?!\S)|\s+")
MUST_BE_SINGLE_TOKENS = ["yes", "no", "Yes", "No", " yes", " no"]

# The chat template exactly as Qwen/Qwen2.5-VL-*-Instruct ships it (chat_template.json).
QWEN25VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

# --------------------------------------------------------------------------------------
# Prompts / corpus
# --------------------------------------------------------------------------------------
QUESTIONS = [
    "Is there a fracture in this image?",
    "Does the chest x-ray show pneumonia?",
    "Is the lesion on the left side larger than two centimeters? Answer yes or no.",
]
SYSTEM_PROMPT = "You are a careful medical assistant. Answer yes or no."
CASES = [  # (case name, image key, question index, explicit system prompt?)
    ("case0", "img_a", 0, False),  # gray 90x150 -> 84x140 (rounded), grid 10x6, 15 tokens (5x3), 3x2 windows
    ("case1", "img_b", 1, False),  # RGB 290x140 > max_pixels -> 196x84 (downscaled), grid 6x14, 21 tokens (3x7)
    ("case2", "img_c", 2, True),   # gray 40x30 < min_pixels -> 84x56 (upscaled), grid 4x6, 6 tokens (2x3),
]                                  # explicit system prompt (replaces the template's default one)
CORPUS_QA = [
    ("Is there a fracture in this image?", "yes"),
    ("Is there a fracture of the left femur?", "no"),
    ("Does the chest x-ray show pneumonia?", "yes"),
    ("Does the chest x-ray show a pleural effusion?", "no"),
    ("Is the heart enlarged?", "no"),
    ("Is there evidence of cardiomegaly?", "yes"),
    ("Is the lesion on the left side larger than two centimeters?", "yes"),
    ("Is the lesion benign?", "no"),
    ("Is there a mass in the right lung?", "yes"),
    ("Is there free air under the diaphragm?", "no"),
    ("Are the lungs clear?", "yes"),
    ("Is this a CT scan of the abdomen?", "yes"),
    ("Is this an MRI of the brain?", "no"),
    ("Is there a hemorrhage in the brain?", "no"),
    ("Is the kidney normal in size?", "yes"),
    ("Does the image show a dislocated shoulder?", "no"),
    ("Is there a nodule in the upper lobe?", "yes"),
    ("Are there signs of edema?", "no"),
    ("Is the trachea midline?", "yes"),
    ("Is a pneumothorax present?", "no"),
    ("Is the liver enlarged?", "yes"),
    ("Does the patient have a broken rib?", "no"),
    ("Is there calcification in the artery?", "yes"),
    ("Is the image taken in the frontal view?", "yes"),
    ("Is the tumor malignant?", "no"),
    ("Is there an abnormality in the spine?", "yes"),
]
EXTRA_TEXT = [
    "Answer yes or no.", "Yes.", "No.", "Yes, there is.", "No, there is not.", "yes", "no", "Yes", "No",
    "You are a helpful assistant.", "You are a careful medical assistant. Answer yes or no.",
    "The image shows a bright spot near the center.", "The finding is normal.",
    "The finding is abnormal and needs follow up.", "I am not sure, please consult a doctor.",
]


# Without torchvision, transformers 5.24 has no usable video-processor class (VIDEO_PROCESSOR_MAPPING is a dummy),
# so Qwen2_5_VLProcessor can be neither built nor loaded with its `video_processor` attribute. Images never touch
# the video processor: declare the processor's attributes as image processor + tokenizer only (saving and
# AutoProcessor.from_pretrained then skip the video processor; processor_class stays "Qwen2_5_VLProcessor").
Qwen2_5_VLProcessor.get_attributes = classmethod(lambda cls: ["image_processor", "tokenizer"])


def log(*a):
    print(*a, flush=True)


# --------------------------------------------------------------------------------------
# Tokenizer: byte-level BPE with the real Qwen2 pre-tokenizer / decoder and the real special tokens.
# --------------------------------------------------------------------------------------
def corpus_lines():
    lines = []
    for q, a in CORPUS_QA:
        lines += [q, a, a.capitalize(), a.capitalize() + ".", f"{q} {a}"]
        lines.append(f"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                     f"<|vision_start|><|image_pad|><|vision_end|>{q}<|im_end|>\n<|im_start|>assistant\n"
                     f"{a.capitalize()}.<|im_end|>\n")
    return (lines + EXTRA_TEXT) * 3


def build_tokenizer():
    # BpeTrainer does not split special tokens out of its training text: do it here, so that no learned
    # token contains special-token text (e.g. "<|im_end|>\n<|im_start|>").
    split_re = re.compile("|".join(re.escape(t) for t in QWEN_SPECIALS))
    corpus = [piece for line in corpus_lines() for piece in split_re.split(line) if piece]
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_LEARNED_TARGET, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(corpus, trainer)
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    n = len(vocab)
    assert sorted(vocab.values()) == list(range(n))
    for i, t in enumerate(QWEN_SPECIALS):  # specials after all learned tokens, like the real Qwen vocab
        vocab[t] = n + i
    j["added_tokens"] = [
        {"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True} for t in QWEN_SPECIALS]
    j["model"]["vocab"] = vocab
    tok = Tokenizer.from_str(json.dumps(j))
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    for w in MUST_BE_SINGLE_TOKENS:
        ids = tok.encode(w, add_special_tokens=False).ids
        assert len(ids) == 1, f"{w!r} is not a single token: {ids}"
    return tok


# --------------------------------------------------------------------------------------
# Random re-initialisation (HF's default init gives near-uniform attention and near-zero logits).
# --------------------------------------------------------------------------------------
def randomize_(model):
    seen = set()

    def fill(p, fn):
        if id(p) in seen:
            return
        seen.add(id(p))
        with torch.no_grad():
            fn(p)

    for mname, m in model.named_modules():
        cls = type(m).__name__
        if isinstance(m, nn.Linear):
            std = 1.0 / math.sqrt(m.weight.shape[1])
            if mname.endswith(("q_proj", "k_proj")):
                fill(m.weight, lambda p, s=std: p.normal_(0.0, 1.5 * s))
            elif mname.endswith("attn.qkv"):  # fused vision q|k|v: q and k rows x1.5
                def qkv(p, s=std):
                    p.normal_(0.0, s)
                    p[: 2 * p.shape[0] // 3] *= 1.5
                fill(m.weight, qkv)
            else:
                fill(m.weight, lambda p, s=std: p.normal_(0.0, s))
            if m.bias is not None:
                fill(m.bias, lambda p: p.normal_(0.0, 0.05))
        elif isinstance(m, (nn.Conv2d, nn.Conv3d)):
            fan_in = m.weight[0].numel()
            fill(m.weight, lambda p, f=fan_in: p.normal_(0.0, 1.0 / math.sqrt(f)))
            if m.bias is not None:
                fill(m.bias, lambda p: p.normal_(0.0, 0.05))
        elif isinstance(m, nn.Embedding):
            fill(m.weight, lambda p: p.normal_(0.0, 1.0))
        elif "RMSNorm" in cls:  # Qwen RMSNorm: x * w
            fill(m.weight, lambda p: p.normal_(1.0, 0.1))
    left = [n for n, p in model.named_parameters() if id(p) not in seen]
    if left:
        raise RuntimeError(f"parameters not re-initialised: {left}")


# --------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------
def make_images(outdir):
    os.makedirs(outdir, exist_ok=True)
    # A: 90x150 (W x H) 8-bit grayscale "chest x-ray": dark background, two bright lung-field ellipses
    # with horizontal rib bands, a bright spine, and a small bright nodule. Sides not multiples of 28.
    h, w = 150, 90
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    g = 20.0 + 30.0 * yy / (h - 1)
    for cx in (26.0, 64.0):
        lung = ((xx - cx) / 18.0) ** 2 + ((yy - 72.0) / 52.0) ** 2 < 1.0
        g[lung] += 70.0 + 40.0 * (0.5 + 0.5 * np.cos(yy[lung] / 4.0))
    g += 120.0 * np.exp(-((xx - 45.0) ** 2) / (2 * 3.0 ** 2))
    g += 150.0 * np.exp(-(((xx - 66) ** 2) + ((yy - 52) ** 2)) / (2 * 4.0 ** 2))
    a = np.clip(np.rint(g), 0, 255).astype(np.uint8)
    img_a = Image.fromarray(a, mode="L")
    # B: 290x140 (W x H) RGB, 40600 px > max_pixels: R = x-gradient, G = y-gradient, B = rings, dark disc.
    h, w = 140, 290
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255.0 * xx / (w - 1)
    gg = 255.0 * yy / (h - 1)
    rad = np.sqrt((xx - 200) ** 2 + (yy - 60) ** 2)
    b = 127.5 + 127.5 * np.cos(rad / 6.0)
    disc = ((xx - 70) ** 2 + (yy - 90) ** 2) < 30 ** 2
    r[disc], gg[disc], b[disc] = 20.0, 20.0, 60.0
    rgb = np.stack([r, gg, b], axis=-1)
    img_b = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), mode="RGB")
    # C: 40x30 (W x H) grayscale, 1200 px < min_pixels (upscaled): checkerboard + diagonal gradient.
    h, w = 30, 40
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    c = 60.0 + 3.0 * (xx + yy) + 80.0 * (((xx // 5) + (yy // 5)) % 2)
    img_c = Image.fromarray(np.clip(np.rint(c), 0, 255).astype(np.uint8), mode="L")
    paths = {"img_a": os.path.join(outdir, "img_a_gray_90x150.png"),
             "img_b": os.path.join(outdir, "img_b_rgb_290x140.png"),
             "img_c": os.path.join(outdir, "img_c_gray_40x30.png")}
    img_a.save(paths["img_a"])
    img_b.save(paths["img_b"])
    img_c.save(paths["img_c"])
    return paths


# --------------------------------------------------------------------------------------
# Model / processor build
# --------------------------------------------------------------------------------------
def hub_style_config(cfg_dict, text):
    """transformers 5.24 writes the text settings nested under `text_config` (with `rope_parameters`).
    Real Qwen/Qwen2.5-VL-*-Instruct config.json files keep them at the top level (with
    `rope_scaling: {type: mrope, mrope_section}` and `rope_theta`), and their vision_config says `in_chans`.
    Write both, so a loader for either layout works; transformers reads `text_config` when present."""
    out = dict(cfg_dict)
    tc = out["text_config"]
    top = {k: tc[k] for k in ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                              "num_attention_heads", "num_key_value_heads", "hidden_act", "max_position_embeddings",
                              "rms_norm_eps", "use_sliding_window", "sliding_window", "max_window_layers",
                              "attention_dropout", "bos_token_id", "eos_token_id", "initializer_range", "use_cache"]}
    top["rope_theta"] = text["rope_theta"]
    top["rope_scaling"] = {"type": "mrope", "mrope_section": list(text["mrope_section"])}
    out.update(top)
    out["vision_config"] = dict(out["vision_config"], in_chans=out["vision_config"]["in_channels"],
                                spatial_patch_size=out["vision_config"]["patch_size"])
    return dict(sorted(out.items()))


def build_model_dir(outdir, seed):
    tok = build_tokenizer()
    n_tok = tok.get_vocab_size()
    V = ((n_tok + VOCAB_PAD_MULTIPLE - 1) // VOCAB_PAD_MULTIPLE) * VOCAB_PAD_MULTIPLE
    ids = {t: tok.token_to_id(t) for t in QWEN_SPECIALS}
    t = dict(TEXT)
    rope_theta, mrope = t.pop("rope_theta"), t.pop("mrope_section")
    text_config = dict(vocab_size=V, hidden_act="silu", tie_word_embeddings=False, use_sliding_window=False,
                       max_window_layers=TEXT["num_hidden_layers"],
                       rope_parameters={"rope_type": "default", "mrope_section": mrope, "rope_theta": rope_theta},
                       bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], **t)
    vision_config = dict(VISION, out_hidden_size=TEXT["hidden_size"])
    config = Qwen2_5_VLConfig(vision_config=vision_config, text_config=text_config,
                              image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                              vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                              tie_word_embeddings=False)
    assert config.tie_word_embeddings is False and config.text_config.tie_word_embeddings is False
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    randomize_(model)
    # Rows n_tok..V-1 have no token (vocab padded like the real checkpoints). Zero their lm_head rows: their
    # logit is then exactly 0 and never the argmax (the max over ~470 random logits is well above 0).
    with torch.no_grad():
        model.lm_head.weight[n_tok:] = 0.0

    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                     bos_token=None, unk_token=None, errors="replace", model_max_length=32768,
                                     clean_up_tokenization_spaces=False, split_special_tokens=False,
                                     extra_special_tokens={"image_token": "<|image_pad|>",
                                                           "video_token": "<|video_pad|>",
                                                           "vision_bos_token": "<|vision_start|>",
                                                           "vision_eos_token": "<|vision_end|>"})
    image_processor = _QwenImageProcessor(
        do_resize=True, resample=PILImageResampling.BICUBIC, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD, do_convert_rgb=True,
        min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=VISION["patch_size"],
        temporal_patch_size=VISION["temporal_patch_size"], merge_size=VISION["spatial_merge_size"])
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=hf_tok, video_processor=None,
                                    chat_template=QWEN25VL_CHAT_TEMPLATE)
    gen_cfg = GenerationConfig(bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
                               pad_token_id=ids["<|endoftext|>"], do_sample=False, max_new_tokens=5)

    if os.path.exists(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    model.save_pretrained(outdir, safe_serialization=True)
    processor.save_pretrained(outdir)
    gen_cfg.save_pretrained(outdir)
    # config.json: add the hub (4.x, flat) fields next to 5.x's nested text_config.
    cpath = os.path.join(outdir, "config.json")
    with open(cpath) as fh:
        saved_cfg = json.load(fh)
    with open(cpath, "w") as fh:
        json.dump(hub_style_config(saved_cfg, TEXT), fh, indent=2)
        fh.write("\n")
    # safetensors metadata: keep a single key (multi-key metadata is serialised in random order).
    from safetensors.torch import load_file
    mpath = os.path.join(outdir, "model.safetensors")
    sd = load_file(mpath)
    save_file({k: sd[k].contiguous() for k in sorted(sd)}, mpath, metadata={"format": "pt"})
    lines = []
    with safe_open(mpath, "pt") as f:
        for k in sorted(f.keys()):
            sl = f.get_slice(k)
            lines.append(f"{k}\t{sl.get_dtype()}\t{list(sl.get_shape())}")
    with open(os.path.join(outdir, "tensor_names.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return dict(model=model, special_token_ids=ids, tokenizer_size=n_tok, vocab_size=V, n_tensors=len(lines))


# --------------------------------------------------------------------------------------
# Independent re-computation of the image processor (numpy + PIL, the exact PIL-backend steps)
# --------------------------------------------------------------------------------------
def smart_resize(height, width, factor, min_pixels, max_pixels):
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def preprocess_image(img):
    """-> (resized uint8 [3,H,W], normalised float32 [3,H,W], (H, W))"""
    rgb = img.convert("RGB")  # gray L -> R=G=B
    W0, H0 = rgb.size
    factor = VISION["patch_size"] * VISION["spatial_merge_size"]
    H, W = smart_resize(H0, W0, factor, MIN_PIXELS, MAX_PIXELS)
    assert (H, W) == hf_smart_resize(H0, W0, factor=factor, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    resized = np.array(rgb.resize((W, H), resample=Image.BICUBIC))  # PIL bicubic on uint8, [H, W, 3]
    u8 = np.ascontiguousarray(resized.transpose(2, 0, 1))  # [3, H, W]
    x = (u8.astype(np.float64) * (1 / 255)).astype(np.float32)  # rescale: float64 multiply, then f32
    mean = np.array(OPENAI_CLIP_MEAN, dtype=np.float32)[:, None, None]
    std = np.array(OPENAI_CLIP_STD, dtype=np.float32)[:, None, None]
    x = ((x - mean) / std).astype(np.float32)  # normalize in float32
    return u8, x, (H, W)


def patchify(x):
    """[3, H, W] -> [gh*gw, 3*T*p*p]; rows in merge-block order (each 2x2 block of patches consecutive),
    columns ordered (channel, temporal, py, px); the single frame is duplicated over temporal_patch_size."""
    p, m, T = VISION["patch_size"], VISION["spatial_merge_size"], VISION["temporal_patch_size"]
    C, H, W = x.shape
    gh, gw = H // p, W // p
    y = x.reshape(C, gh // m, m, p, gw // m, m, p).transpose(1, 4, 2, 5, 0, 3, 6)  # (bh, bw, mh, mw, C, py, px)
    y = np.broadcast_to(y[:, :, :, :, :, None], (*y.shape[:5], T, p, p))
    return np.ascontiguousarray(y.reshape(gh * gw, C * T * p * p)), gh, gw


# --------------------------------------------------------------------------------------
# Reference runs
# --------------------------------------------------------------------------------------
def t32(x):
    return x.detach().to(torch.float32).cpu().clone().contiguous()


def i64(x):
    return torch.as_tensor(x).detach().to(torch.int64).cpu().clone().contiguous()


def vision_tensors(model, pixel_values, grid_thw):
    """Vision-tower intermediates (hooks on the real modules, so they are exactly what the forward used)."""
    visual = model.model.visual
    vc = model.config.vision_config
    rec = {}
    hooks = [visual.patch_embed.register_forward_hook(lambda m, a, o: rec.__setitem__("patch_embed", o)),
             visual.merger.register_forward_hook(lambda m, a, o: rec.__setitem__("merger_raw", o))]
    for i, blk in enumerate(visual.blocks):
        hooks.append(blk.register_forward_hook(lambda m, a, o, i=i: rec.__setitem__(f"block{i}", o)))
    out = visual(pixel_values, grid_thw=grid_thw, return_dict=True)
    for h in hooks:
        h.remove()
    pos_ids = get_vision_position_ids(grid_thw, vc.spatial_merge_size)  # [N, 2] (h, w), processor order
    cu_seqlens, _ = get_vision_attention_seqlens(grid_thw, vc)
    window_index, cu_window_seqlens = get_vision_window_index(
        grid_thw, spatial_merge_size=vc.spatial_merge_size, window_size=vc.window_size, patch_size=vc.patch_size)
    cos, sin = visual.rotary_pos_emb(rec["patch_embed"], pos_ids)  # [N, head_dim], processor order
    N = rec["patch_embed"].shape[0]
    unit = vc.spatial_merge_size ** 2
    perm = (window_index[:, None] * unit + torch.arange(unit)[None, :]).reshape(-1)  # patch-level permutation
    emb_w = rec["patch_embed"][perm]
    blocks = torch.stack([emb_w] + [rec[f"block{i}"] for i in range(vc.depth)])  # window order
    feats = out.pooler_output
    assert torch.equal(feats, rec["merger_raw"][torch.argsort(window_index)])
    return {
        "vision.patch_embed": t32(rec["patch_embed"]),
        "vision.rotary_pos_ids": i64(pos_ids),
        "vision.rotary_cos": t32(cos),
        "vision.rotary_sin": t32(sin),
        "vision.window_index": i64(window_index),
        "vision.patch_permutation": i64(perm),
        "vision.cu_window_seqlens": i64(cu_window_seqlens),
        "vision.cu_seqlens": i64(cu_seqlens),
        "vision.hidden_states": t32(blocks),
        "vision.merger_output_window_order": t32(rec["merger_raw"]),
        "vision.merger_output": t32(feats),
    }, N


def run_case(model, processor, raw_tok, image, question, system, max_new_tokens, full_attn):
    cfg = model.config
    messages = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]})
    messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]})
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    sys_text = SYSTEM_PROMPT if system else "You are a helpful assistant."
    expected = (f"<|im_start|>system\n{sys_text}<|im_end|>\n<|im_start|>user\n"
                f"<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n")
    assert prompt == expected, (prompt, expected)
    inputs = processor(images=image, text=prompt, return_tensors="pt")
    input_ids = inputs["input_ids"]
    L = input_ids.shape[1]
    grid = inputs["image_grid_thw"]
    merge = cfg.vision_config.spatial_merge_size
    n_img = int(grid[0].prod()) // merge ** 2
    img_pos = (input_ids[0] == cfg.image_token_id).nonzero().flatten()
    assert img_pos.numel() == n_img and bool((img_pos == img_pos[0] + torch.arange(n_img)).all())
    assert torch.equal(inputs["mm_token_type_ids"][0], (input_ids[0] == cfg.image_token_id).to(inputs["mm_token_type_ids"].dtype))
    assert bool((inputs["attention_mask"] == 1).all())

    # The Rust side uses tokenizer.json directly: check it reproduces the processor's ids.
    expanded = prompt.replace("<|image_pad|>", "<|image_pad|>" * n_img)
    for add_special in (False, True):
        raw_ids = raw_tok.encode(expanded, add_special_tokens=add_special).ids
        assert raw_ids == input_ids[0].tolist(), ("tokenizer.json mismatch", raw_ids, input_ids[0].tolist())

    # Independent image-processor recomputation.
    u8, norm, (H, W) = preprocess_image(image)
    patches, gh, gw = patchify(norm)
    assert grid[0].tolist() == [1, gh, gw], (grid, gh, gw)
    pv = inputs["pixel_values"]
    assert list(pv.shape) == [gh * gw, 3 * VISION["temporal_patch_size"] * VISION["patch_size"] ** 2]
    pv_diff = float(np.abs(pv.numpy() - patches).max())
    assert pv_diff == 0.0, f"recomputed pixel_values differ from the processor's: {pv_diff}"

    # rope index (3 x L) and the positions the decoder actually used (hook on the rotary embedding).
    position_ids, rope_deltas = model.model.get_rope_index(
        input_ids, inputs["mm_token_type_ids"], image_grid_thw=grid, attention_mask=inputs["attention_mask"])
    seen_pos = []
    hook = model.model.language_model.rotary_emb.register_forward_pre_hook(
        lambda m, args: seen_pos.append(args[1].detach().clone()))
    out = model(**inputs, output_attentions=True, output_hidden_states=True, use_cache=False, return_dict=True)
    assert len(seen_pos) == 1 and torch.equal(seen_pos[0], position_ids), "forward used other position ids"
    logits = out.logits[0]  # [L, V]
    attn = torch.stack([a[0] for a in out.attentions])  # [layers, heads, L, L]
    hidden = torch.stack([h[0] for h in out.hidden_states])  # [layers+1, L, D]
    NL = cfg.text_config.num_hidden_layers
    assert attn.shape[0] == NL and hidden.shape[0] == NL + 1, (attn.shape, hidden.shape)
    # hidden_states[NL] is AFTER the final norm (logits = lm_head(hidden[NL])); [1..NL-1] are raw layer outputs.
    assert (model.lm_head(hidden[NL]) - logits).abs().max().item() < 1e-5

    seen_pos.clear()
    model.model.rope_deltas = None
    gen = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, return_dict_in_generate=True,
                         output_attentions=True, output_logits=True, pad_token_id=processor.tokenizer.pad_token_id)
    hook.remove()
    gen_ids = gen.sequences[0, L:]
    T = int(gen_ids.numel())
    total = L + T - 1
    gen_attn = torch.zeros(T, NL, attn.shape[1], total)
    for k in range(T):
        for li, a in enumerate(gen.attentions[k]):
            row = t32(a[0, :, -1, :])
            assert row.shape[-1] == L + k, (row.shape, L + k)
            gen_attn[k, li, :, : L + k] = row
    gen_logits = torch.stack([t32(x[0]) for x in gen.logits])  # [T, V]
    # positions used by each decode step: step 0 = the prompt (its last column), step k = the new token.
    assert len(seen_pos) == T, len(seen_pos)
    assert torch.equal(seen_pos[0][:, 0, :], position_ids[:, 0, :])
    gen_pos = torch.stack([p[:, 0, -1] for p in seen_pos])  # [T, 3]
    for k in range(1, T):
        want = L - 1 + k + int(rope_deltas[0, 0])
        assert gen_pos[k].tolist() == [want] * 3, (k, gen_pos[k], want)

    d_logits = (gen_logits[0] - logits[-1]).abs().max().item()
    d_attn = (gen_attn[0, :, :, :L] - attn[:, :, -1, :]).abs().max().item()
    assert d_logits < 1e-4 and d_attn < 1e-5, (d_logits, d_attn)
    assert int(gen_ids[0]) == int(logits[-1].argmax()), "greedy token != argmax(last logits)"
    n_tok = raw_tok.get_vocab_size()
    assert int(gen_ids.max()) < n_tok, "generated an id with no token (padded vocab row)"

    text_hf = processor.tokenizer.decode(gen_ids, skip_special_tokens=True)
    text_raw = raw_tok.decode(gen_ids.tolist(), skip_special_tokens=True)
    assert text_hf == text_raw, (text_hf, text_raw)

    vis, n_patches = vision_tensors(model, inputs["pixel_values"], grid)
    # the merger output is exactly what was spliced into the text embeddings
    d_splice = (hidden[0][img_pos] - vis["vision.merger_output"]).abs().max().item()
    assert d_splice == 0.0, d_splice

    tensors = {
        "input_ids": i64(input_ids[0]),
        "attention_mask": i64(inputs["attention_mask"][0]),
        "mm_token_type_ids": i64(inputs["mm_token_type_ids"][0]),
        "image_token_positions": i64(img_pos),
        "pixel_values": t32(pv),
        "image_grid_thw": i64(grid),
        "pixel_image": torch.from_numpy(norm.copy()),
        "pixel_image_u8": torch.from_numpy(u8.copy()),
        "position_ids": i64(position_ids[:, 0, :]),
        "rope_deltas": i64(rope_deltas.reshape(-1)),
        "prompt_logits": t32(logits),
        "prompt_last_logits": t32(logits[-1]),
        "prompt_last_attn": t32(attn[:, :, -1, :]),
        "prompt_last_attn_image": t32(attn[:, :, -1, :][:, :, img_pos]),
        "prompt_hidden_states": t32(hidden),
        "generated_ids": i64(gen_ids),
        "gen_position_ids": i64(gen_pos),
        "gen_logits": gen_logits.contiguous(),
        "gen_attn": gen_attn.contiguous(),
        "gen_attn_image": gen_attn[:, :, :, img_pos].contiguous(),
    }
    if full_attn:
        tensors["prompt_attn_full"] = t32(attn)
    tensors.update(vis)

    tok = processor.tokenizer
    sid = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    yes_no = {w: raw_tok.encode(w, add_special_tokens=False).ids[0] for w in MUST_BE_SINGLE_TOKENS}
    top = torch.topk(logits[-1], 5)
    top2 = torch.topk(gen_logits, 2, dim=-1).values
    margins = (top2[:, 0] - top2[:, 1]).tolist()
    vc = cfg.vision_config
    nw = vc.window_size // vc.spatial_merge_size // vc.patch_size
    manifest = {
        "model": "qwen2_5_vl",
        "question": question,
        "system_prompt": SYSTEM_PROMPT if system else None,
        "effective_system_prompt": sys_text,
        "prompt_text": prompt,
        "expanded_prompt_text": expanded,
        "tokenizer_add_special_tokens": False,
        "seq_len": L,
        "input_ids": input_ids[0].tolist(),
        "input_tokens": [raw_tok.id_to_token(i) for i in input_ids[0].tolist()],
        "image_size_wh": list(image.size),
        "image_mode": image.mode,
        "resized_hw": [H, W],
        "image_grid_thw": grid[0].tolist(),
        "merged_grid_hw": [gh // merge, gw // merge],
        "n_patches": n_patches,
        "n_image_tokens": n_img,
        "image_token_id": int(cfg.image_token_id),
        "image_token_positions": img_pos.tolist(),
        "image_token_range": [int(img_pos[0]), int(img_pos[-1]) + 1],
        "min_pixels": MIN_PIXELS,
        "max_pixels": MAX_PIXELS,
        "resample": "PIL.Image.BICUBIC on uint8 RGB",
        "windows_hw": [math.ceil((gh // merge) / nw), math.ceil((gw // merge) / nw)],
        "n_windows": int(vis["vision.cu_window_seqlens"].numel()) - 1,
        "window_merged_units": nw,
        "special_token_ids": sid,
        "yes_no_token_ids": yes_no,
        "rope_deltas": int(rope_deltas[0, 0]),
        "position_ids_image_block": {
            "t": sorted(set(position_ids[0, 0, img_pos].tolist())),
            "h_range": [int(position_ids[1, 0, img_pos].min()), int(position_ids[1, 0, img_pos].max())],
            "w_range": [int(position_ids[2, 0, img_pos].min()), int(position_ids[2, 0, img_pos].max())],
            "first_text_after_image": int(position_ids[0, 0, int(img_pos[-1]) + 1]),
        },
        "last_logits_top5": {"ids": top.indices.tolist(), "values": [float(x) for x in top.values]},
        "last_logits_yes_no": {w: float(logits[-1, i]) for w, i in yes_no.items()},
        "generated_ids": gen_ids.tolist(),
        "generated_tokens": [raw_tok.id_to_token(i) for i in gen_ids.tolist()],
        "generated_text": text_hf,
        "generated_text_with_special": tok.decode(gen_ids, skip_special_tokens=False),
        "gen_top1_top2_margin": margins,
        "gen_query_positions": [L - 1 + k for k in range(T)],
        "gen_kv_lengths": [L + k for k in range(T)],
        "gen_position_ids": gen_pos.tolist(),
        "self_check": {"gen_prefill_vs_forward_logits_maxabs": d_logits,
                       "gen_prefill_vs_forward_attn_maxabs": d_attn,
                       "recomputed_pixel_values_maxabs": pv_diff,
                       "merger_output_vs_spliced_embeddings_maxabs": d_splice},
        "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                    for k, v in sorted(tensors.items())},
    }
    return tensors, manifest


def versions():
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "safetensors": safetensors.__version__,
            "numpy": np.__version__, "pillow": PIL.__version__}


def dir_size(path):
    tot = 0
    for root, _, files in os.walk(path):
        for f in files:
            tot += os.path.getsize(os.path.join(root, f))
    return tot


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=5)
    ap.add_argument("--full-attn", choices=["first", "all", "none"], default="first",
                    help="which cases also store the full [layers, heads, L, L] prompt attention")
    args = ap.parse_args(argv)

    t0 = time.time()
    torch.set_grad_enabled(False)
    torch.use_deterministic_algorithms(True)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    log("versions:", versions())
    if os.path.exists(os.path.join(out, "images")):
        shutil.rmtree(os.path.join(out, "images"))
    img_paths = make_images(os.path.join(out, "images"))
    images = {k: Image.open(p) for k, p in img_paths.items()}
    for im in images.values():
        im.load()

    mdir = os.path.join(out, MODEL_DIR)
    log(f"== building qwen2.5-vl tiny -> {mdir}")
    info = build_model_dir(mdir, args.seed)
    # Reload from disk: the reference comes from exactly the files the Rust side will read.
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(mdir, attn_implementation="eager",
                                                               dtype=torch.float32).eval()
    built = info.pop("model").state_dict()
    loaded = model.state_dict()
    assert sorted(built) == sorted(loaded), set(built) ^ set(loaded)
    for k in built:
        assert torch.equal(built[k], loaded[k]), f"reloaded weight differs: {k}"
    del built
    assert model.config.text_config.vocab_size == info["vocab_size"]
    assert model.config.text_config.rope_parameters["mrope_section"] == TEXT["mrope_section"]
    assert model.config.vision_config.fullatt_block_indexes == VISION["fullatt_block_indexes"]
    assert model.config._attn_implementation == "eager"
    processor = AutoProcessor.from_pretrained(mdir)
    assert isinstance(processor, Qwen2_5_VLProcessor), type(processor)
    ip = processor.image_processor
    assert (ip.size["shortest_edge"], ip.size["longest_edge"]) == (MIN_PIXELS, MAX_PIXELS), ip.size
    assert ip.resample == PILImageResampling.BICUBIC
    raw_tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
    log(f"   processor: {type(processor).__name__} image_processor: {type(ip).__name__} "
        f"tokenizer: {type(processor.tokenizer).__name__} tokens={info['tokenizer_size']} vocab={info['vocab_size']}")
    n_params = sum(p.numel() for p in model.parameters())

    index = {"seed": args.seed, "versions": versions(), "dtype": "float32", "attn_implementation": "eager",
             "max_new_tokens": args.max_new_tokens,
             "images": {k: os.path.relpath(p, out) for k, p in img_paths.items()}, "models": {}}
    ref_root = os.path.join(out, "reference")
    mref = os.path.join(ref_root, MODEL_DIR)
    if os.path.exists(mref):
        shutil.rmtree(mref)
    os.makedirs(mref)
    cases = []
    for ci, (cname, img_key, qi, system) in enumerate(CASES):
        tensors, manifest = run_case(model, processor, raw_tok, images[img_key], QUESTIONS[qi], system,
                                     args.max_new_tokens,
                                     full_attn=(args.full_attn == "all" or (args.full_attn == "first" and ci == 0)))
        manifest.update({"case": cname, "image": index["images"][img_key], "seed": args.seed,
                         "versions": versions(), "model_dir": MODEL_DIR})
        cdir = os.path.join(mref, cname)
        os.makedirs(cdir)
        save_file(tensors, os.path.join(cdir, "tensors.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(cdir, "manifest.json"), "w") as fh:
            json.dump(manifest, fh, indent=1)
        log(f"   {cname}: L={manifest['seq_len']} grid={manifest['image_grid_thw']} "
            f"img_tokens={manifest['n_image_tokens']} windows={manifest['n_windows']} "
            f"rope_delta={manifest['rope_deltas']} gen={manifest['generated_ids']} text={manifest['generated_text']!r} "
            f"min_margin={min(manifest['gen_top1_top2_margin']):.4f}")
        cases.append({"case": cname, "image": index["images"][img_key], "question": QUESTIONS[qi],
                      "system_prompt": manifest["system_prompt"], "seq_len": manifest["seq_len"],
                      "image_grid_thw": manifest["image_grid_thw"], "n_image_tokens": manifest["n_image_tokens"]})
    cfg = model.config
    index["models"][MODEL_DIR] = {
        "kind": "qwen2_5_vl", "class": type(model).__name__, "n_params": n_params, "cases": [c["case"] for c in cases],
        "case_info": cases,
        "special_token_ids": info["special_token_ids"], "tokenizer_size": info["tokenizer_size"],
        "vocab_size": info["vocab_size"],
        "yes_no_token_ids": {w: raw_tok.encode(w, add_special_tokens=False).ids[0] for w in MUST_BE_SINGLE_TOKENS},
        "processor": type(processor).__name__, "image_processor": type(ip).__name__,
        "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS,
        "text": {"layers": cfg.text_config.num_hidden_layers, "hidden": cfg.text_config.hidden_size,
                 "heads": cfg.text_config.num_attention_heads, "kv_heads": cfg.text_config.num_key_value_heads,
                 "head_dim": cfg.text_config.hidden_size // cfg.text_config.num_attention_heads,
                 "mrope_section": TEXT["mrope_section"], "rope_theta": TEXT["rope_theta"]},
        "vision": dict(VISION, out_hidden_size=cfg.vision_config.out_hidden_size),
        "tensor_name_layout": "hub (model.embed_tokens/model.layers.*/model.norm, visual.*, lm_head)",
        "n_tensors": info["n_tensors"],
    }
    with open(os.path.join(ref_root, "index.json"), "w") as fh:
        json.dump(index, fh, indent=1)
    log(f"total size of {out}: {dir_size(out) / 1e6:.2f} MB in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
