#!/usr/bin/env bash
# Builds the browser bundle into dist/: the radlens-frontend crate for wasm32, the wasm-bindgen
# JS glue (--target web) and the hand-written static/index.html, boot.js and style.css.
#
#   scripts/build-web.sh [debug|release]     (default: debug)
#
# debug   : `cargo build` (dev profile), ~3 MB wasm, what the browser e2e test uses.
# release : `--profile wasm-release` (opt-level z, LTO, 1 codegen unit) and wasm-bindgen
#           --remove-name-section --remove-producers-section, ~0.4 MB wasm.
#
# Needs the wasm32-unknown-unknown target and wasm-bindgen-cli of exactly the version of the
# wasm-bindgen crate (see the workspace Cargo.toml); this script installs nothing.
# Respects CARGO_TARGET_DIR (default: <workspace>/target). Output: <workspace>/dist.
set -euo pipefail

WASM_BINDGEN_VERSION=0.2.130   # == the `wasm-bindgen = "=..."` pin in Cargo.toml
CRATE=radlens-frontend
OUT_NAME=radlens_frontend      # static/boot.js imports /radlens_frontend.js

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mode="${1:-debug}"
case "$mode" in
  debug)
    cargo_args=()
    profile_dir=debug
    bindgen_args=()
    ;;
  release)
    cargo_args=(--profile wasm-release)
    profile_dir=wasm-release
    bindgen_args=(--remove-name-section --remove-producers-section)
    ;;
  -h|--help)
    sed -n '2,14p' "$0"
    exit 0
    ;;
  *)
    echo "usage: $0 [debug|release]" >&2
    exit 2
    ;;
esac

die() { echo "build-web.sh: error: $*" >&2; exit 1; }

command -v wasm-bindgen >/dev/null 2>&1 \
  || die "wasm-bindgen not found on PATH. Install it with: cargo install wasm-bindgen-cli --version $WASM_BINDGEN_VERSION (no --locked)"
found="$(wasm-bindgen --version 2>/dev/null || true)"
[ "$found" = "wasm-bindgen $WASM_BINDGEN_VERSION" ] \
  || die "need wasm-bindgen $WASM_BINDGEN_VERSION (it must equal the wasm-bindgen crate version), found '${found:-nothing}'. Install it with: cargo install wasm-bindgen-cli --version $WASM_BINDGEN_VERSION --force"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
wasm="$target_dir/wasm32-unknown-unknown/$profile_dir/$CRATE.wasm"
dist="$root/dist"

echo "==> cargo build -p $CRATE --target wasm32-unknown-unknown ${cargo_args[*]:-}" >&2
start=$SECONDS
cargo build -p "$CRATE" --bin "$CRATE" --target wasm32-unknown-unknown "${cargo_args[@]}"
[ -f "$wasm" ] || die "cargo did not produce $wasm"

echo "==> wasm-bindgen --target web -> $dist" >&2
rm -rf "$dist"
mkdir -p "$dist"
wasm-bindgen --target web --no-typescript --out-dir "$dist" --out-name "$OUT_NAME" \
  "${bindgen_args[@]}" "$wasm"
cp static/index.html static/style.css static/boot.js "$dist/"

echo "==> built $mode bundle in $((SECONDS - start)) s:" >&2
ls -l "$dist" >&2
