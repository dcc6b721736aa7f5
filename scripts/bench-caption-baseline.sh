#!/usr/bin/env bash
# Caption latency of this checkout against the code before this round of decoding work (commit
# 480f202: rayon-split block products, 8-lane fused dot, candle's attention ops), built beside it
# (or given as BASE_BIN) and timed back to back, alternating, on the same machine:
#   [BASE_BIN=path/to/old/native] scripts/bench-caption-baseline.sh [quants, default f32,q8,q4]
# Prints greedy and beam-5 ms per caption and per token, and the image encode, per quant.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-480f202}
SRC=target/baseline-caption-src
OUT=$PWD/target/baseline-caption
if [ -z "${BASE_BIN:-}" ]; then
  if [ ! -x "$OUT/release/native" ]; then
    [ -d "$SRC" ] || git worktree add -f "$SRC" "$BASE"
    (cd "$SRC" && CARGO_TARGET_DIR="$OUT" cargo build --release -p native)
  fi
  BASE_BIN=$OUT/release/native
fi
cargo build --release -p native
IFS=, read -r -a quants <<< "${1:-f32,q8,q4}"
for round in 1 2; do
  for quant in "${quants[@]}"; do
    for side in baseline new; do
      bin=$BASE_BIN
      [ "$side" = new ] && bin=target/release/native
      echo "== round $round, $quant, $side"
      # As a user runs them (the baseline build set only CANDLE_NUM_THREADS from --threads).
      "$bin" --threads 2 bench caption --iters 5 --quant "$quant" |
        grep -E '^(greedy|beam 5) '
    done
  done
done
