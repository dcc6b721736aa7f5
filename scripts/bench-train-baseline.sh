#!/usr/bin/env bash
# Training throughput of this checkout against the code before the training-speed work
# (commit fbfa4e0: candle's plain products, AdamW tensor by tensor, AVX2 GEMM kernels), built
# beside it and timed back to back in one run, alternating, on the same machine:
#   [FEATURES=...] scripts/bench-train-baseline.sh [bench-train flags, e.g. --batch 8,32]
# (`bench train --paths old,new` switches the autodiff path inside one binary; this script
# also covers what a switch cannot restore, such as the GEMM kernels a build selects.)
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-fbfa4e0}
SRC=target/baseline-src
OUT=$PWD/target/baseline
if [ ! -x "$OUT/release/native" ]; then
  [ -d "$SRC" ] || git worktree add -f "$SRC" "$BASE"
  (cd "$SRC" && CARGO_TARGET_DIR="$OUT" cargo build --release -p native)
fi
cargo build --release -p native ${FEATURES:+--features "$FEATURES"}
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--batch 8,32 --steps 3)
for round in 1 2; do
  echo "== round $round: baseline ($BASE)"
  "$OUT/release/native" --threads 2 bench train "${args[@]}" | grep batch
  echo "== round $round: this checkout"
  target/release/native --threads 2 bench train "${args[@]}" --paths new | grep batch
done
