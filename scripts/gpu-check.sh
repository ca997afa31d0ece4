#!/usr/bin/env bash
# The one prepared run for the lent GPU machine (no Rust, no internet there; 15 minutes of device
# time per session in all). Build first, here: scripts/build-cuda.sh -> .gpu/radlens-cuda.xz,
# then through the device tool, carrying .gpu:
#
#   bash scripts/gpu-check.sh            (details under $OUT, one short table printed last)
#
# Steps, each recorded even when another fails:
#   1. GPU vs CPU parity on the tiny fixtures in f32 (LLaVA, Gemma3, LLaVA-Rad): same ids,
#      margins and maps up to float error;
#   2. bf16 vs f32 on the mid-size random models: answer agreement, map JS distance;
#   3. the full-size study benchmark (bf16; LLaVA-1.5-7B also with q8 weights) and the q8 vs
#      bf16 agreement on LLaVA-1.5-7B;
#   3b. several images per prompt (medgemma-4b, maira-2): 3 images against 1 in the same run;
#   4. the transformers baseline (eager + output_attentions) and the copy-bandwidth ceiling, on
#      the same machine in the same call, so every ratio is measured side by side.
# `--smoke` runs the same plumbing on the CPU with cut models and no baseline (for this script's
# own test; its figures mean nothing).
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
OUT="${OUT:-/tmp/radlens-gpu-check}"
mkdir -p "$OUT"
smoke=0
[ "${1:-}" = "--smoke" ] && smoke=1

if [ "$smoke" = 1 ]; then
  bin="${RADLENS_BIN:-target/release/radlens}"
  run() { "$bin" "$@"; }
  dev=cpu; half=f16
  cut=(--text-layers 2 --vision-layers 1); reps=1; tokens=2
else
  bin=.gpu/radlens-cuda
  run() { bash scripts/gpu/with-cuda-libs.sh "$bin" "$@"; }
  dev=cuda; half=bf16
  cut=(); reps=3; tokens=16
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>&1
fi
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/steps.log"; }
step() { # name, then the command; stdout to $OUT/name.json, stderr to $OUT/name.err
  local name="$1"; shift
  log "$name"
  local t0=$SECONDS
  if "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"; then
    log "$name ok ($((SECONDS - t0)) s)"
  else
    log "$name FAILED ($((SECONDS - t0)) s): $(tail -c 300 "$OUT/$name.err")"
  fi
}

# 1. Parity on the tiny fixtures, f32 on both devices.
img=fixtures/reference-v1/images/img_b_rgb_300x240.png
for m in reference-v1/llava-tiny reference-v1/gemma3-tiny llava-rad-tiny-v1/llava-rad-tiny; do
  name=$(basename "$m")
  # The CPU run first (the reference), then the device's (on --smoke, the CPU again).
  for pair in "cpu:a-cpu" "$dev:b-device"; do
    step "parity-$name-${pair#*:}" run probe --model "fixtures/$m" --image "$img" --question "Is there a pleural effusion?" \
      --max-new-tokens 5 --layers all --device "${pair%%:*}" --dtype f32 --json
  done
done

# 2. Half precision vs f32 on the mid-size models.
for a in llava gemma3 qwen2.5-vl; do
  step "agree-$a-$half" run bench --arch "$a" --device "$dev" --dtype "$half" --agreement-with f32 --reps "$reps" \
    --new-tokens "$tokens" "${cut[@]}" --json
done

# 3. Full size: the study protocol, and q8 against bf16.
for a in llava-1.5-7b medgemma-4b llava-rad qwen2.5-vl-7b; do
  step "bench-$a-$half" run bench --arch "$a" --random-weights --device "$dev" --dtype "$half" --reps "$reps" \
    --new-tokens "$tokens" "${cut[@]}" --json
done
step "bench-llava-1.5-7b-q8" run bench --arch llava-1.5-7b --random-weights --device "$dev" --dtype "$half" --quantize q8 \
  --reps "$reps" --new-tokens "$tokens" "${cut[@]}" --json
step "agree-llava-1.5-7b-q8" run bench --arch llava-1.5-7b --random-weights --device "$dev" --dtype "$half" --quantize q8 \
  --agreement-with "$half" --reps 2 --new-tokens "$tokens" "${cut[@]}" --json

# 3b. Several images per prompt (issue 21): three images against the 1-image prompt of the
# same run (prefill, decode, capture, peak device memory and their ratios).
for a in medgemma-4b maira-2; do
  step "images-$a-$half" run bench --arch "$a" --random-weights --images 3 --device "$dev" --dtype "$half" --reps "$reps" \
    --new-tokens "$tokens" "${cut[@]}" --json
done

# 4. The peer baseline and the ceilings, same machine, same call.
if [ "$smoke" = 0 ]; then
  log "baseline"
  python3 scripts/gpu/hf_baseline.py --models llava,gemma,llavarad,qwen --reps 3 --new 16 --out "$OUT/baseline.jsonl" \
    > "$OUT/baseline.log" 2>&1 || log "baseline FAILED: $(tail -c 300 "$OUT/baseline.log")"
  python3 scripts/gpu/ceilings.py > "$OUT/ceilings.json" 2> "$OUT/ceilings.err" || log "ceilings FAILED"
fi

python3 scripts/gpu/summarize.py "$OUT" | tee "$OUT/summary.md"
