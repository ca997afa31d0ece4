#!/usr/bin/env bash
# Builds the CUDA radlens binary on a machine without a GPU, for the lent GPU machine (which has
# no Rust and no internet): CUDA 13.0 toolkit from PyPI wheels (pinned: PTX from a newer nvcc
# does not load on the 13.0 driver), `cargo build --release --features cuda`, strip, xz.
#
#   scripts/build-cuda.sh            -> .gpu/radlens-cuda.xz (carry `.gpu` to the device)
#
# First build ~20 min on 2 cores (nvcc compiles candle's kernels); later ones reuse the target
# dir. Environment: RADLENS_CUDA_TOOLKIT (default ~/.cache/cuda13.0-wheels),
# RADLENS_CUDA_TARGET_DIR (default ~/.cache/radlens-cuda-target), CUDA_COMPUTE_CAP (default 90:
# H100/H200).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
toolkit="${RADLENS_CUDA_TOOLKIT:-$HOME/.cache/cuda13.0-wheels}"
if [ ! -f "$toolkit/env.sh" ]; then
  bash scripts/gpu/cuda-wheels-setup.sh "$toolkit"
fi
# shellcheck disable=SC1091
source "$toolkit/env.sh"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="${RADLENS_CUDA_TARGET_DIR:-$HOME/.cache/radlens-cuda-target}"
# The dashboard is not needed on the GPU machine: keep the binary small.
export RADLENS_NO_EMBED_DIST=1
cargo build --release -p radlens --features cuda
mkdir -p .gpu
strip -o .gpu/radlens-cuda "$CARGO_TARGET_DIR/release/radlens"
rm -f .gpu/radlens-cuda.xz
xz -T2 -6 .gpu/radlens-cuda
# What the binary loads by name on the GPU machine (the driver's libcuda, cuBLAS, cuRAND, cudart).
xz -dc .gpu/radlens-cuda.xz > "$CARGO_TARGET_DIR/radlens-cuda.check" && chmod +x "$CARGO_TARGET_DIR/radlens-cuda.check"
readelf -d "$CARGO_TARGET_DIR/radlens-cuda.check" | grep NEEDED | sed 's/.*\[\(.*\)\]/  needs \1/'
rm -f "$CARGO_TARGET_DIR/radlens-cuda.check"
ls -l .gpu/radlens-cuda.xz
echo "carry .gpu to the GPU machine, then run: bash scripts/gpu-check.sh"
