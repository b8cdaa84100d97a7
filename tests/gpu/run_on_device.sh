#!/usr/bin/env bash
# Build libccnet_plugins.so + host driver for the local GPU, run the GPU tests (marker `gpu`)
# and the kernel benchmark; everything it produces goes under $OUT (default: out/gpu).
#
# The GPU machines have no network and no TensorRT, so the TensorRT headers (used for
# compiling only) must travel with the tree: build once on a machine with network
#   cmake -S . -B build && cmake --build build -j2
# and carry build/_deps/kernel_lens (or set TENSORRT_INCLUDE_DIR / TENSORRT_ROOT).
# Env: OUT, PYTHON (default python3; needs torch with CUDA, numpy, pytest),
#      CCNET_GPU_BUILD_DIR (default build-gpu), CCNET_CUDA_ARCH (default: from nvidia-smi, else 90).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$REPO/out/gpu}"
PYTHON="${PYTHON:-python3}"
BUILD="${CCNET_GPU_BUILD_DIR:-$REPO/build-gpu}"
mkdir -p "$OUT"
cd "$REPO"

# --- TensorRT headers: explicit setting, else the carried kernel-lens headers -------------
CMAKE_TRT_ARGS=()
if [[ -n "${TENSORRT_ROOT:-}" ]]; then
    CMAKE_TRT_ARGS=(-DTENSORRT_ROOT="$TENSORRT_ROOT")
elif [[ -n "${TENSORRT_INCLUDE_DIR:-}" ]]; then
    CMAKE_TRT_ARGS=(-DTENSORRT_INCLUDE_DIR="$TENSORRT_INCLUDE_DIR")
elif [[ -f "$REPO/build/_deps/kernel_lens/include/tensorrt/NvInfer.h" ]]; then
    CMAKE_TRT_ARGS=(-DTENSORRT_INCLUDE_DIR="$REPO/build/_deps/kernel_lens/include/tensorrt")
elif [[ -f "$BUILD/_deps/kernel_lens/include/tensorrt/NvInfer.h" ]]; then
    : # a previous run on this machine already has them; CMake finds them itself
else
    echo "error: no TensorRT headers here and no network to fetch them; run 'cmake -S . -B build' on a" \
         "machine with network first and carry build/_deps/kernel_lens (or set TENSORRT_INCLUDE_DIR)" | tee "$OUT/error.txt" >&2
    exit 2
fi

# --- CUDA architecture of this GPU ----------------------------------------------------------
ARCH="${CCNET_CUDA_ARCH:-}"
if [[ -z "$ARCH" ]] && command -v nvidia-smi >/dev/null; then
    ARCH="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')"
fi
ARCH="${ARCH:-90}"

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: n/a"
    nvcc --version | tail -n1
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
    echo "cuda arch: $ARCH"
} | tee "$OUT/environment.txt"

# --- build ----------------------------------------------------------------------------------
cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
    "${CMAKE_TRT_ARGS[@]}" 2>&1 | tee "$OUT/cmake_configure.log"
cmake --build "$BUILD" -j"$(nproc)" 2>&1 | tee "$OUT/cmake_build.log"
ldd "$BUILD/libccnet_plugins.so" > "$OUT/ldd.txt"

export CCNET_PLUGIN_LIB="$BUILD/libccnet_plugins.so"
export CCNET_PLUGIN_DRIVER="$BUILD/ccnet_plugin_host_driver"

# --- tests: host checks (ctest), host pytest, GPU pytest ----------------------------------------
status=0
(cd "$BUILD" && ctest --output-on-failure) 2>&1 | tee "$OUT/ctest.log" || status=1
"$PYTHON" -m pytest -q -rs -p no:cacheprovider tests/test_plugin_host.py \
    --junitxml="$OUT/pytest_host.xml" 2>&1 | tee "$OUT/pytest_host.log" || status=1
"$PYTHON" -m pytest -q -rs -p no:cacheprovider -m gpu tests/gpu \
    --junitxml="$OUT/pytest_gpu.xml" 2>&1 | tee "$OUT/pytest_gpu.log" || status=1

# --- benchmark ------------------------------------------------------------------------------
"$PYTHON" bench/cca_kernel_bench.py --json "$OUT/cca_kernel_bench.json" 2>&1 | tee "$OUT/cca_kernel_bench.txt" || status=1

echo "results in $OUT (exit status $status)"
exit "$status"
