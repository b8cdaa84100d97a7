// CUDA kernels of the criss-cross attention (CCNet), see ccnet-mmseg-spec.md §2.4.
//
// Design: two passes, only per-pixel softmax statistics in global memory.
// The joint softmax of pixel (h,w) runs over H column logits (its own pixel masked to -inf)
// and W row logits (its own pixel included). Row logits are a GEMM along an image row, column
// logits a GEMM along an image column, so no single tile sees all H+W logits of a pixel.
// Storing the whole N x H x W x (H+W) energy map would cost more traffic than q, k, v and out
// together at 128x256 (12.5 M floats), so instead:
//   pass 1 (line_softmax_stats_kernel, once per branch): per pixel, an online (max, sum of exp)
//          over that branch's logits -> workspace, 2 x float2 per pixel (16 B/pixel).
//   pass 2 (line_aggregate_kernel, once per branch): recompute the energy tiles, turn them into
//          probabilities with the combined statistics of both branches, multiply with value
//          tiles. The row branch writes `out`, the column branch (launched after it on the same
//          stream) adds to it.
// Both branches share one kernel template: a "line" is an image row (pixels 1 element apart)
// or an image column (pixels W elements apart). Energies are computed in 32x32 tiles staged in
// shared memory over 16-channel chunks of q/k; aggregation keeps a 64-channel x 32-pixel output
// tile in registers. All arithmetic is FP32 (FP16 inputs are widened on load).
// Known limits: the column branch reads with a stride of W elements (poorly coalesced), no
// tensor cores are used, and FP16 output is rounded once after the row branch and once after
// the column branch.
#include "cca_kernels.h"
#include "cuda_kernel_support.h"

#include <cuda_fp16.h>
#include <cstdint>
#include <math_constants.h>

namespace
{
using ccnet::launch_kernel;
using ccnet::SharedArray;

constexpr int kThreads = 256;
constexpr int kQueryTile = 32;    // query pixels of one line per block
constexpr int kKeyTile = 32;      // key pixels per inner iteration
constexpr int kChannelChunk = 16; // q/k channels staged per step of the energy GEMM
constexpr int kValueTile = 64;    // output channels per aggregation block

// kThreads threads compute a kQueryTile x kKeyTile energy tile, 4 energies each.
static_assert(kQueryTile * kKeyTile == 4 * kThreads, "energy tile mapping");
// kThreads threads hold a kValueTile x kQueryTile output tile, 8 values each.
static_assert(kValueTile * kQueryTile == 8 * kThreads, "output tile mapping");

struct LineGeometry
{
    int length;            // pixels on one line: W for the row branch, H for the column branch
    long long line_step;   // element offset between neighbouring lines inside one channel plane
    long long pixel_step;  // element offset between neighbouring pixels of one line
    bool exclude_self;     // column branch: a pixel's own logit is -inf
};

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }

__device__ __forceinline__ float warp_max(float x)
{
    for (int offset = 16; offset > 0; offset >>= 1)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
    return x;
}

__device__ __forceinline__ float warp_sum(float x)
{
    for (int offset = 16; offset > 0; offset >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, offset);
    return x;
}

struct EnergySmem
{
    SharedArray<float, kChannelChunk, kQueryTile> query;
    SharedArray<float, kChannelChunk, kKeyTile> key;
    SharedArray<float, kQueryTile, kKeyTile + 1> energy; // +1: column reads by a warp hit distinct banks
};

