#!/usr/bin/env bash
# The prepared GPU check, run on a lent GPU machine from the repository root with .gpu-check/
# carried (made here by scripts/gpu-pack.sh):
#   run(command="bash scripts/gpu-check.sh", carry=[".gpu-check"], timeout_s=540)
# Every part runs under its own time limit and reports, even when an earlier one failed; the
# whole stays within 8 minutes. A summary closes the output; logs and the training runs'
# metrics.jsonl go to $OUT (the device tool's returned folder) when it is set.
#   1. the GPU's name and driver;
#   2. `native verify --cuda` on every fixture (f32, the CPU's tolerances);
#   3. `bench caption --cuda`, f32 and bf16: greedy 20 tokens and beam 5;
#   4. `bench train --cuda --precision bf16 --batch 32,256`, with and without the feature cache;
#   5. 200 training steps of configs/synth.yaml on synthetic data on the CPU (f32) and on CUDA
#      (f32 and bf16); `bench curves` says whether the loss curves agree;
#   6. `bench webgpu --quant q4,q8` through the NVIDIA Vulkan driver.
set -uo pipefail
cd "$(dirname "$0")/.."
G=${GPU_CHECK_DIR:-.gpu-check}
W=$(mktemp -d)
LOG=${OUT:-$W/out}
mkdir -p "$LOG"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
SUMMARY=()

# part NAME SECONDS CMD...: runs CMD under a time limit, teeing its output to $LOG/NAME.log.
part() {
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  echo "=== $name"
  # Through bash, so that the exported functions below run under the time limit too.
  timeout --kill-after=5 "$limit" bash -c 'set -o pipefail; "$@"' _ "$@" 2>&1 | tee "$LOG/$name.log"
  rc=${PIPESTATUS[0]}
  local verdict="ok"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then verdict="TIMED OUT after ${limit} s"
  elif [ "$rc" != 0 ]; then verdict="FAILED (exit $rc)"; fi
  echo "--- $name: $verdict in $((SECONDS - t0)) s"
  SUMMARY+=("$(printf '%-22s %s' "$name" "$verdict")")
}

gzip -dc "$G/native.gz" >"$W/native" && chmod +x "$W/native"
tar -C "$W" -xzf "$G/shared.tar.gz"
N="$W/native"
export G W N LOG

part gpu 15 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv

verify_all() {
  local failed=0
  for d in "$W"/fixtures/seed/*/; do
    echo "# $(basename "$d")"
    "$N" verify --cuda "$d" || failed=1
  done
  return $failed
}
export -f verify_all
part verify 50 verify_all

caption_bench() {
  "$N" bench caption --cuda --precision f32 --iters 5 --tokens 20 --beam-width 5 &&
    "$N" bench caption --cuda --precision bf16 --iters 5 --tokens 20 --beam-width 5
}
export -f caption_bench
part bench-caption 80 caption_bench

part bench-train 140 "$N" bench train --cuda --precision bf16 --batch 32,256 --steps 3

curves() {
  "$N" synth --out "$W/synth" --train 800 --val 32 --test 0 >/dev/null || return 1
  local d=$W/synth run
  for run in cpu-f32 cuda-f32 cuda-bf16; do
    local dev=cpu prec=f32
    case $run in cuda-*) dev=cuda ;; esac
    case $run in *-bf16) prec=bf16 ;; esac
    "$N" train --device "$dev" --config-path configs --config-name synth.yaml name="$run" \
      trainer.exp_dir="$W/runs" +trainer.max_steps=200 +trainer.precision="$prec" \
      dataset.train_ds.visual_dir="$d/images/train" dataset.train_ds.json_path="$d/train.json" \
      dataset.validation_ds.visual_dir="$d/images/val" dataset.validation_ds.json_path="$d/val.json" \
      dataset.tokenizer="$d/tokenizer.json" | tail -1 || return 1
    cp "$W/runs/$run/metrics.jsonl" "$LOG/$run.metrics.jsonl" 2>/dev/null
  done
  # f32 on two devices differs only in summation order; bf16 by its 8-bit significand.
  echo "# CUDA f32 against the CPU"
  "$N" bench curves "$W/runs/cpu-f32" "$W/runs/cuda-f32" --first-tol 1e-4 --window-tol 0.01
  local a=$?
  echo "# CUDA bf16 against the CPU in f32"
  "$N" bench curves "$W/runs/cpu-f32" "$W/runs/cuda-bf16"
  local b=$?
  [ $a = 0 ] && [ $b = 0 ]
}
export -f curves
part curves 90 curves

webgpu() {
  if ! ls "$G"/gl/*.deb >/dev/null 2>&1; then
    echo "no Vulkan loader was packed (scripts/gpu-pack.sh)"
    return 1
  fi
  for f in "$G"/gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  # The NVIDIA driver's Vulkan ICD lives outside the standard search path on these machines.
  if [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  fi
  "$N" bench webgpu --iters 3 --quant q4,q8
}
export -f webgpu
part bench-webgpu 90 webgpu

echo "=== summary ($SECONDS s)"
printf '%s\n' "${SUMMARY[@]}" | tee "$LOG/summary.txt"
