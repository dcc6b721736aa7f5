#!/usr/bin/env bash
# Installs what the browser app needs to build, serve and test, at the versions that work here
# (../shared/TOOLCHAIN.md): the wasm32 target, trunk 0.21.14, wasm-bindgen-cli 0.2.130 (the
# version web/Cargo.toml pins), binaryen 132's wasm-opt and playwright-core 1.65.1 (npm, in
# web/tests/node_modules), Debian's chromium (skipped with --no-browser) and mesa-vulkan-drivers
# (lavapipe, for the WebGPU engine's native tests), ffmpeg (the video tests), and node/npm
# when they are missing.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

rustup target add wasm32-unknown-unknown >/dev/null
if ! trunk --version 2>/dev/null | grep -q "0\.21\.14"; then
  echo "installing trunk 0.21.14 (about 11 minutes on 2 cores)"
  cargo install --locked trunk --version 0.21.14
fi
if ! wasm-bindgen --version 2>/dev/null | grep -q "0\.2\.130"; then
  echo "installing wasm-bindgen-cli 0.2.130 (about 4 minutes)"
  # Not --locked: its lock file names a webpki-roots version the registry no longer has.
  cargo install wasm-bindgen-cli --version 0.2.130
fi
# node/npm fetch wasm-opt (binaryen) and playwright-core; Debian's packages do on a fresh machine.
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "installing node and npm (Debian packages)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -x web/tests/node_modules/.bin/wasm-opt ] || [ ! -d web/tests/node_modules/playwright-core ]; then
  (cd web/tests && npm ci --no-audit --no-fund)
fi
# lavapipe, Mesa's Vulkan driver on the CPU: the WebGPU engine's native tests run on it.
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers >/dev/null
fi
# ffmpeg/ffprobe decode the video datasets in the tests (and encode the synthetic clips).
if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
fi
if [ "${1:-}" != "--no-browser" ] && [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
