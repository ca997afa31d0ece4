#!/usr/bin/env python3
"""The table gpu-check.sh prints last, from the files it wrote under OUT: parity, precision
agreement, the study benchmark against the transformers baseline measured in the same call, the
decode bandwidth floor and peak memory. Markdown, ready for BENCHMARKS.md. Standard library only."""
import json, os, sys

out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            text = f.read().strip()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None

def fmt(x, spec=".2f"):
    return "n/a" if x is None else format(x, spec)

lines = []
gpu = None
try:
    gpu = open(os.path.join(out, "gpu.txt")).read().strip()
except OSError:
    pass
lines.append(f"GPU: {gpu or 'none (CPU smoke run: plumbing only, figures mean nothing)'}")

# 1. Parity.
lines += ["", "| parity (f32) | ids equal | max abs margin diff | max abs map diff |", "|---|---|---|---|"]
for name in ("llava-tiny", "gemma3-tiny", "llava-rad-tiny"):
    runs = [load(f) for f in sorted(os.listdir(out)) if f.startswith(f"parity-{name}-") and f.endswith(".json")]
    runs = [r for r in runs if r]
    if len(runs) < 2:
        lines.append(f"| {name} | FAILED ({len(runs)} of 2 runs) | | |")
        continue
    a, b = runs[0], runs[1]
    margin = None if a["yes_no_margin"] is None or b["yes_no_margin"] is None else abs(a["yes_no_margin"] - b["yes_no_margin"])
    mapdiff = max(abs(x - y) for x, y in zip(a["map"]["values"], b["map"]["values"]))
    lines.append(f"| {name} | {a['generated_ids'] == b['generated_ids']} | {fmt(margin, '.2e')} | {mapdiff:.2e} |")

# 2. Agreement.
lines += ["", "| agreement | cases | first token equal | all tokens equal | map JS mean / max (bits) |", "|---|---|---|---|---|"]
for f in sorted(os.listdir(out)):
    if f.startswith("agree-") and f.endswith(".json"):
        r = load(f)
        if not r:
            lines.append(f"| {f[6:-5]} | FAILED | | | |")
            continue
        lines.append(f"| {r['arch']}: {r['candidate']} vs {r['reference']} ({r['scale']}) | {r['cases']} | {r['first_token_agreement']:.3f} | "
                     f"{r['all_tokens_agreement']:.3f} | {r['map_js_distance_mean']:.4f} / {r['map_js_distance_max']:.4f} |")

# 3. Study benchmark vs the baseline (6 variants, each a full eager + output_attentions generate).
baseline = {}
try:
    for line in open(os.path.join(out, "baseline.jsonl")):
        r = json.loads(line)
        if r.get("attn") == "eager" and r.get("output_attentions") and r.get("use_cache") is None:
            baseline[(r["model"], r["new_tokens"])] = r
except OSError:
    pass
ceil = load("ceilings.json") or {}
bw = ceil.get("copy_TBps")
names = {"llava-1.5-7b": "llava", "medgemma-4b": "gemma", "llava-rad": "llavarad", "qwen2.5-vl-7b": "qwen"}
lines += ["", "| study of 6 variants | radlens s | baseline s | speedup (target >= 5) | decode ms/token | floor ms | x floor (target <= 1.5) | peak GiB radlens | peak GiB baseline |",
          "|---|---|---|---|---|---|---|---|---|"]
for f in sorted(os.listdir(out)):
    if not (f.startswith("bench-") and f.endswith(".json")):
        continue
    r = load(f)
    if not r:
        lines.append(f"| {f[6:-5]} | FAILED | | | | | | | |")
        continue
    b = baseline.get((names.get(r["arch"]), r["new_tokens"]))
    ours = r["study_ms"] / 1e3
    base = 6 * b["median_s"] if b else None
    floor = r["weight_bytes"] / (bw * 1e12) * 1e3 if bw else None
    label = f"{r['arch']} {r['dtype']}" + ("" if r["quantization"] == "none" else f"+{r['quantization']}") + ("" if r["scale"] == "full size" else f" ({r['scale']})")
    lines.append(f"| {label} | {ours:.3f} | {fmt(base, '.3f')} | {fmt(base / ours if base else None)} | {r['decode_ms_per_token']:.2f} | {fmt(floor)} | "
                 f"{fmt(r['decode_ms_per_token'] / floor if floor else None)} | {fmt(r.get('peak_device_gib'))} | {fmt(b['peak_gib'] if b else None)} |")
# 3b. Several images per prompt: N images against the 1-image prompt of the same run.
lines += ["", "| several images | images | prompt tokens 1 / N | prefill ms 1 / N (x) | decode ms/token 1 / N (x) | capture / none 1 / N | peak GiB over weights 1 / N (x) |",
          "|---|---|---|---|---|---|---|"]
for f in sorted(os.listdir(out)):
    if not (f.startswith("images-") and f.endswith(".json")):
        continue
    r = load(f)
    if not r:
        lines.append(f"| {f[7:-5]} | FAILED | | | | | |")
        continue
    b, m, x = r["baseline"], r["measured"], dict(r["ratios"])
    label = f"{r['arch']} {r['dtype']}" + ("" if r["scale"] == "full size" else f" ({r['scale']})")
    lines.append(f"| {label} | {m['images']} | {b['prompt_tokens']} / {m['prompt_tokens']} | {b['prefill_ms']:.1f} / {m['prefill_ms']:.1f} ({fmt(x.get('prefill'))}) | "
                 f"{b['decode_ms_per_token']:.2f} / {m['decode_ms_per_token']:.2f} ({fmt(x.get('decode per token'))}) | "
                 f"{b['capture_time_ratio']:.3f} / {m['capture_time_ratio']:.3f} | "
                 f"{fmt(b.get('peak_device_gib'))} / {fmt(m.get('peak_device_gib'))} ({fmt(x.get('peak device memory'))}) |")
if bw:
    lines.append(f"\nceilings: copy {bw:.2f} TB/s, bf16 matmul {ceil.get('bf16_TFLOPs', 0):.0f} TFLOP/s; floor = weight bytes / copy bandwidth")
print("\n".join(lines))
