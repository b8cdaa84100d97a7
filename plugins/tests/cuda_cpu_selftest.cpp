// Checks of the CUDA CPU mode itself (plugins/cuda_cpu), each on a small kernel written the way
// cca_kernels.cu is (launch_kernel, SharedArray, __shared__, __syncthreads, __shfl_xor_sync).
//   ccnet_cuda_cpu_selftest <check>      exit 0 = pass, 1 = fail
//   barrier | shuffle | launch-configuration | shared-per-block
//   half-convert <in.f32> <out.u16>      float32 values -> __float2half_rn bits (compared with
//                                        numpy by tests/test_cca_cpu_mode.py), and back exactly
//   shared-out-of-bounds | divergent-shuffle   must stop the program with a message
#include "cuda_kernel_support.h"

#include <cuda_fp16.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace
{
using ccnet::launch_kernel;
using ccnet::SharedArray;

int gFailures = 0;

void expect(bool condition, char const* what)
{
    if (!condition)
    {
        std::fprintf(stderr, "FAIL: %s\n", what);
        ++gFailures;
    }
}

template <typename T>
std::vector<T> run(std::vector<T> const& initial, void (*kernel)(T*), dim3 grid, dim3 block)
{
    void* device = nullptr;
    cudaMalloc(&device, initial.size() * sizeof(T));
    cudaMemcpy(device, initial.data(), initial.size() * sizeof(T), cudaMemcpyHostToDevice);
    launch_kernel(kernel, grid, block, nullptr, static_cast<T*>(device));
    std::vector<T> result(initial.size());
    cudaMemcpy(result.data(), device, result.size() * sizeof(T), cudaMemcpyDeviceToHost);
    cudaFree(device);
    return result;
}

// Each thread publishes a value, and after the barrier reads its neighbour's; twice, so the
// second round also checks nobody runs ahead into the next write. Threads running one after
// another (no real barrier) would read values not yet written.
__global__ void neighbour_exchange_kernel(int* out)
{
    __shared__ SharedArray<int, 256> values;
    int const t = threadIdx.x;
    int const n = blockDim.x;
    values[t] = 10 * t;
    __syncthreads();
    int const first = values[(t + 1) % n];
    __syncthreads();
    values[t] = first + 1;
    __syncthreads();
    out[t] = values[(t + 1) % n];
}

void checkBarrier()
{
    std::vector<int> const out = run(std::vector<int>(256, -1), neighbour_exchange_kernel, dim3(1), dim3(256));
    bool ok = true;
    for (int t = 0; t < 256; ++t)
        ok = ok && out[t] == 10 * ((t + 2) % 256) + 1;
    expect(ok, "every thread reads what its neighbour published before the barrier");
}

// Butterfly sum: every lane ends with the warp's total only if each shuffle reads the partner's
// value from the same step.
__global__ void warp_sum_kernel(float* out)
{
    int const lane = threadIdx.x % 32;
    float x = static_cast<float>(lane + 32 * (threadIdx.x / 32));
    for (int offset = 16; offset > 0; offset >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, offset);
    out[threadIdx.x] = x;
}

// Lanes swap with their partner (lane ^ 1) and immediately swap again: a lane must get the
// partner's value of this exchange, not one written by the partner for the next exchange.
__global__ void swap_twice_kernel(float* out)
{
    float const mine = static_cast<float>(threadIdx.x);
    float const partner = __shfl_xor_sync(0xffffffffu, mine, 1);
    float const back = __shfl_xor_sync(0xffffffffu, partner + 1000.f, 1);
    // width 8: lane ^ 8 lies in a later group of 8 for lanes 0-7, 16-23: they keep their own value.
    float const grouped = __shfl_xor_sync(0xffffffffu, mine, 8, 8);
    out[3 * threadIdx.x] = partner;
    out[3 * threadIdx.x + 1] = back;
    out[3 * threadIdx.x + 2] = grouped;
}

void checkShuffle()
{
    std::vector<float> const sums = run(std::vector<float>(128, -1.f), warp_sum_kernel, dim3(1), dim3(128));
    bool ok = true;
    for (int t = 0; t < 128; ++t)
    {
        int const warp = t / 32;
        ok = ok && sums[t] == static_cast<float>(496 + 32 * 32 * warp);
    }
    expect(ok, "butterfly sum over __shfl_xor_sync gives every lane the warp total");

    std::vector<float> const swaps = run(std::vector<float>(3 * 64, -1.f), swap_twice_kernel, dim3(1), dim3(64));
    ok = true;
    for (int t = 0; t < 64; ++t)
    {
        ok = ok && swaps[3 * t] == static_cast<float>(t ^ 1);
        ok = ok && swaps[3 * t + 1] == static_cast<float>(t + 1000);
    }
    expect(ok, "consecutive shuffles exchange the values of their own step");
    // In CUDA, width 8 confines lanes to groups of 8; a source in a later group returns the
    // lane's own value. lane ^ 8 is always outside the lane's own group of 8.
    ok = true;
    for (int t = 0; t < 64; ++t)
    {
        int const lane = t % 32;
        int const source = lane ^ 8;
        float const expected = source / 8 > lane / 8 ? static_cast<float>(t) : static_cast<float>(t - lane + source);
        ok = ok && swaps[3 * t + 2] == expected;
    }
    expect(ok, "width-8 shuffles read only from the lane's own or earlier groups");
}

// Every thread of a 3-D grid of 3-D blocks records its global linear id once, and the grid and
// block shapes it sees.
__global__ void coordinates_kernel(int* out)
{
    unsigned const bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    unsigned const tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned const threadsPerBlock = blockDim.x * blockDim.y * blockDim.z;
    unsigned const id = bx * threadsPerBlock + tx;
    out[2 * id] += 1;
    out[2 * id + 1] = static_cast<int>(gridDim.x * 1000000 + gridDim.y * 10000 + gridDim.z * 100 + blockDim.x * 10
        + blockDim.y + blockDim.z * 1000);
}

__global__ void increment_kernel(int* out)
{
    out[0] += 1;
}

void checkLaunchConfiguration()
{
    dim3 const grid(2, 3, 4);
    dim3 const block(4, 3, 2);
    int const total = 24 * 24;
    std::vector<int> const out = run(std::vector<int>(2 * total, 0), coordinates_kernel, grid, block);
    bool ok = true;
    for (int id = 0; id < total; ++id)
        ok = ok && out[2 * id] == 1 && out[2 * id + 1] == 2000000 + 30000 + 400 + 40 + 3 + 2000;
    expect(ok, "each thread of a 3-D grid runs exactly once and sees gridDim/blockDim");
    expect(cudaGetLastError() == cudaSuccess, "a valid launch leaves no error");

    // Configurations every GPU refuses: nothing runs, cudaGetLastError reports it once.
    dim3 const refused[][2] = {{dim3(1), dim3(1025)}, {dim3(1), dim3(32, 32, 2)}, {dim3(1), dim3(1, 1, 65)},
        {dim3(1, 65536), dim3(32)}, {dim3(1, 1, 65536), dim3(32)}, {dim3(0), dim3(32)}, {dim3(1), dim3(0)}};
    for (auto const& config : refused)
    {
        std::vector<int> const counter = run(std::vector<int>(1, 0), increment_kernel, config[0], config[1]);
        expect(counter[0] == 0, "a refused launch runs nothing");
        expect(cudaGetLastError() == cudaErrorInvalidConfiguration, "a refused launch sets cudaErrorInvalidConfiguration");
        expect(cudaGetLastError() == cudaSuccess, "cudaGetLastError clears the error");
    }
    std::vector<int> const big = run(std::vector<int>(1, 0), increment_kernel, dim3(1), dim3(1024));
    expect(big[0] >= 1 && cudaGetLastError() == cudaSuccess, "1024 threads per block are accepted");
}

// Blocks run concurrently on several workers: each block's __shared__ copy must be its own.
__global__ void shared_per_block_kernel(int* out)
{
    __shared__ SharedArray<int, 64> tag;
    tag[threadIdx.x] = static_cast<int>(blockIdx.x);
    __syncthreads();
    int mismatches = 0;
    for (int i = 0; i < 64; ++i)
        mismatches += tag[i] != static_cast<int>(blockIdx.x);
    __syncthreads();
    if (threadIdx.x == 0)
        out[blockIdx.x] = mismatches;
}

void checkSharedPerBlock()
{
    std::vector<int> const out = run(std::vector<int>(512, -1), shared_per_block_kernel, dim3(512), dim3(64));
    bool ok = true;
    for (int mismatches : out)
        ok = ok && mismatches == 0;
    expect(ok, "every block sees only its own __shared__ memory");
}

__global__ void out_of_bounds_kernel(float* out)
{
    __shared__ SharedArray<float, 32> values;
    values[threadIdx.x] = 1.f; // 33 threads: thread 32 is one past the end
    __syncthreads();
    out[threadIdx.x] = values[threadIdx.x % 32];
}

__global__ void divergent_shuffle_kernel(float* out)
{
    float x = 1.f;
    if (threadIdx.x < 16)
        x = __shfl_xor_sync(0xffffffffu, x, 1);
    out[threadIdx.x] = x;
}

int halfConvert(char const* inPath, char const* outPath)
{
    std::ifstream in(inPath, std::ios::binary);
    std::vector<char> const bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t const count = bytes.size() / sizeof(float);
    std::vector<std::uint16_t> halves(count);
    for (size_t i = 0; i < count; ++i)
    {
        float value;
        std::memcpy(&value, bytes.data() + i * sizeof(float), sizeof(float));
        __half const h = __float2half_rn(value);
        std::memcpy(&halves[i], &h, sizeof(std::uint16_t));
        // Widening back is exact: the same bits must come out of a second rounding.
        __half const again = __float2half_rn(__half2float(h));
        if (std::memcmp(&again, &h, sizeof(h)) != 0 && halves[i] != 0x7FFF)
        {
            std::fprintf(stderr, "FAIL: half 0x%04x does not survive __half2float\n", halves[i]);
            return 1;
        }
    }
    std::ofstream(outPath, std::ios::binary)
        .write(reinterpret_cast<char const*>(halves.data()), static_cast<std::streamsize>(count * 2));
    return 0;
}
} // namespace

int main(int argc, char** argv)
{
    std::string const check = argc > 1 ? argv[1] : "";
    if (check == "barrier")
        checkBarrier();
    else if (check == "shuffle")
        checkShuffle();
    else if (check == "launch-configuration")
        checkLaunchConfiguration();
    else if (check == "shared-per-block")
        checkSharedPerBlock();
    else if (check == "half-convert" && argc == 4)
        return halfConvert(argv[2], argv[3]);
    else if (check == "shared-out-of-bounds")
        run(std::vector<float>(64, 0.f), out_of_bounds_kernel, dim3(1), dim3(33));
    else if (check == "divergent-shuffle")
        run(std::vector<float>(32, 0.f), divergent_shuffle_kernel, dim3(1), dim3(32));
    else
    {
        std::fprintf(stderr, "usage: %s barrier|shuffle|launch-configuration|shared-per-block|"
                             "half-convert <in> <out>|shared-out-of-bounds|divergent-shuffle\n", argv[0]);
        return 2;
    }
    std::fprintf(stderr, "%s: %s\n", check.c_str(), gFailures ? "FAILED" : "ok");
    return gFailures ? 1 : 0;
}
