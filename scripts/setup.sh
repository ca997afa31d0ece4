#!/usr/bin/env bash
# Installs what building and testing radlens needs and is missing; a no-op when all is there.
#   scripts/setup.sh            toolchain + wasm32 target + wasm-bindgen CLI
#   scripts/setup.sh --browser  ... plus Debian's chromium and chromium-driver (browser tests)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

# 1. The pinned toolchain (rust-toolchain.toml) and the wasm32 target it lists.
rustup show active-toolchain >/dev/null
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# 2. wasm-bindgen CLI at exactly the version in Cargo.lock (the CLI refuses other versions).
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ -n "$want" ] || { echo "setup: cannot find wasm-bindgen's version in Cargo.lock" >&2; exit 1; }
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  say "installing wasm-bindgen-cli $want (found: ${have:-none}); takes 6-12 minutes on 2 cores"
  # Not --locked: the crate's own lockfile pins a webpki-roots release that the registry lacks.
  cargo install wasm-bindgen-cli --version "$want"
fi

# 3. Debian's chromium and its matching driver, for the browser tests.
if [ "${1:-}" = "--browser" ]; then
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    say "installing chromium and chromium-driver (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
fi
say "ready"
