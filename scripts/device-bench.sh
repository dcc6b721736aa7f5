#!/usr/bin/env bash
# The WebGPU benchmark on the lent GPU machine (issue 6's H100/H200 figure), run there through
# the device tool from the repository root, with `.gl` (the Vulkan loader debs) and
# `target/release/native` carried:
#   here, once: echo /.gl/ >>.git/info/exclude; mkdir -p .gl /tmp/amd64/partial
#     o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#     apt-get $o update; (cd .gl && apt-get $o download libvulkan1)
#     cargo build --release -p native
#   then: run(command="bash scripts/device-bench.sh", carry=[".gl", "target/release/native"])
# Prints the adapter, then ms per caption (greedy and beam 5) and GPU memory for q4 and q8; the
# figures go to BENCHMARKS.md with the adapter's name.
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
# The NVIDIA driver's Vulkan ICD lives outside the standard search path on these machines.
if [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
bin=target/release/native
timeout 420 "$bin" bench webgpu --iters 3 --quant q4,q8