// energy[i][j] = sum_c q[c, query q0+i] * k[c, key k0+j] along one line; -inf for keys past the
// end of the line and, in the column branch, for the query's own pixel. Ends with a barrier.
template <typename T>
__device__ void compute_energy_tile(T const* query_line, T const* key_line, int cq, long long plane,
    LineGeometry const& g, int q0, int k0, EnergySmem& s)
{
    int const tid = threadIdx.x;
    int const qi = tid >> 3;   // query row of this thread's 4 energies
    int const kj0 = tid & 7;   // key columns kj0, kj0+8, kj0+16, kj0+24
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int c0 = 0; c0 < cq; c0 += kChannelChunk)
    {
        for (int idx = tid; idx < kChannelChunk * kQueryTile; idx += kThreads)
        {
            int const cc = idx / kQueryTile;
            int const p = idx % kQueryTile;
            int const ch = c0 + cc;
            bool const channel_ok = ch < cq;
            s.query[cc][p] = (channel_ok && q0 + p < g.length)
                ? to_float(query_line[ch * plane + (q0 + p) * g.pixel_step]) : 0.f;
            s.key[cc][p] = (channel_ok && k0 + p < g.length)
                ? to_float(key_line[ch * plane + (k0 + p) * g.pixel_step]) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int cc = 0; cc < kChannelChunk; ++cc)
        {
            float const qv = s.query[cc][qi];
#pragma unroll
            for (int r = 0; r < 4; ++r)
                acc[r] = fmaf(qv, s.key[cc][kj0 + 8 * r], acc[r]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < 4; ++r)
    {
        int const kj = kj0 + 8 * r;
        int const key = k0 + kj;
        bool const masked = key >= g.length || (g.exclude_self && key == q0 + qi);
        s.energy[qi][kj] = masked ? -CUDART_INF_F : acc[r];
    }
    __syncthreads();
}

// Pass 1: per pixel, max and sum of exp(logit - max) over this branch's logits.
template <typename T>
__global__ void __launch_bounds__(kThreads) line_softmax_stats_kernel(
    T const* q, T const* k, int cq, long long plane, LineGeometry g, float2* stats)
{
    __shared__ EnergySmem s;
    int const n = blockIdx.z;
    int const line = blockIdx.y;
    int const q0 = blockIdx.x * kQueryTile;
    long long const line_offset = static_cast<long long>(n) * cq * plane + line * g.line_step;
    T const* query_line = q + line_offset;
    T const* key_line = k + line_offset;

    int const warp = threadIdx.x / 32;
    int const lane = threadIdx.x % 32;
    constexpr int kRowsPerWarp = kQueryTile / (kThreads / 32);
    float run_max[kRowsPerWarp];
    float run_sum[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
    {
        run_max[r] = -CUDART_INF_F;
        run_sum[r] = 0.f;
    }

    for (int k0 = 0; k0 < g.length; k0 += kKeyTile)
    {
        compute_energy_tile(query_line, key_line, cq, plane, g, q0, k0, s);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r)
        {
            float const e = s.energy[warp * kRowsPerWarp + r][lane];
            float const tile_max = warp_max(e);
            if (tile_max == -CUDART_INF_F)
                continue; // all masked: nothing to add (and -inf - -inf would be NaN)
            float const new_max = fmaxf(run_max[r], tile_max);
            float const tile_sum = warp_sum(expf(e - new_max));
            run_sum[r] = run_sum[r] * expf(run_max[r] - new_max) + tile_sum;
            run_max[r] = new_max;
        }
        __syncthreads(); // energy is rewritten by the next tile
    }

    if (lane == 0)
    {
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r)
        {
            int const query = q0 + warp * kRowsPerWarp + r;
            if (query < g.length)
                stats[static_cast<long long>(n) * plane + line * g.line_step + query * g.pixel_step]
                    = make_float2(run_max[r], run_sum[r]);
        }
    }
}

