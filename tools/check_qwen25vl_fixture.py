#!/usr/bin/env python3
"""Independent check of the Qwen2.5-VL parity fixture written by make_qwen25vl_fixture.py.

It does NOT import transformers. From the PNG images, config.json, processor_config.json, chat_template.jinja,
tokenizer.json and model.safetensors it recomputes, with PIL + numpy + plain torch ops (float32, CPU):
  1. the prompt (chat template rendered with jinja2) and the token ids (tokenizers library)
  2. the image processor: smart_resize -> PIL bicubic resize -> rescale -> normalise -> patchify
     -> pixel_image_u8, pixel_image, pixel_values, image_grid_thw                         (exact)
  3. the vision bookkeeping: rotary position ids, cos/sin, window_index, cu_window_seqlens, cu_seqlens
  4. the 3-D M-RoPE position ids (get_rope_index), rope_deltas and the decode positions    (exact)
  5. (the model, plain torch) vision tower with window attention + patch merger, the decoder with
     M-RoPE and GQA, greedy decode with a KV cache -> every float tensor of every case
and compares with the stored tensors. This is the executable spec for the Rust port.

Usage:  python check_qwen25vl_fixture.py FIXTURE_DIR [--no-model]     (exit code 1 on any mismatch)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as Fn
from PIL import Image
from safetensors.torch import load_file

MODEL_DIR = "qwen25vl-tiny"
TOL = {"logits": 1e-4, "attn": 1e-5, "hidden": 1e-4, "vision": 1e-4, "pixel": 0.0}
torch.set_grad_enabled(False)

FAILURES: list[str] = []
N_CHECKS = [0]
VERBOSE = [False]
WORST: dict[str, float] = {}


def check(name, ok, detail=""):
    N_CHECKS[0] += 1
    if not ok:
        FAILURES.append(f"{name}: {detail}")
        print(f"  FAIL {name}: {detail}")


def close(name, got, want, tol):
    got = torch.as_tensor(got).to(torch.float32)
    want = torch.as_tensor(want).to(torch.float32)
    if tuple(got.shape) != tuple(want.shape):
        check(name, False, f"shape {tuple(got.shape)} != {tuple(want.shape)}")
        return float("inf")
    d = (got - want).abs().max().item() if got.numel() else 0.0
    check(name, d <= tol, f"max abs diff {d:.3g} > {tol}")
    key = name.split(" ", 1)[1]
    WORST[key] = max(WORST.get(key, 0.0), d)
    if VERBOSE[0]:
        print(f"  {name}: max abs diff {d:.3g} (tol {tol})")
    return d


def same(name, got, want):
    got = torch.as_tensor(np.asarray(got)).to(torch.int64)
    want = torch.as_tensor(want).to(torch.int64)
    ok = tuple(got.shape) == tuple(want.shape) and torch.equal(got, want)
    check(name, ok, f"{got.flatten()[:12].tolist()}... != {want.flatten()[:12].tolist()}... "
                    f"(shapes {tuple(got.shape)} {tuple(want.shape)})")


# ============================================================================ 1. prompt + tokens
def render_prompt(template_src, question, system):
    import jinja2
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    messages = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]})
    return env.from_string(template_src).render(messages=messages, add_generation_prompt=True)


# ============================================================================ 2. image processor
def smart_resize(height, width, factor, min_pixels, max_pixels):
    """Both sides a multiple of `factor` (= patch 14 * merge 2 = 28), area within [min, max], aspect kept.
    NB: Python's round() is round-half-to-even."""
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


