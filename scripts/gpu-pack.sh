#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs into .gpu-check/ (git-ignored, well under the device
# tool's 64 MB carry): the CUDA build of `native` (gzipped), the ../shared fixtures it verifies,
# and the Vulkan loader for `bench webgpu` on the NVIDIA driver. Run it here, on the development
# machine, from the repository root, with the CUDA 13.0 toolkit installed as
# ../shared/TOOLCHAIN.md says (default: the /opt/cu13 venv). Then, on a lent GPU machine:
#   run(command="bash scripts/gpu-check.sh", carry=[".gpu-check"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
G=.gpu-check
CU=${CU:-$(echo /opt/cu13/lib/python3*/site-packages/nvidia/cu13)}
if [ ! -x "$CU/bin/nvcc" ]; then
  echo "gpu-pack: no CUDA 13.0 nvcc under $CU; install it as ../shared/TOOLCHAIN.md says, or set CU=" >&2
  exit 1
fi

# The toolkit's libraries under the names the linker looks for, and a link-time stub for
# libcuda (the driver's library, which no wheel ships; the GPU machine has the real one).
(cd "$CU/lib" && for l in cudart cublas cublasLt nvrtc; do ln -sf "lib$l.so.13" "lib$l.so"; done \
  && ln -sf libcurand.so.10 libcurand.so && mkdir -p stubs)
if [ ! -e "$CU/lib/stubs/libcuda.so" ]; then
  cargo fetch
  grep -ohE "^pub unsafe fn cu[A-Za-z0-9_]+" ~/.cargo/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs \
    | awk '{print "void "$4"(void){}"}' | sort -u >/tmp/cuda_stub.c
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CU/lib/stubs/libcuda.so" /tmp/cuda_stub.c
fi

# Its own target folder, so that the CPU build here is not rebuilt with other features.
PATH=$CU/bin:$PATH CUDA_HOME=$CU CUDA_ROOT=$CU CUDA_PATH=$CU CUDA_COMPUTE_CAP=90 \
  CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-2} \
  cargo build --release -p native --features cuda --target-dir target/cuda

rm -rf "$G" && mkdir -p "$G/gl"
gzip -9 -c target/cuda/release/native >"$G/native.gz"
tar -C "$SHARED" -czf "$G/shared.tar.gz" fixtures/seed fixtures/hub
# The Vulkan loader (amd64 deb; the machine has the NVIDIA ICD but no loader).
lists=$(mktemp -d)
mkdir -p "$lists/partial"
o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists"
# shellcheck disable=SC2086
apt-get $o update >/dev/null && (cd "$G/gl" && apt-get $o download libvulkan1 >/dev/null) \
  || echo "gpu-pack: the Vulkan loader could not be downloaded; gpu-check skips bench webgpu" >&2
rm -rf "$lists"
size=$(du -sm "$G" | cut -f1)
echo "gpu-pack: $G holds ${size} MB:"
ls -l "$G" "$G/gl"
if [ "$size" -gt 64 ]; then
  echo "gpu-pack: over the device tool's 64 MB carry" >&2
  exit 1
fi
