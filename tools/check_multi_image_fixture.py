#!/usr/bin/env python3
"""Independent check of a multi-image fixture made by make_multi_image_fixture.py.

Uses no transformers model or processor class: only `tokenizers`, jinja2, PIL, numpy, torch and safetensors.

Checks, per case:
  1. prompt layout: the chat template in `<model>/chat_template.jinja`, rendered with jinja2, gives `prompt_text`;
     for MAIRA-2 the prompt is also rebuilt by hand from the section texts (image order current frontal, current
     lateral, prior frontal, each after its label); image placeholders are expanded as the processor does
     (Gemma3: `\\n\\n<start_of_image>` + 16 x `<image_soft_token>` + `<end_of_image>\\n\\n`; LLaVA/MAIRA-2: 25 x
     `<image>`), encoded with `tokenizer.json` and compared with `input_ids`; image-token positions per image are
     the contiguous runs, in prompt order, one per image, and every run starts right after its label's tokens.
  2. preprocessing: `pixel_values` recomputed from the PNGs with PIL + numpy (Gemma3: RGB, 64x64 bilinear,
     (x/255-0.5)/0.5; MAIRA-2: greyscale min-max stretch, RGB, shortest edge 70 bicubic, centre crop 70,
     (x/255-0.5307)/0.2583).
  3. Gemma3 attention mask: `prompt_attn_full` is exactly 0 outside (causal OR same-image block) [AND the sliding
     window on sliding layers] and > 0 inside; image blocks never see a later image.
  4. MAIRA-2 vision path in plain torch from model.safetensors: patch conv, CLS, bicubic position-embedding
     interpolation, DINOv2 blocks with LayerScale, final LayerNorm, CLS dropped, 4-layer GELU projector; and the
     projector output equals the stored vision.projector_output (per image).

Usage: python check_multi_image_fixture.py DIR      (exit 1 if any check fails)
"""
from __future__ import annotations

import json
import math
import os
import sys

import jinja2
import numpy as np
import torch
import torch.nn.functional as Fn
from PIL import Image
from safetensors.torch import load_file
from tokenizers import Tokenizer

FAIL = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg)
    if not ok:
        FAIL.append(msg)


def render(template_text, messages, bos, eos):
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(m):
        raise RuntimeError(m)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template_text).render(messages=messages, add_generation_prompt=True, bos_token=bos,
                                                 eos_token=eos)


def runs_of(pos):
    runs, s = [], pos[0]
    for a, b in zip(pos, pos[1:] + [None]):
        if b is None or b != a + 1:
            runs.append([s, a + 1])
            s = b
    return runs


# ------------------------------------------------------------------ preprocessing
def gemma_pixels(img, size):
    rgb = img.convert("RGB").resize((size, size), resample=Image.BILINEAR)
    x = (np.asarray(rgb).astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.float32(0.5)) / np.float32(0.5)
    return x.transpose(2, 0, 1)