def preprocess(img, ip):
    """PIL backend of Qwen2VLImageProcessor: RGB -> PIL resize (uint8, BICUBIC) -> x*(1/255) in float64 then
    float32 -> (x - mean) / std in float32 -> patchify."""
    rgb = img.convert("RGB")
    W0, H0 = rgb.size
    p, m, T = ip["patch_size"], ip["merge_size"], ip["temporal_patch_size"]
    H, W = smart_resize(H0, W0, p * m, ip["size"]["shortest_edge"], ip["size"]["longest_edge"])
    u8 = np.array(rgb.resize((W, H), resample=int(ip["resample"]))).transpose(2, 0, 1)  # [3, H, W]
    x = (u8.astype(np.float64) * ip["rescale_factor"]).astype(np.float32)
    mean = np.array(ip["image_mean"], dtype=np.float32)[:, None, None]
    std = np.array(ip["image_std"], dtype=np.float32)[:, None, None]
    x = ((x - mean) / std).astype(np.float32)
    C = 3
    gh, gw = H // p, W // p
    # rows: merge blocks in raster order, and inside a block its m*m patches in raster order
    # columns: (channel, temporal, py, px); the single image frame is repeated temporal_patch_size times
    y = x.reshape(C, gh // m, m, p, gw // m, m, p).transpose(1, 4, 2, 5, 0, 3, 6)  # bh bw mh mw C py px
    y = np.repeat(y[:, :, :, :, :, None], T, axis=5)  # bh bw mh mw C T py px
    pv = y.reshape(gh * gw, C * T * p * p)
    return u8, x, pv, [1, gh, gw]


# ============================================================================ 3. vision bookkeeping
def vision_pos_ids(gh, gw, m):
    """(h, w) patch coordinates, in the processor's patch order (merge-block major)."""
    hh, ww = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    blk = lambda a: a.reshape(gh // m, m, gw // m, m).transpose(0, 2, 1, 3).reshape(-1)
    return np.stack([blk(hh), blk(ww)], axis=-1)  # [N, 2]


def window_index(gh, gw, m, window_size, patch):
    """Merged tokens (llm grid gh/m x gw/m) are grouped in windows of ws x ws merged tokens
    (ws = window_size / m / patch); windows in raster order, tokens inside a window in raster order. Windows at the
    right/bottom border are partial. cu_window_seqlens counts PATCHES (x m*m). NB: HF always pads by
    ws - (n % ws), i.e. a whole empty window when n % ws == 0; empty windows add repeated cu entries, which HF
    removes (unique_consecutive). Iterating over the real windows as here gives the same result."""
    ws = window_size // m // patch
    lh, lw = gh // m, gw // m
    idx, cu = [], [0]
    for wy in range(0, lh, ws):
        for wx in range(0, lw, ws):
            cnt = 0
            for y in range(wy, min(wy + ws, lh)):
                for x in range(wx, min(wx + ws, lw)):
                    idx.append(y * lw + x)
                    cnt += 1
            cu.append(cu[-1] + cnt * m * m)
    return np.array(idx), np.array(cu)


def vision_rope(pos, head_dim, theta):
    """2-D rope: inv_freq over head_dim/2 (= 8 here -> 4 freqs); angle = [h*inv, w*inv] (head_dim/2), then
    duplicated [a, a] for rotate_half."""
    spatial = head_dim // 2
    inv = 1.0 / (theta ** (torch.arange(0, spatial, 2, dtype=torch.float32) / spatial))
    pos = torch.as_tensor(pos)
    fh = pos[:, 0, None].float() * inv
    fw = pos[:, 1, None].float() * inv
    hw = torch.cat([fh, fw], -1)
    emb = torch.cat([hw, hw], -1)
    return emb.cos(), emb.sin()


# ============================================================================ 4. M-RoPE positions
def rope_index(input_ids, image_token_id, grid, m):
    """Text tokens: t = h = w = running position. The image block (the run of <|image_pad|>) at start s:
    t = s, h = s + row, w = s + col over the merged grid (raster order). The text after it restarts at
    s + max(rows, cols). rope_delta = max(position) + 1 - L (decode position = cache_len + delta)."""
    ids = list(input_ids)
    L = len(ids)
    pos = np.zeros((3, L), dtype=np.int64)
    cur, i = 0, 0
    _, gh, gw = grid
    lh, lw = gh // m, gw // m
    while i < L:
        if ids[i] == image_token_id:
            n = lh * lw
            assert all(t == image_token_id for t in ids[i:i + n])
            r, c = np.meshgrid(np.arange(lh), np.arange(lw), indexing="ij")
            pos[0, i:i + n] = cur
            pos[1, i:i + n] = cur + r.reshape(-1)
            pos[2, i:i + n] = cur + c.reshape(-1)
            cur += max(lh, lw)
            i += n
        else:
            pos[:, i] = cur
            cur += 1
            i += 1
    return pos, int(pos.max()) + 1 - L


# ============================================================================ 5. the model (plain torch)
def rms(x, w, eps):
    x32 = x.float()
    return w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    d = x.shape[-1] // 2
    return torch.cat([-x[..., d:], x[..., :d]], -1)


def lin(W, pre, x, bias=True):
    y = x @ W[pre + ".weight"].T
    return y + W[pre + ".bias"] if bias else y


def vision_forward(W, vc, pixel_values, grid):
    _, gh, gw = grid
    m = vc["spatial_merge_size"]
    D, nh = vc["hidden_size"], vc["num_heads"]
    hd = D // nh
    out = {}
    # Conv3d with stride == kernel == one matmul with the flattened kernel (C, T, py, px order = patch order)
    x = pixel_values @ W["visual.patch_embed.proj.weight"].reshape(D, -1).T
    out["vision.patch_embed"] = x
    pos = vision_pos_ids(gh, gw, m)
    cos, sin = vision_rope(pos, hd, vc.get("rope_parameters", {}).get("rope_theta", 10000.0))
    out["vision.rotary_pos_ids"], out["vision.rotary_cos"], out["vision.rotary_sin"] = pos, cos, sin
    widx, cu_w = window_index(gh, gw, m, vc["window_size"], vc["patch_size"])
    N = x.shape[0]
    cu_full = np.array([0, N])
    perm = torch.as_tensor((widx[:, None] * m * m + np.arange(m * m)[None, :]).reshape(-1))
    out["vision.window_index"], out["vision.cu_window_seqlens"], out["vision.cu_seqlens"] = widx, cu_w, cu_full
    out["vision.patch_permutation"] = perm
    x, cos, sin = x[perm], cos[perm], sin[perm]  # everything below runs in window order
    hs = [x]
    for i in range(vc["depth"]):
        pre = f"visual.blocks.{i}"
        cu = cu_full if i in vc["fullatt_block_indexes"] else cu_w
        h = rms(x, W[pre + ".norm1.weight"], 1e-6)
        qkv = lin(W, pre + ".attn.qkv", h).reshape(N, 3, nh, hd)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # [N, nh, hd]
        q = q * cos[:, None] + rotate_half(q) * sin[:, None]
        k = k * cos[:, None] + rotate_half(k) * sin[:, None]
        o = torch.empty_like(q)
        for s, e in zip(cu[:-1], cu[1:]):  # attention only inside each window (or the whole image)
            qs, ks, vs = (t[s:e].transpose(0, 1) for t in (q, k, v))
            a = torch.softmax((qs @ ks.transpose(-1, -2)) * hd ** -0.5, dim=-1)
            o[s:e] = (a @ vs).transpose(0, 1)
        x = x + lin(W, pre + ".attn.proj", o.reshape(N, D))
        h = rms(x, W[pre + ".norm2.weight"], 1e-6)
        x = x + lin(W, pre + ".mlp.down_proj", Fn.silu(lin(W, pre + ".mlp.gate_proj", h)) * lin(W, pre + ".mlp.up_proj", h))
        hs.append(x)
    out["vision.hidden_states"] = torch.stack(hs)
    h = rms(x, W["visual.merger.ln_q.weight"], 1e-6).reshape(N // (m * m), D * m * m)  # 4 consecutive patches
    h = lin(W, "visual.merger.mlp.2", Fn.gelu(lin(W, "visual.merger.mlp.0", h)))   # exact (erf) GELU
    out["vision.merger_output_window_order"] = h
    out["vision.merger_output"] = h[torch.as_tensor(np.argsort(widx))]  # back to raster order of merged tokens
    return out


class Decoder:
    def __init__(self, W, tc):
        self.W, self.tc = W, tc
        self.D, self.H, self.KV = tc["hidden_size"], tc["num_attention_heads"], tc["num_key_value_heads"]
        self.hd = self.D // self.H
        rp = tc.get("rope_parameters") or {}
        self.theta = rp.get("rope_theta", tc.get("rope_theta"))
        self.section = rp.get("mrope_section") or tc["rope_scaling"]["mrope_section"]
        assert sum(self.section) == self.hd // 2
        self.inv = 1.0 / (self.theta ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        self.eps = tc["rms_norm_eps"]

    def rope(self, pos):  # pos [3, T] -> cos, sin [T, hd]
        f = torch.as_tensor(pos)[..., None].float() * self.inv  # [3, T, hd/2]
        chunks = f.split(self.section, dim=-1)  # frequency chunk j takes its angle from axis j % 3 (t, h, w)
        f = torch.cat([c[j % 3] for j, c in enumerate(chunks)], -1)
        emb = torch.cat([f, f], -1)
        return emb.cos(), emb.sin()

    def forward(self, x, pos, cache):
        """x [T, D] new embeddings; pos [3, T]; cache list of (k, v) per layer (appended). -> hs, logits, attn"""
        W, T = self.W, x.shape[0]
        cos, sin = self.rope(pos)
        past = cache[0][0].shape[1] if cache[0] is not None else 0
        S = past + T
        mask = torch.ones(T, S, dtype=torch.bool).tril(diagonal=past)  # causal
        hs, attns = [x], []
        for i in range(self.tc["num_hidden_layers"]):
            pre = f"model.layers.{i}"
            h = rms(x, W[pre + ".input_layernorm.weight"], self.eps)
            q = lin(W, pre + ".self_attn.q_proj", h).reshape(T, self.H, self.hd).transpose(0, 1)
            k = lin(W, pre + ".self_attn.k_proj", h).reshape(T, self.KV, self.hd).transpose(0, 1)
            v = lin(W, pre + ".self_attn.v_proj", h).reshape(T, self.KV, self.hd).transpose(0, 1)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if cache[i] is not None:
                k = torch.cat([cache[i][0], k], 1)
                v = torch.cat([cache[i][1], v], 1)
            cache[i] = (k, v)
            rep = self.H // self.KV  # GQA: query head h uses kv head h // rep
            kk, vv = k.repeat_interleave(rep, 0), v.repeat_interleave(rep, 0)
            s = (q @ kk.transpose(-1, -2)) * self.hd ** -0.5
            a = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
            attns.append(a)
            o = (a @ vv).transpose(0, 1).reshape(T, self.D)
            x = x + lin(W, pre + ".self_attn.o_proj", o, bias=False)
            h = rms(x, W[pre + ".post_attention_layernorm.weight"], self.eps)
            g = lin(W, pre + ".mlp.gate_proj", h, bias=False)
            x = x + lin(W, pre + ".mlp.down_proj", Fn.silu(g) * lin(W, pre + ".mlp.up_proj", h, bias=False), bias=False)
            hs.append(x)
        x = rms(x, W["model.norm.weight"], self.eps)
        hs[-1] = x  # hidden_states[NL] is after the final norm (HF convention)
        return torch.stack(hs), x @ W["lm_head.weight"].T, torch.stack(attns)


# ============================================================================ driver
def check_case(root, cdir, cfg, ip, template, tok, W, with_model, gen_cfg):
    man = json.load(open(os.path.join(cdir, "manifest.json")))
    ref = load_file(os.path.join(cdir, "tensors.safetensors"))
    name = os.path.basename(cdir)
    vc = cfg["vision_config"]
    tc = cfg["text_config"]
    m = vc["spatial_merge_size"]
    # manifest <-> tensors
    for k, v in man["tensors"].items():
        check(f"{name} manifest shape {k}", k in ref and list(ref[k].shape) == v["shape"], str(v))
    # 1. prompt and tokens
    prompt = render_prompt(template, man["question"], man["system_prompt"])
    check(f"{name} chat template", prompt == man["prompt_text"], repr(prompt))
    grid = ref["image_grid_thw"][0].tolist()
    n_img = grid[0] * grid[1] * grid[2] // (m * m)
    expanded = prompt.replace("<|image_pad|>", "<|image_pad|>" * n_img)
    check(f"{name} expanded prompt", expanded == man["expanded_prompt_text"])
    same(f"{name} input_ids (tokenizer.json)", tok.encode(expanded, add_special_tokens=False).ids, ref["input_ids"])
    same(f"{name} attention_mask", np.ones(len(ref["input_ids"])), ref["attention_mask"])
    same(f"{name} mm_token_type_ids", (ref["input_ids"] == cfg["image_token_id"]).long(), ref["mm_token_type_ids"])
    img_pos = (ref["input_ids"] == cfg["image_token_id"]).nonzero().flatten()
    same(f"{name} image_token_positions", img_pos, ref["image_token_positions"])
    # 2. image processor
    img = Image.open(os.path.join(root, man["image"]))
    u8, x, pv, g = preprocess(img, ip)
    same(f"{name} image_grid_thw", [g], ref["image_grid_thw"])
    same(f"{name} pixel_image_u8", u8, ref["pixel_image_u8"])
    close(f"{name} pixel_image", torch.from_numpy(x), ref["pixel_image"], TOL["pixel"])
    close(f"{name} pixel_values", torch.from_numpy(pv), ref["pixel_values"], TOL["pixel"])
    # 3. vision bookkeeping
    _, gh, gw = g
    pos = vision_pos_ids(gh, gw, m)
    same(f"{name} vision.rotary_pos_ids", pos, ref["vision.rotary_pos_ids"])
    widx, cu_w = window_index(gh, gw, m, vc["window_size"], vc["patch_size"])
    same(f"{name} vision.window_index", widx, ref["vision.window_index"])
    same(f"{name} vision.cu_window_seqlens", cu_w, ref["vision.cu_window_seqlens"])
    same(f"{name} vision.cu_seqlens", [0, gh * gw], ref["vision.cu_seqlens"])
    cos, sin = vision_rope(pos, vc["hidden_size"] // vc["num_heads"], vc["rope_parameters"]["rope_theta"])
    close(f"{name} vision.rotary_cos", cos, ref["vision.rotary_cos"], 1e-6)
    close(f"{name} vision.rotary_sin", sin, ref["vision.rotary_sin"], 1e-6)
    # 4. M-RoPE positions
    P, delta = rope_index(ref["input_ids"].tolist(), cfg["image_token_id"], g, m)
    same(f"{name} position_ids", P, ref["position_ids"])
    same(f"{name} rope_deltas", [delta], ref["rope_deltas"])
    L = len(ref["input_ids"])
    T = len(ref["generated_ids"])
    want_gen_pos = [[int(P[a, -1]) for a in range(3)]] + [[L - 1 + k + delta] * 3 for k in range(1, T)]
    same(f"{name} gen_position_ids", want_gen_pos, ref["gen_position_ids"])
    if not with_model:
        return
    # 5. model
    vis = vision_forward(W, vc, ref["pixel_values"], g)
    for k, v in vis.items():
        if v.dtype in (np.int64,) or (isinstance(v, torch.Tensor) and v.dtype == torch.int64) or isinstance(v, np.ndarray):
            same(f"{name} {k} (model path)", v, ref[k])
        else:
            close(f"{name} {k}", v, ref[k], TOL["vision"])
    dec = Decoder(W, tc)
    emb = W["model.embed_tokens.weight"][ref["input_ids"]].clone()
    emb[img_pos] = vis["vision.merger_output"]  # image features replace the <|image_pad|> embeddings
    cache = [None] * tc["num_hidden_layers"]
    hs, logits, attn = dec.forward(emb, P, cache)
    close(f"{name} prompt_hidden_states", hs, ref["prompt_hidden_states"], TOL["hidden"])
    close(f"{name} prompt_logits", logits, ref["prompt_logits"], TOL["logits"])
    close(f"{name} prompt_last_logits", logits[-1], ref["prompt_last_logits"], TOL["logits"])
    close(f"{name} prompt_last_attn", attn[:, :, -1], ref["prompt_last_attn"], TOL["attn"])
    close(f"{name} prompt_last_attn_image", attn[:, :, -1][:, :, img_pos], ref["prompt_last_attn_image"], TOL["attn"])
    if "prompt_attn_full" in ref:
        close(f"{name} prompt_attn_full", attn, ref["prompt_attn_full"], TOL["attn"])
    # greedy decode with the KV cache; stop at generation_config's eos ids or max_new_tokens
    eos = gen_cfg["eos_token_id"] if isinstance(gen_cfg["eos_token_id"], list) else [gen_cfg["eos_token_id"]]
    NL, H = attn.shape[0], attn.shape[1]
    ids, step_logits = [], [logits[-1]]
    gen_attn = torch.zeros(T, NL, H, L + T - 1)
    gen_attn[0, :, :, :L] = attn[:, :, -1]
    while True:
        nxt = int(step_logits[-1].argmax())
        ids.append(nxt)
        if nxt in eos or len(ids) >= gen_cfg.get("max_new_tokens", 5):
            break
        k = len(ids)
        p = np.full((3, 1), L - 1 + k + delta)
        _, lg, at = dec.forward(W["model.embed_tokens.weight"][[nxt]], p, cache)
        step_logits.append(lg[-1])
        if k < T:
            gen_attn[k, :, :, :L + k] = at[:, :, -1]
    same(f"{name} generated_ids", ids, ref["generated_ids"])
    if len(ids) == T:
        close(f"{name} gen_logits", torch.stack(step_logits), ref["gen_logits"], TOL["logits"])
        close(f"{name} gen_attn", gen_attn, ref["gen_attn"], TOL["attn"])
        close(f"{name} gen_attn_image", gen_attn[:, :, :, img_pos], ref["gen_attn_image"], TOL["attn"])
    text = tok.decode(ids, skip_special_tokens=True)
    check(f"{name} generated_text", text == man["generated_text"], repr(text))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fixture_dir")
    ap.add_argument("--no-model", action="store_true", help="only preprocessing / tokens / index checks")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every float comparison")
    args = ap.parse_args(argv)
    VERBOSE[0] = args.verbose
    root = os.path.abspath(args.fixture_dir)
    mdir = os.path.join(root, MODEL_DIR)
    cfg = json.load(open(os.path.join(mdir, "config.json")))
    ip = json.load(open(os.path.join(mdir, "processor_config.json")))["image_processor"]
    gen_cfg = json.load(open(os.path.join(mdir, "generation_config.json")))
    template = open(os.path.join(mdir, "chat_template.jinja")).read()
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
    W = None if args.no_model else load_file(os.path.join(mdir, "model.safetensors"))
    # config consistency: the hub (flat) fields and 5.x's text_config agree; special ids match tokenizer.json
    tc = cfg["text_config"]
    for k in ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads"]:
        check(f"config {k} flat == text_config", cfg[k] == tc[k], f"{cfg[k]} vs {tc[k]}")
    check("config mrope_section", cfg["rope_scaling"]["mrope_section"] == tc["rope_parameters"]["mrope_section"])
    for key, t in [("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
                   ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"),
                   ("eos_token_id", "<|im_end|>"), ("bos_token_id", "<|endoftext|>")]:
        check(f"config {key}", cfg[key] == tok.token_to_id(t), f"{cfg[key]} vs {tok.token_to_id(t)}")
    for w in ["yes", "no", "Yes", "No"]:
        check(f"single token {w!r}", len(tok.encode(w, add_special_tokens=False).ids) == 1)
    index = json.load(open(os.path.join(root, "reference", "index.json")))
    for case in index["models"][MODEL_DIR]["cases"]:
        n0, f0 = N_CHECKS[0], len(FAILURES)
        check_case(root, os.path.join(root, "reference", MODEL_DIR, case), cfg, ip, template, tok, W,
                   not args.no_model, gen_cfg)
        print(f"{case}: {N_CHECKS[0] - n0} checks, {len(FAILURES) - f0} failed")
    print("worst max-abs diff per float tensor over all cases:")
    for k in sorted(WORST):
        print(f"  {k:40s} {WORST[k]:.3g}")
    print(f"{N_CHECKS[0]} checks, {len(FAILURES)} failed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