// Pass 2: out[c, query] (+)= sum_key softmax(query, key) * v[c, key] along one line.
template <typename T, bool kAccumulate>
__global__ void __launch_bounds__(kThreads) line_aggregate_kernel(T const* q, T const* k, T const* v, T* out,
    int cq, int c, long long plane, LineGeometry g, float2 const* row_stats, float2 const* column_stats)
{
    __shared__ EnergySmem s;
    __shared__ SharedArray<float, kValueTile, kKeyTile + 1> value;
    __shared__ SharedArray<float, kQueryTile> query_max;
    __shared__ SharedArray<float, kQueryTile> query_inv_sum;

    int const query_tiles = (g.length + kQueryTile - 1) / kQueryTile;
    int const q0 = (blockIdx.x % query_tiles) * kQueryTile;
    int const c0 = (blockIdx.x / query_tiles) * kValueTile;
    int const n = blockIdx.z;
    int const line = blockIdx.y;
    long long const line_in_plane = line * g.line_step;
    long long const qk_offset = static_cast<long long>(n) * cq * plane + line_in_plane;
    long long const vo_offset = static_cast<long long>(n) * c * plane + line_in_plane;
    T const* query_line = q + qk_offset;
    T const* key_line = k + qk_offset;
    T const* value_line = v + vo_offset;
    int const tid = threadIdx.x;

    if (tid < kQueryTile)
    {
        int const query = q0 + tid;
        float m = 0.f;
        float inv_sum = 0.f;
        if (query < g.length)
        {
            long long const pixel = static_cast<long long>(n) * plane + line_in_plane + query * g.pixel_step;
            float2 const a = row_stats[pixel];
            float2 const b = column_stats[pixel];
            // The row branch always has a finite logit (its own pixel), so m is finite.
            m = fmaxf(a.x, b.x);
            inv_sum = 1.f / (a.y * expf(a.x - m) + b.y * expf(b.x - m));
        }
        query_max[tid] = m;
        query_inv_sum[tid] = inv_sum;
    }
    __syncthreads();

    int const pq = tid % kQueryTile;   // this thread's query pixel
    int const crow = tid / kQueryTile; // this thread's channels: c0 + crow + 8 * r
    float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};

    for (int k0 = 0; k0 < g.length; k0 += kKeyTile)
    {
        compute_energy_tile(query_line, key_line, cq, plane, g, q0, k0, s);
        for (int idx = tid; idx < kQueryTile * kKeyTile; idx += kThreads)
        {
            int const i = idx / kKeyTile;
            int const j = idx % kKeyTile;
            float const e = s.energy[i][j];
            s.energy[i][j] = (e == -CUDART_INF_F) ? 0.f : expf(e - query_max[i]) * query_inv_sum[i];
        }
        for (int idx = tid; idx < kValueTile * kKeyTile; idx += kThreads)
        {
            int const cc = idx / kKeyTile;
            int const j = idx % kKeyTile;
            int const ch = c0 + cc;
            int const key = k0 + j;
            value[cc][j] = (ch < c && key < g.length) ? to_float(value_line[ch * plane + key * g.pixel_step]) : 0.f;
        }
        __syncthreads();
#pragma unroll 8
        for (int j = 0; j < kKeyTile; ++j)
        {
            float const p = s.energy[pq][j];
#pragma unroll
            for (int r = 0; r < 8; ++r)
                acc[r] = fmaf(value[crow + 8 * r][j], p, acc[r]);
        }
        __syncthreads();
    }

    int const query = q0 + pq;
    if (query >= g.length)
        return;
    T* out_line = out + vo_offset;
#pragma unroll
    for (int r = 0; r < 8; ++r)
    {
        int const ch = c0 + crow + 8 * r;
        if (ch >= c)
            continue;
        T& dst = out_line[ch * plane + query * g.pixel_step];
        dst = kAccumulate ? from_float<T>(to_float(dst) + acc[r]) : from_float<T>(acc[r]);
    }
}

long long ceil_div(long long a, long long b)
{
    return (a + b - 1) / b;
}

constexpr long long kMaxGridX = 2147483647;
constexpr long long kMaxGridYZ = 65535;

// Launch grids of the four kernels for one problem; valid only when ccnet_cca_check_sizes
// accepted the sizes, which keeps every grid inside the GPU's limits.
struct LaunchGrids
{
    dim3 row_stats, column_stats, row_aggregate, column_aggregate;
};

LaunchGrids launch_grids(int n, int c, int h, int w)
{
    long long const channel_tiles = ceil_div(c, kValueTile);
    auto grid = [](long long x, int y, int z) { return dim3(static_cast<unsigned>(x), y, z); };
    return LaunchGrids{grid(ceil_div(w, kQueryTile), h, n), grid(ceil_div(h, kQueryTile), w, n),
        grid(ceil_div(w, kQueryTile) * channel_tiles, h, n), grid(ceil_div(h, kQueryTile) * channel_tiles, w, n)};
}

