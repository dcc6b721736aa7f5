#!/usr/bin/env bash
# Serves the browser app with the shipped default model at http://127.0.0.1:8080 (release
# build: the model is far too slow unoptimised). Installs the tools it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
web/setup-tools.sh --no-browser
export PATH="$PWD/web/tests/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# The wasm build's own cargo folder, shared with the browser tests.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/web-wasm}"
exec trunk --skip-version-check serve --release --address 127.0.0.1 --port "${PORT:-8080}" "$@"