def maira_pixels(img, size, mean, std):
    a = np.array(img.convert("L")).astype(float)
    a -= a.min()
    a /= a.max()
    a *= 255
    g = Image.fromarray(a.astype(np.uint8)).convert("L")
    rgb = g.convert("RGB")
    w, h = rgb.size
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    r = np.asarray(rgb.resize((nw, nh), resample=Image.BICUBIC))
    top, left = (nh - size) // 2, (nw - size) // 2
    r = r[top:top + size, left:left + size]
    x = (r.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    return x.transpose(2, 0, 1)


# ------------------------------------------------------------------ MAIRA-2 prompt, rebuilt by hand
def maira_prompt(m):
    roles = m["image_roles"]
    sysmsg = "You are an expert radiology assistant tasked with interpreting a chest X-ray study."
    na = lambda s: s if isinstance(s, str) and s else "N/A"  # noqa: E731
    if m["task"] == "phrase":
        user = ("Given the current frontal image<image> Repeat the following finding as a grounded phrase with "
                "bounding boxes indicating all locations where it can be seen in the given chest X-ray image. "
                f"Finding: {m['phrase']}")
        labels = ["Given the current frontal image"]
    else:
        lat, pri = "lateral" in roles, "prior" in roles
        if not lat and not pri:
            labels = ["Given the current frontal image only"]
        elif pri and lat:
            labels = ["Given the current frontal image", " the current lateral image", " and the prior frontal image"]
        elif pri:
            labels = ["Given the current frontal image", " and the prior frontal image"]
        else:
            labels = ["Given the current frontal image", " and the current lateral image"]
        user = "".join(l + "<image>" for l in labels)
        if pri:
            user += f" PRIOR_REPORT: {na(m['prior_report'])}"
        user += (" Provide a structured description of the impressions in the radiology study in comparison to the "
                 "prior frontal image.")
        if m["grounding"]:
            user += (" Each finding should be described as a self-contained plain-text sentence. If the finding is "
                     "groundable, locate the finding in the current frontal chest X-ray image, with bounding boxes "
                     "indicating all locations where it can be seen in the current frontal image. Otherwise, "
                     "generate just the ungrounded finding without bounding boxes.")
        user += (f" INDICATION: {na(m['indication'])} TECHNIQUE: {na(m['technique'])} "
                 f"COMPARISON: {na(m['comparison'])}")
    expected_order = {"frontal": 0, "lateral": 1, "prior": 2}
    return f"{sysmsg} USER: {user} ASSISTANT:", labels, [expected_order[r] for r in roles]


# ------------------------------------------------------------------ MAIRA-2 vision tower in plain torch
def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def maira_vision(W, cfg, pv):
    vc = cfg["vision_config"]
    p, D, H = vc["patch_size"], vc["hidden_size"], vc["num_attention_heads"]
    eps = vc["layer_norm_eps"]
    pre = "vision_tower."
    x = Fn.conv2d(pv, W[pre + "embeddings.patch_embeddings.projection.weight"],
                  W[pre + "embeddings.patch_embeddings.projection.bias"], stride=p)
    n, _, gh, gw = x.shape
    patches = x.flatten(2).transpose(1, 2)
    cls = W[pre + "embeddings.cls_token"].expand(n, -1, -1)
    pos = W[pre + "embeddings.position_embeddings"]
    npos = pos.shape[1] - 1
    g0 = int(math.isqrt(npos))
    if g0 * g0 == gh * gw and gh == gw:
        pos_i = pos
    else:
        pp = pos[:, 1:].reshape(1, g0, g0, D).permute(0, 3, 1, 2)
        pp = Fn.interpolate(pp, size=(gh, gw), mode="bicubic", align_corners=False)
        pos_i = torch.cat([pos[:, :1], pp.permute(0, 2, 3, 1).reshape(1, gh * gw, D)], dim=1)
    h = torch.cat([cls, patches], dim=1) + pos_i
    hs = [h]
    hd = D // H
    for i in range(vc["num_hidden_layers"]):
        q = f"{pre}encoder.layer.{i}."
        y = layer_norm(h, W[q + "norm1.weight"], W[q + "norm1.bias"], eps)

        def proj(name, t):
            return t @ W[q + f"attention.attention.{name}.weight"].T + W[q + f"attention.attention.{name}.bias"]

        Q, K, V = (proj(nm, y).reshape(n, -1, H, hd).transpose(1, 2) for nm in ("query", "key", "value"))
        a = torch.softmax((Q @ K.transpose(-1, -2)) * hd ** -0.5, dim=-1)
        o = (a @ V).transpose(1, 2).reshape(n, -1, D)
        o = o @ W[q + "attention.output.dense.weight"].T + W[q + "attention.output.dense.bias"]
        h = h + o * W[q + "layer_scale1.lambda1"]
        y = layer_norm(h, W[q + "norm2.weight"], W[q + "norm2.bias"], eps)
        y = Fn.gelu(y @ W[q + "mlp.fc1.weight"].T + W[q + "mlp.fc1.bias"])
        y = y @ W[q + "mlp.fc2.weight"].T + W[q + "mlp.fc2.bias"]
        h = h + y * W[q + "layer_scale2.lambda1"]
        hs.append(h)
    fmap = layer_norm(h, W[pre + "layernorm.weight"], W[pre + "layernorm.bias"], eps)
    x = fmap[:, 1:] if cfg["vision_feature_select_strategy"] == "default" else fmap
    nl = cfg["projector_n_layers"]
    for j in range(nl):
        x = x @ W[f"multi_modal_projector.layers.{2 * j}.weight"].T + W[f"multi_modal_projector.layers.{2 * j}.bias"]
        if j < nl - 1:
            x = Fn.gelu(x)
    return pos_i[0], torch.stack(hs, dim=1), fmap, x



# ------------------------------------------------------------------ plain-torch decoders (adapted from the team's
# shared/tools/check_reference.py: same primitives; here with several image blocks and Llama linear RoPE scaling)
ACT = {"gelu": lambda x: Fn.gelu(x), "gelu_pytorch_tanh": lambda x: Fn.gelu(x, approximate="tanh"), "silu": Fn.silu}


def rms_norm(x, w, eps, gemma):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * (1.0 + w) if gemma else y * w


def rope_cos_sin(positions, head_dim, rp):
    inv = 1.0 / (rp["rope_theta"] ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    if rp.get("rope_type", "default") == "linear":
        inv = inv / rp["factor"]
    f = positions.float()[:, None] * inv[None, :]
    emb = torch.cat([f, f], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x, cos, sin):
    d = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., d:], x[..., :d]], dim=-1) * sin