template <typename T>
int launch_cca(T const* q, T const* k, T const* v, T* out, int n, int cq, int c, int h, int w, float2* stats,
    cudaStream_t stream)
{
    long long const plane = static_cast<long long>(h) * w;
    LineGeometry const rows{w, w, 1, false};
    LineGeometry const columns{h, 1, w, true};
    float2* row_stats = stats;
    float2* column_stats = stats + static_cast<long long>(n) * plane;
    LaunchGrids const grids = launch_grids(n, c, h, w);
    dim3 const block(kThreads);
    launch_kernel(line_softmax_stats_kernel<T>, grids.row_stats, block, stream, q, k, cq, plane, rows, row_stats);
    launch_kernel(line_softmax_stats_kernel<T>, grids.column_stats, block, stream, q, k, cq, plane, columns,
        column_stats);
    // Row branch writes out, the column branch adds to it: same stream, so ordered.
    launch_kernel(line_aggregate_kernel<T, false>, grids.row_aggregate, block, stream, q, k, v, out, cq, c, plane, rows,
        row_stats, column_stats);
    launch_kernel(line_aggregate_kernel<T, true>, grids.column_aggregate, block, stream, q, k, v, out, cq, c, plane,
        columns, row_stats, column_stats);
    return cudaGetLastError() == cudaSuccess ? CCNET_CCA_OK : CCNET_CCA_KERNEL_LAUNCH_FAILED;
}

// a * b * c * d, or false when it does not fit in 63 bits.
bool checked_product(long long a, long long b, long long c, long long d, long long& product)
{
    return !__builtin_mul_overflow(a, b, &product) && !__builtin_mul_overflow(product, c, &product)
        && !__builtin_mul_overflow(product, d, &product);
}
} // namespace

extern "C" int ccnet_cca_check_sizes(int n, int cq, int c, int h, int w)
{
    if (n < 1 || cq < 1 || c < 1 || h < 1 || w < 1)
        return CCNET_CCA_BAD_ARGUMENT;
    if (n > kMaxGridYZ || h > kMaxGridYZ || w > kMaxGridYZ)
        return CCNET_CCA_PROBLEM_TOO_LARGE;
    long long const channel_tiles = ceil_div(c, kValueTile);
    if (ceil_div(w, kQueryTile) * channel_tiles > kMaxGridX || ceil_div(h, kQueryTile) * channel_tiles > kMaxGridX)
        return CCNET_CCA_PROBLEM_TOO_LARGE;
    // Every element offset and byte count of the largest tensor (FP32) must fit in 63 bits.
    long long elements = 0;
    long long bytes = 0;
    int const channels = cq > c ? cq : c;
    if (!checked_product(n, channels, h, w, elements) || __builtin_mul_overflow(elements, 4LL, &bytes))
        return CCNET_CCA_PROBLEM_TOO_LARGE;
    return CCNET_CCA_OK;
}

extern "C" size_t ccnet_cca_workspace_size(int n, int h, int w)
{
    if (n < 1 || h < 1 || w < 1)
        return 0;
    size_t bytes = 0;
    if (__builtin_mul_overflow(static_cast<size_t>(n), static_cast<size_t>(h), &bytes)
        || __builtin_mul_overflow(bytes, static_cast<size_t>(w), &bytes)
        || __builtin_mul_overflow(bytes, 2 * sizeof(float2), &bytes))
        return 0;
    return bytes;
}

extern "C" int ccnet_cca_forward(void const* query, void const* key, void const* value, void* out, int n, int cq,
    int c, int h, int w, int dtype, void* workspace, size_t workspace_bytes, cudaStream_t stream)
{
    if (!query || !key || !value || !out || !workspace)
        return CCNET_CCA_BAD_ARGUMENT;
    if (dtype != CCNET_CCA_FP32 && dtype != CCNET_CCA_FP16)
        return CCNET_CCA_BAD_ARGUMENT;
    int const sizes = ccnet_cca_check_sizes(n, cq, c, h, w);
    if (sizes != CCNET_CCA_OK)
        return sizes;
    if (reinterpret_cast<std::uintptr_t>(workspace) % alignof(float2) != 0)
        return CCNET_CCA_BAD_ARGUMENT;
    size_t const needed = ccnet_cca_workspace_size(n, h, w);
    if (needed == 0)
        return CCNET_CCA_PROBLEM_TOO_LARGE;
    if (workspace_bytes < needed)
        return CCNET_CCA_WORKSPACE_TOO_SMALL;
    auto* stats = static_cast<float2*>(workspace);
    if (dtype == CCNET_CCA_FP16)
        return launch_cca(static_cast<__half const*>(query), static_cast<__half const*>(key),
            static_cast<__half const*>(value), static_cast<__half*>(out), n, cq, c, h, w, stats, stream);
    return launch_cca(static_cast<float const*>(query), static_cast<float const*>(key), static_cast<float const*>(value),
        static_cast<float*>(out), n, cq, c, h, w, stats, stream);
}
