#!/usr/bin/env bash
# The one GPU call. Builds libccnet_plugins.so for the local GPU and libccnet_cca_cpu.so (the
# same sources in the CUDA CPU mode), then runs: ctest (host checks, fuzzers, CPU-mode
# self-tests), the host and CPU-sweep tests, the GPU tests (the CPU sweep's shapes plus the
# CCNet sizes, against the same float64 reference) and the kernel benchmark. Nothing here runs
# the ONNX exporter. Every step runs even when an earlier one fails; each step's output and exit
# status go to one log.
#
# Under $OUT (default: out/gpu), at most 5 files:
#   device_run.log           environment, configure, build, ctest, pytest and benchmark output
#   kernel_correctness.json  every measured relative error: build (cpu/cuda), shape, dtype, softmax
#   pytest_host.xml          junit of the host and CPU tests
#   pytest_gpu.xml           junit of the GPU tests
#   cca_kernel_bench.json    benchmark numbers
#
# The GPU machines have no network and no TensorRT, so the TensorRT headers (used for compiling
# only) must travel with the tree: build once on a machine with network
#   cmake -S . -B build && cmake --build build -j2
# and carry build/_deps/kernel_lens (or set TENSORRT_INCLUDE_DIR / TENSORRT_ROOT).
# Env: OUT, PYTHON (default python3; needs torch with CUDA, numpy, pytest),
#      CCNET_GPU_BUILD_DIR (default build-gpu), CCNET_CUDA_ARCH (default: from nvidia-smi, else 90).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$REPO/out/gpu}"
PYTHON="${PYTHON:-python3}"
BUILD="${CCNET_GPU_BUILD_DIR:-$REPO/build-gpu}"
# The device machine has no editable install: the repository itself is the import root.
export PYTHONPATH="$REPO:$REPO/tests${PYTHONPATH:+:$PYTHONPATH}"
LOG="$OUT/device_run.log"
mkdir -p "$OUT"
rm -f "$LOG" "$OUT/kernel_correctness.json"
cd "$REPO"

status=0
# step <name> <command...>: runs the command, appends its output and exit status to the log.
step() {
    local name="$1"
    shift
    echo "=== $name: $*" | tee -a "$LOG"
    "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit status $rc" | tee -a "$LOG"
    [[ $rc -eq 0 ]] || status=1
    return "$rc"
}

# --- TensorRT headers: explicit setting, else the carried kernel-lens headers -------------
CMAKE_TRT_ARGS=()
if [[ -n "${TENSORRT_ROOT:-}" ]]; then
    CMAKE_TRT_ARGS=(-DTENSORRT_ROOT="$TENSORRT_ROOT")
elif [[ -n "${TENSORRT_INCLUDE_DIR:-}" ]]; then
    CMAKE_TRT_ARGS=(-DTENSORRT_INCLUDE_DIR="$TENSORRT_INCLUDE_DIR")
elif [[ -f "$REPO/build/_deps/kernel_lens/include/tensorrt/NvInfer.h" ]]; then
    CMAKE_TRT_ARGS=(-DTENSORRT_INCLUDE_DIR="$REPO/build/_deps/kernel_lens/include/tensorrt")
elif [[ ! -f "$BUILD/_deps/kernel_lens/include/tensorrt/NvInfer.h" ]]; then
    echo "error: no TensorRT headers here and no network to fetch them; run 'cmake -S . -B build' on a" \
         "machine with network first and carry build/_deps/kernel_lens (or set TENSORRT_INCLUDE_DIR)" | tee -a "$LOG" >&2
    exit 2
fi

# --- CUDA architecture of this GPU ----------------------------------------------------------
ARCH="${CCNET_CUDA_ARCH:-}"
if [[ -z "$ARCH" ]] && command -v nvidia-smi >/dev/null; then
    ARCH="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')"
fi
ARCH="${ARCH:-90}"

environment() {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: n/a"
    nvcc --version | tail -n1
    "$PYTHON" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
    echo "cuda arch: $ARCH"
}
step environment environment

# --- build ------------------------------------------------------------------------------------
if ! step configure cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
        -DCCNET_CUDA=ON "${CMAKE_TRT_ARGS[@]}" \
    || ! step build cmake --build "$BUILD" -j"$(nproc)"; then
    echo "results in $OUT (build failed)"
    exit 1
fi
step ldd ldd "$BUILD/libccnet_plugins.so" "$BUILD/libccnet_cca_cpu.so"

export CCNET_BUILD_DIR="$BUILD"
export CCNET_BUILD_JOBS="$(nproc)"
export CCNET_PLUGIN_LIB="$BUILD/libccnet_plugins.so"
export CCNET_PLUGIN_DRIVER="$BUILD/ccnet_plugin_host_driver"
export CCNET_CORRECTNESS_JSON="$OUT/kernel_correctness.json"

# --- tests ------------------------------------------------------------------------------------
step ctest ctest --test-dir "$BUILD" --output-on-failure
# forward fuzzing of the CUDA library needs the GPU: not part of ctest
step fuzz-forward-cuda "$BUILD/ccnet_plugin_fuzz" "$BUILD/libccnet_plugins.so" forward 5 300
step pytest-host "$PYTHON" -m pytest -q -rs -p no:cacheprovider -m "not gpu and not tensorrt and not slow" \
    tests/test_plugin_host.py tests/test_cca_cpu_kernels.py tests/test_cca_cpu_mode.py \
    --junitxml="$OUT/pytest_host.xml"
step pytest-gpu "$PYTHON" -m pytest -q -rs -p no:cacheprovider -m gpu tests/gpu --junitxml="$OUT/pytest_gpu.xml"

# --- benchmark ------------------------------------------------------------------------------
step bench "$PYTHON" bench/cca_kernel_bench.py --json "$OUT/cca_kernel_bench.json"

echo "results in $OUT (exit status $status)"
exit "$status"