def lin(x, W, name, bias=False):
    y = x @ W[name + ".weight"].T
    return y + W[name + ".bias"] if bias and name + ".bias" in W else y


def attend(q, k, v, scale, allowed):
    H, KV = q.shape[0], k.shape[0]
    k, v = k.repeat_interleave(H // KV, 0), v.repeat_interleave(H // KV, 0)
    sc = (q @ k.transpose(1, 2)) * scale
    pr = torch.softmax(sc.masked_fill(~allowed[None], float("-inf")), dim=-1)
    return (pr @ v).transpose(0, 1).reshape(q.shape[1], -1), pr


class Decoder:
    def __init__(self, kind, W, cfg):
        self.W, tc = W, cfg["text_config"]
        self.tc, self.gemma = tc, kind == "gemma3"
        self.H, self.KV = tc["num_attention_heads"], tc["num_key_value_heads"]
        self.hd = tc.get("head_dim") or tc["hidden_size"] // self.H
        self.n = tc["num_hidden_layers"]
        self.lt = tc["layer_types"] if self.gemma else ["full_attention"] * self.n
        self.scale = tc["query_pre_attn_scalar"] ** -0.5 if self.gemma else self.hd ** -0.5
        self.act = ACT[tc["hidden_activation"] if self.gemma else tc.get("hidden_act", "silu")]
        self.head = W["language_model.model.embed_tokens.weight" if self.gemma else "language_model.lm_head.weight"]
        self.cache = [None] * self.n

    def norm(self, x, name):
        return rms_norm(x, self.W[name], self.tc["rms_norm_eps"], self.gemma)

    def forward(self, x, positions, allowed_for):
        W, T, pre = self.W, x.shape[0], "language_model.model"
        hidden, probs = [x], []
        for i in range(self.n):
            p = f"{pre}.layers.{i}"
            nx = self.norm(x, p + ".input_layernorm.weight")
            q = lin(nx, W, p + ".self_attn.q_proj").view(T, self.H, self.hd).transpose(0, 1)
            k = lin(nx, W, p + ".self_attn.k_proj").view(T, self.KV, self.hd).transpose(0, 1)
            v = lin(nx, W, p + ".self_attn.v_proj").view(T, self.KV, self.hd).transpose(0, 1)
            if self.gemma:
                q, k = self.norm(q, p + ".self_attn.q_norm.weight"), self.norm(k, p + ".self_attn.k_norm.weight")
                rp = self.tc["rope_parameters"][self.lt[i]]
            else:
                rp = self.tc["rope_parameters"]
            cos, sin = rope_cos_sin(positions, self.hd, rp)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            if self.cache[i] is not None:
                k, v = torch.cat([self.cache[i][0], k], 1), torch.cat([self.cache[i][1], v], 1)
            self.cache[i] = (k, v)
            o, pr = attend(q, k, v, self.scale, allowed_for(self.lt[i], positions, torch.arange(k.shape[1])))
            o = lin(o, W, p + ".self_attn.o_proj")
            if self.gemma:
                x = x + self.norm(o, p + ".post_attention_layernorm.weight")
                nx = self.norm(x, p + ".pre_feedforward_layernorm.weight")
            else:
                x = x + o
                nx = self.norm(x, p + ".post_attention_layernorm.weight")
            m = lin(self.act(lin(nx, W, p + ".mlp.gate_proj")) * lin(nx, W, p + ".mlp.up_proj"), W, p + ".mlp.down_proj")
            x = x + (self.norm(m, p + ".post_feedforward_layernorm.weight") if self.gemma else m)
            hidden.append(x)
            probs.append(pr)
        x = self.norm(x, pre + ".norm.weight")
        hidden[-1] = x
        return x @ self.head.T, torch.stack(hidden), probs


def gemma_vision(W, cfg, pv):
    """SigLIP (per image) + 4x4 avg pool + Gemma RMSNorm (1+w) + x @ mm_input_projection_weight."""
    vc = cfg["vision_config"]
    pre = "vision_tower.vision_model"
    D, H, eps = vc["hidden_size"], vc["num_attention_heads"], vc["layer_norm_eps"]
    hd = D // H
    outs = []
    for img in pv:
        x = Fn.conv2d(img[None], W[pre + ".embeddings.patch_embedding.weight"],
                      W[pre + ".embeddings.patch_embedding.bias"], stride=vc["patch_size"])[0].flatten(1).T
        x = x + W[pre + ".embeddings.position_embedding.weight"]
        T = x.shape[0]
        for i in range(vc["num_hidden_layers"]):
            p = f"{pre}.encoder.layers.{i}"
            nx = layer_norm(x, W[p + ".layer_norm1.weight"], W[p + ".layer_norm1.bias"], eps)
            q, k, v = (lin(nx, W, f"{p}.self_attn.{n}_proj", True).view(T, H, hd).transpose(0, 1) for n in "qkv")
            o, _ = attend(q, k, v, hd ** -0.5, torch.ones(T, T, dtype=torch.bool))
            x = x + lin(o, W, p + ".self_attn.out_proj", True)
            nx = layer_norm(x, W[p + ".layer_norm2.weight"], W[p + ".layer_norm2.bias"], eps)
            x = x + lin(Fn.gelu(lin(nx, W, p + ".mlp.fc1", True), approximate="tanh"), W, p + ".mlp.fc2", True)
        last = layer_norm(x, W[pre + ".post_layernorm.weight"], W[pre + ".post_layernorm.bias"], eps)
        g = vc["image_size"] // vc["patch_size"]
        t = int(math.isqrt(cfg["mm_tokens_per_image"]))
        pooled = Fn.avg_pool2d(last.T.reshape(1, -1, g, g), g // t).flatten(2)[0].T
        normed = rms_norm(pooled, W["multi_modal_projector.mm_soft_emb_norm.weight"], eps, True)
        outs.append(normed @ W["multi_modal_projector.mm_input_projection_weight"])
    return torch.stack(outs)


def check_decoder(kind, W, cfg, T, tag, proj):
    """Prompt forward + greedy KV-cache decode from input_ids and the recomputed per-image projector output."""
    ids = T["input_ids"]
    L = ids.shape[0]
    per = T["image_token_positions_per_image"]
    dec = Decoder(kind, W, cfg)
    scale = torch.tensor(cfg["text_config"]["hidden_size"] ** 0.5, dtype=torch.float32) if kind == "gemma3" else None
    emb = W["language_model.model.embed_tokens.weight"][ids].clone()
    if scale is not None:
        emb = emb * scale
    emb[per.reshape(-1)] = proj.reshape(-1, proj.shape[-1])  # image i's features at image i's positions
    block = torch.full((L,), -1, dtype=torch.long)
    for i, row in enumerate(per):
        block[row] = i
    window = cfg["text_config"].get("sliding_window")

    def allowed(lt, qp, kp):
        m = kp[None, :] <= qp[:, None]
        if kind == "gemma3":
            qb = torch.where(qp < L, block[qp.clamp(max=L - 1)], -1)[:, None]
            kb = torch.where(kp < L, block[kp.clamp(max=L - 1)], -1)[None, :]
            m = m | ((qb == kb) & (qb >= 0))
            if lt == "sliding_attention":
                m = m & (kp[None, :] > qp[:, None] - window)
        return m

    logits, hidden, probs = dec.forward(emb, torch.arange(L), allowed)
    A = torch.stack(probs)
    d = {"prompt_last_logits": (logits[-1] - T["prompt_last_logits"]).abs().max().item(),
         "prompt_last_attn": (A[:, :, -1] - T["prompt_last_attn"]).abs().max().item(),
         "prompt_last_attn_image": (A[:, :, -1][:, :, per] - T["prompt_last_attn_image"]).abs().max().item()}
    if "prompt_logits" in T:
        d["prompt_logits"] = (logits - T["prompt_logits"]).abs().max().item()
    if "prompt_attn_full" in T:
        d["prompt_attn_full"] = (A - T["prompt_attn_full"]).abs().max().item()
    if "prompt_hidden_states" in T:
        d["prompt_hidden_states"] = (hidden - T["prompt_hidden_states"]).abs().max().item()
    gen = T["generated_ids"].tolist()
    tok, got, gl = int(logits[-1].argmax()), [], [logits[-1]]
    got.append(tok)
    total = T["gen_attn"].shape[-1]
    ga = [torch.nn.functional.pad(A[:, :, -1], (0, total - L))]
    for step in range(1, len(gen)):
        pos = L - 1 + step
        e = W["language_model.model.embed_tokens.weight"][torch.tensor([tok])]
        if scale is not None:
            e = e * scale
        lg, _, pr = dec.forward(e, torch.tensor([pos]), allowed)
        tok = int(lg[-1].argmax())
        got.append(tok)
        gl.append(lg[-1])
        ga.append(torch.nn.functional.pad(torch.stack([x[:, -1] for x in pr]), (0, total - pos - 1)))
    d["gen_logits"] = (torch.stack(gl) - T["gen_logits"]).abs().max().item()
    d["gen_attn"] = (torch.stack(ga) - T["gen_attn"]).abs().max().item()
    tol = {"prompt_hidden_states": 1e-4, "prompt_logits": 1e-4, "prompt_last_logits": 1e-4, "gen_logits": 1e-4}
    ok = got == gen and all(v <= tol.get(k, 1e-5) for k, v in d.items())
    check(ok, f"{tag}: plain-torch decoder, greedy ids {'equal' if got == gen else 'DIFFER'}; "
          + ", ".join(f"{k} {v:.1e}" for k, v in d.items()))


def gemma_allowed(L, ttype, layer_type, window):
    q = torch.arange(L)[:, None]
    k = torch.arange(L)[None, :]
    causal = k <= q
    is_img = torch.tensor(ttype) == 1
    prev = torch.cat([torch.tensor([False]), is_img[:-1]])
    gid = torch.cumsum((is_img & ~prev).int(), 0) - 1
    blk = torch.where(is_img, gid, torch.full_like(gid, -1))
    same = (blk[:, None] == blk[None, :]) & (blk[:, None] >= 0)
    allowed = causal | same
    if layer_type == "sliding_attention":
        allowed &= k > q - window
    return allowed


DECODER = True


def main(root):
    index = json.load(open(os.path.join(root, "reference", "index.json")))
    for mname, entry in index["models"].items():
        kind = entry["kind"]
        mdir = os.path.join(root, mname)
        cfg = json.load(open(os.path.join(mdir, "config.json")))
        tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
        tmpl = open(os.path.join(mdir, "chat_template.jinja")).read()
        pcfg = json.load(open(os.path.join(mdir, "processor_config.json")))
        ip = pcfg["image_processor"]
        W = load_file(os.path.join(mdir, "model.safetensors")) if kind == "maira2" else None
        for case in entry["cases"]:
            cdir = os.path.join(root, "reference", mname, case)
            m = json.load(open(os.path.join(cdir, "manifest.json")))
            T = load_file(os.path.join(cdir, "tensors.safetensors"))
            tag = f"{mname}/{case}"
            bos, eos = ("<bos>", "<eos>") if kind == "gemma3" else ("<s>", "</s>")
            rendered = render(tmpl, m["messages"], bos, eos)
            check(rendered == m["prompt_text"], f"{tag}: jinja2 render of chat_template.jinja == prompt_text")
            n_img = m["n_images"]
            if kind == "gemma3":
                n_per = cfg["mm_tokens_per_image"]
                expanded = rendered.replace("<start_of_image>", "\n\n<start_of_image>" + "<image_soft_token>" * n_per
                                            + "<end_of_image>\n\n")
                img_id = cfg["image_token_index"]
                # the labels (if any) sit right before each image, in the order of image_roles
                labels = {"prior": "Prior study:", "current": "Current study:", "lateral": "Current lateral view:"}
                if m.get("layout") == "labelled":
                    pos = [rendered.index(labels[r]) for r in m["image_roles"]]
                    check(pos == sorted(pos), f"{tag}: role labels appear in image order {m['image_roles']}")
            else:
                hand, labels_m, order = maira_prompt(m)
                check(hand == rendered, f"{tag}: hand-built MAIRA-2 prompt == rendered template")
                check(order == sorted(order), f"{tag}: image order is frontal, lateral, prior ({m['image_roles']})")
                n_per = (ip["crop_size"]["height"] // cfg["vision_config"]["patch_size"]) ** 2
                expanded = rendered.replace("<image>", "<image>" * n_per)
                img_id = cfg["image_token_index"]
            check(expanded == m["expanded_prompt_text"], f"{tag}: expanded prompt text")
            ids = tok.encode(expanded, add_special_tokens=m["tokenizer_add_special_tokens"]).ids
            check(ids == T["input_ids"].tolist(), f"{tag}: tokenizer.json ids == input_ids (L={len(ids)})")
            pos = [i for i, t in enumerate(ids) if t == img_id]
            runs = runs_of(pos)
            per = T["image_token_positions_per_image"].tolist()
            check(len(runs) == n_img and all(b - a == n_per for a, b in runs)
                  and per == [list(range(a, b)) for a, b in runs] and T["image_token_positions"].tolist() == pos,
                  f"{tag}: {n_img} image-token runs of {n_per} = {runs}")
            if kind == "gemma3":
                tt = T["token_type_ids"].tolist()
                check(tt == [int(t == img_id) for t in ids], f"{tag}: token_type_ids == (id == image_soft_token)")
                check(all(ids[a - 1] == cfg["boi_token_index"] and ids[b] == cfg["eoi_token_index"] for a, b in runs),
                      f"{tag}: every run is wrapped in <start_of_image> .. <end_of_image>")
            else:
                # each image run follows its label's text
                ok = True
                for (a, _), lab in zip(runs, labels_m):
                    before = tok.decode(ids[:a], skip_special_tokens=False)
                    ok &= before.endswith(lab.strip())
                check(ok, f"{tag}: each image run follows its label")
            # preprocessing
            pv = T["pixel_values"].numpy()
            imgs = [Image.open(os.path.join(root, f)) for f in m["images"]]
            if kind == "gemma3":
                rec = np.stack([gemma_pixels(im, ip["size"]["height"]) for im in imgs])
            else:
                rec = np.stack([maira_pixels(im, ip["crop_size"]["height"], ip["image_mean"], ip["image_std"])
                                for im in imgs])
            d = float(np.abs(rec - pv).max()) if rec.shape == pv.shape else float("inf")
            check(d < 5e-6, f"{tag}: pixel_values {list(pv.shape)} recomputed with PIL (max diff {d:.2e})")
            if kind == "gemma3" and "prompt_attn_full" in T:
                A = T["prompt_attn_full"]
                L = A.shape[-1]
                tc = cfg["text_config"]
                ok = True
                for li, lt in enumerate(tc["layer_types"]):
                    al = gemma_allowed(L, T["token_type_ids"].tolist(), lt, tc["sliding_window"])
                    ok &= bool((A[li][:, ~al] == 0).all()) and bool((A[li][:, al] > 0).all())
                check(ok, f"{tag}: prompt_attn_full zero exactly outside the per-image block mask (+window)")
            if kind == "maira2":
                pos_i, hs, fmap, proj = maira_vision(W, cfg, T["pixel_values"])
                dp = (proj - T["vision.projector_output"]).abs().max().item()
                dh = (hs - T["vision.hidden_states"]).abs().max().item()
                df = (fmap - T["vision.feature_map"]).abs().max().item()
                dpos = (pos_i - T["vision.position_embeddings_interpolated"]).abs().max().item()
                check(max(dp, dh, df, dpos) < 1e-4, f"{tag}: plain-torch DINOv2 + projector (pos {dpos:.1e}, "
                                                    f"blocks {dh:.1e}, layernorm {df:.1e}, projector {dp:.1e})")
            else:
                W = load_file(os.path.join(mdir, "model.safetensors"))
                proj = gemma_vision(W, cfg, T["pixel_values"])
                dp = (proj - T["vision.projector_output"]).abs().max().item()
                check(dp < 1e-4, f"{tag}: plain-torch SigLIP + pool + norm + projection per image ({dp:.1e})")
            if DECODER:
                check_decoder(kind, W, cfg, T, tag, proj)
    print(f"\n{len(FAIL)} failure(s)")
    return 1 if FAIL else 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    DECODER = "--layout-only" not in sys.argv
    torch.set_grad_enabled(False)
    sys.exit(main(args[0] if args else "fixtures/multi-image-v1"))
