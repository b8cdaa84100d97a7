// CUDA kernels of the criss-cross attention (CCNet), see docs/mmseg-inference.md.
//
// The joint softmax of pixel (h,w) runs over H column logits (its own pixel masked to -inf)
// and W row logits (its own pixel included); out = sum over both lines of probability x value.
// Per image row the row branch is a small GEMM (W queries x W keys), per image column the
// column branch is one (H x H); no tile sees all H+W logits of a pixel, so:
//   1. line_softmax_stats_kernel (per branch): per pixel, an online (max, sum of exp) over that
//      branch's logits -> workspace (2 x float2 per pixel).
//   2. line_probabilities_kernel (per branch): the logits again (Cq is C/8: cheap next to the
//      aggregation), turned into probabilities with the joint statistics of both branches ->
//      workspace, one float per (pixel, key): N x H x W x (H + W) floats.
//   3. line_aggregate_kernel (per branch): out (+)= value x probabilities, a register-tiled
//      GEMM: each thread keeps an 8-channel x 8-query tile (64 FMAs per 16 shared-memory
//      loads), each block up to 256 channels, so the probabilities are read a few times instead
//      of recomputed per channel tile. The row branch writes `out`, the column branch (same
//      stream, after it) adds to it.
// A "line" is an image row (pixels 1 element apart, lines W apart) or an image column (pixels
// W apart, lines 1 apart). Column-branch blocks take 8 neighbouring columns, so every global
// load and store of the column branch touches 8 consecutive elements instead of one element
// per W-strided row. All arithmetic is FP32 (FP16 inputs are widened on load, probabilities are
// stored as FP32). Limits: no tensor cores; FP16 output is rounded once after the row branch
// and once after the column branch.
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

struct LineGeometry
{
    int length;            // pixels on one line: W for the row branch, H for the column branch
    int lines;             // lines per image: H for the row branch, W for the column branch
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

// acc[r][s] += a[r] * b[s]: one register tile step of a GEMM.
template <int R, int S>
__device__ __forceinline__ void accumulate_outer_product(float (&acc)[R][S], float const (&a)[R], float const (&b)[S])
{
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int s = 0; s < S; ++s)
            acc[r][s] = fmaf(a[r], b[s], acc[r][s]);
}

// ---- logits ------------------------------------------------------------------------------
// A block covers kEnergySlots query pixels: kLines neighbouring lines x (kEnergySlots / kLines)
// queries per line, slot s = query * kLines + line (lines vary fastest: neighbouring columns
// are neighbouring addresses). Each thread computes 4 queries x 4 keys of one line per key tile.
constexpr int kEnergySlots = 64;
constexpr int kEnergyKeys = 64;    // keys per tile
constexpr int kEnergyChunk = 16;   // q/k channels staged per step
constexpr int kKeyGroups = kEnergyKeys / 4;
static_assert(kThreads == kKeyGroups * (kEnergySlots / 4), "energy tile mapping: 4 x 4 logits per thread");

// 16-byte aligned shared tiles, so that each thread's 4 or 8 neighbouring values can be read
// with vector loads.
template <int kLines>
struct alignas(16) EnergyStage
{
    SharedArray<float, kEnergyChunk, kEnergySlots> query;           // [channel][slot]
    SharedArray<float, kEnergyChunk, kLines, kEnergyKeys + 4> key;  // [channel][line][key]
};

template <int kLines>
struct EnergyThread
{
    static constexpr int kQueries = kEnergySlots / kLines; // per line and block
    int key_group;   // keys key_group * 4 ... + 3 of the tile
    int line;        // line of the block
    int query_group; // queries query_group * 4 ... + 3 of the line

    __device__ explicit EnergyThread(int tid)
        : key_group(tid % kKeyGroups), line((tid / kKeyGroups) % kLines), query_group(tid / kKeyGroups / kLines)
    {
    }
};

// e[i][j] = q(query q0 + 4 * query_group + i) . k(key k0 + 4 * key_group + j) on this thread's
// line; -inf for keys past the line's end and, in the column branch, for the query's own pixel.
// `query_line` and `key_line` point at line `line0` of this image.
template <typename T, int kLines>
__device__ void compute_energies(T const* query_line, T const* key_line, int cq, long long plane, LineGeometry const& g,
    int line0, int q0, int k0, EnergyStage<kLines>& s, float (&e)[4][4])
{
    int const tid = threadIdx.x;
    EnergyThread<kLines> const me(tid);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
            e[i][j] = 0.f;
    for (int c0 = 0; c0 < cq; c0 += kEnergyChunk)
    {
        for (int idx = tid; idx < kEnergyChunk * kEnergySlots; idx += kThreads)
        {
            int const cc = idx / kEnergySlots;
            int const slot = idx % kEnergySlots;
            int const line = slot % kLines;
            int const query = q0 + slot / kLines;
            bool const valid = c0 + cc < cq && line0 + line < g.lines && query < g.length;
            s.query[cc][slot] = valid
                ? to_float(query_line[(c0 + cc) * plane + line * g.line_step + query * g.pixel_step])
                : 0.f;
        }
        for (int idx = tid; idx < kEnergyChunk * kLines * kEnergyKeys; idx += kThreads)
        {
            // The index that is 1 element apart in memory varies fastest: keys in the row
            // branch (one line per block), lines in the column branch.
            int const line = idx % kLines;
            int const kj = (idx / kLines) % kEnergyKeys;
            int const cc = idx / (kLines * kEnergyKeys);
            int const key = k0 + kj;
            bool const valid = c0 + cc < cq && line0 + line < g.lines && key < g.length;
            s.key[cc][line][kj] = valid
                ? to_float(key_line[(c0 + cc) * plane + line * g.line_step + key * g.pixel_step])
                : 0.f;
        }
        __syncthreads();
#pragma unroll 4
        for (int cc = 0; cc < kEnergyChunk; ++cc)
        {
            float qv[4];
            float kv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i)
                qv[i] = s.query[cc][(me.query_group * 4 + i) * kLines + me.line];
#pragma unroll
            for (int j = 0; j < 4; ++j)
                kv[j] = s.key[cc][me.line][me.key_group * 4 + j];
            accumulate_outer_product(e, qv, kv);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
    {
        int const query = q0 + me.query_group * 4 + i;
#pragma unroll
        for (int j = 0; j < 4; ++j)
        {
            int const key = k0 + me.key_group * 4 + j;
            if (key >= g.length || (g.exclude_self && key == query))
                e[i][j] = -CUDART_INF_F;
        }
    }
}

// Online softmax statistics: (max, sum of exp(logit - max)); merging with an empty side keeps
// the other (-inf - -inf would be NaN).
struct SoftmaxStats
{
    float max;
    float sum;
};

__device__ __forceinline__ SoftmaxStats merge(SoftmaxStats a, SoftmaxStats b)
{
    if (b.max == -CUDART_INF_F)
        return a;
    if (a.max == -CUDART_INF_F)
        return b;
    float const m = fmaxf(a.max, b.max);
    return SoftmaxStats{m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}

// Pass 1: per pixel, max and sum of exp(logit - max) over this branch's logits. Each thread
// keeps running statistics over its own keys; the 16 key groups of a query (16 neighbouring
// lanes) merge them once at the end.
template <typename T, int kLines>
__global__ void __launch_bounds__(kThreads) line_softmax_stats_kernel(
    T const* q, T const* k, int cq, long long plane, LineGeometry g, float2* stats)
{
    __shared__ EnergyStage<kLines> s;
    int const n = blockIdx.z;
    int const line0 = blockIdx.y * kLines;
    int const q0 = blockIdx.x * EnergyThread<kLines>::kQueries;
    long long const offset = static_cast<long long>(n) * cq * plane + line0 * g.line_step;
    EnergyThread<kLines> const me(threadIdx.x);

    SoftmaxStats running[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
        running[i] = SoftmaxStats{-CUDART_INF_F, 0.f};
    for (int k0 = 0; k0 < g.length; k0 += kEnergyKeys)
    {
        float e[4][4];
        compute_energies(q + offset, k + offset, cq, plane, g, line0, q0, k0, s, e);
#pragma unroll
        for (int i = 0; i < 4; ++i)
        {
            float const tile_max = fmaxf(fmaxf(e[i][0], e[i][1]), fmaxf(e[i][2], e[i][3]));
            if (tile_max == -CUDART_INF_F)
                continue;
            float sum = 0.f;
#pragma unroll
            for (int j = 0; j < 4; ++j)
                sum += expf(e[i][j] - tile_max);
            running[i] = merge(running[i], SoftmaxStats{tile_max, sum});
        }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
    {
        for (int offset_lanes = kKeyGroups / 2; offset_lanes > 0; offset_lanes >>= 1)
        {
            SoftmaxStats const other{__shfl_xor_sync(0xffffffffu, running[i].max, offset_lanes),
                __shfl_xor_sync(0xffffffffu, running[i].sum, offset_lanes)};
            running[i] = merge(running[i], other);
        }
    }
    int const line = line0 + me.line;
    if (me.key_group != 0 || line >= g.lines)
        return;
#pragma unroll
    for (int i = 0; i < 4; ++i)
    {
        int const query = q0 + me.query_group * 4 + i;
        if (query < g.length)
            stats[static_cast<long long>(n) * plane + line * g.line_step + query * g.pixel_step]
                = make_float2(running[i].max, running[i].sum);
    }
}

// Pass 2: probabilities of this branch's logits under the joint softmax of both branches,
// stored line by line: probs[((n * lines + line) * length + query) * length + key].
template <typename T, int kLines>
__global__ void __launch_bounds__(kThreads) line_probabilities_kernel(T const* q, T const* k, int cq,
    long long plane, LineGeometry g, float2 const* row_stats, float2 const* column_stats, float* probs)
{
    __shared__ EnergyStage<kLines> s;
    int const n = blockIdx.z;
    int const line0 = blockIdx.y * kLines;
    int const q0 = blockIdx.x * EnergyThread<kLines>::kQueries;
    long long const offset = static_cast<long long>(n) * cq * plane + line0 * g.line_step;
    EnergyThread<kLines> const me(threadIdx.x);
    int const line = line0 + me.line;

    float max_logit[4];
    float inv_sum[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
    {
        int const query = q0 + me.query_group * 4 + i;
        max_logit[i] = 0.f;
        inv_sum[i] = 0.f;
        if (query < g.length && line < g.lines)
        {
            long long const pixel = static_cast<long long>(n) * plane + line * g.line_step + query * g.pixel_step;
            float2 const a = row_stats[pixel];
            float2 const b = column_stats[pixel];
            // The row branch always has a finite logit (the pixel's own), so the max is finite.
            max_logit[i] = fmaxf(a.x, b.x);
            inv_sum[i] = 1.f / (a.y * expf(a.x - max_logit[i]) + b.y * expf(b.x - max_logit[i]));
        }
    }
    for (int k0 = 0; k0 < g.length; k0 += kEnergyKeys)
    {
        float e[4][4];
        compute_energies(q + offset, k + offset, cq, plane, g, line0, q0, k0, s, e);
        if (line >= g.lines)
            continue;
#pragma unroll
        for (int i = 0; i < 4; ++i)
        {
            int const query = q0 + me.query_group * 4 + i;
            if (query >= g.length)
                continue;
            float* row = probs + ((static_cast<long long>(n) * g.lines + line) * g.length + query) * g.length;
#pragma unroll
            for (int j = 0; j < 4; ++j)
            {
                int const key = k0 + me.key_group * 4 + j;
                if (key < g.length)
                    row[key] = e[i][j] == -CUDART_INF_F ? 0.f : expf(e[i][j] - max_logit[i]) * inv_sum[i];
            }
        }
    }
}

// ---- aggregation ---------------------------------------------------------------------------
// A block computes out[c0 .. c0 + kChannels) x (kLines lines x kQueries queries); each thread an
// 8-channel x 8-query tile of one line, over key tiles of kKeys staged in shared memory.
template <int kLinesPerBlock, int kQueriesPerLine, int kChannelsPerBlock, int kKeysPerStep>
struct AggregateShape
{
    static constexpr int kLines = kLinesPerBlock;
    static constexpr int kQueries = kQueriesPerLine;
    static constexpr int kChannels = kChannelsPerBlock;
    static constexpr int kKeys = kKeysPerStep;
    static constexpr int kChannelGroups = kChannels / 8;
    static constexpr int kQueryGroups = kQueries / 8;
    static_assert(kLines * kChannelGroups * kQueryGroups == kThreads, "aggregate tile mapping: 8 x 8 per thread");
};

// Row branch: one line per block, 64 queries x 256 channels, 16 keys per step. Column branch: 8
// neighbouring columns x 32 queries x 64 channels, 8 keys per step (its shared tiles hold 8
// lines). Both stay under the 48 KB of static shared memory.
using RowAggregate = AggregateShape<1, 64, 256, 16>;
using ColumnAggregate = AggregateShape<8, 32, 64, 8>;
constexpr int kRowEnergyLines = 1;
constexpr int kColumnEnergyLines = 8;

template <typename Shape>
struct alignas(16) AggregateStage
{
    // +4: rows stay 16-byte aligned while neighbouring lines start in different banks.
    SharedArray<float, Shape::kKeys, Shape::kLines, Shape::kChannels + 4> value; // [key][line][channel]
    SharedArray<float, Shape::kKeys, Shape::kLines, Shape::kQueries + 4> prob;   // [key][line][query]
};

// Pass 3: out[c, line, query] (+)= sum_key probs[line, query, key] * v[c, line, key].
template <typename T, typename Shape, bool kAccumulate>
__global__ void __launch_bounds__(kThreads, 2) line_aggregate_kernel(
    T const* v, T* out, int c, long long plane, LineGeometry g, float const* probs)
{
    constexpr int kLines = Shape::kLines;
    constexpr int kQueries = Shape::kQueries;
    constexpr int kChannels = Shape::kChannels;
    constexpr int kKeys = Shape::kKeys;
    __shared__ AggregateStage<Shape> s;
    auto& value = s.value;
    auto& prob = s.prob;

    int const query_tiles = (g.length + kQueries - 1) / kQueries;
    int const q0 = (blockIdx.x % query_tiles) * kQueries;
    int const c0 = (blockIdx.x / query_tiles) * kChannels;
    int const n = blockIdx.z;
    int const line0 = blockIdx.y * kLines;
    long long const image_offset = static_cast<long long>(n) * c * plane + line0 * g.line_step;
    T const* value_lines = v + image_offset;
    float const* prob_lines = probs + (static_cast<long long>(n) * g.lines + line0) * g.length * g.length;

    int const tid = threadIdx.x;
    int const my_line = tid % kLines;
    int const channel_group = (tid / kLines) % Shape::kChannelGroups;
    int const query_group = tid / kLines / Shape::kChannelGroups;

    float acc[8][8];
#pragma unroll
    for (int r = 0; r < 8; ++r)
#pragma unroll
        for (int s = 0; s < 8; ++s)
            acc[r][s] = 0.f;

    for (int k0 = 0; k0 < g.length; k0 += kKeys)
    {
        for (int idx = tid; idx < kKeys * kLines * kChannels; idx += kThreads)
        {
            // Memory order: keys are 1 element apart in the row branch (kLines == 1), lines in
            // the column branch; that index varies fastest.
            int line, kj, ch;
            if (kLines == 1)
            {
                line = 0;
                kj = idx % kKeys;
                ch = idx / kKeys;
            }
            else
            {
                line = idx % kLines;
                kj = (idx / kLines) % kKeys;
                ch = idx / (kLines * kKeys);
            }
            int const key = k0 + kj;
            bool const valid = c0 + ch < c && line0 + line < g.lines && key < g.length;
            value[kj][line][ch]
                = valid ? to_float(value_lines[(c0 + ch) * plane + line * g.line_step + key * g.pixel_step]) : 0.f;
        }
        for (int idx = tid; idx < kKeys * kLines * kQueries; idx += kThreads)
        {
            int const kj = idx % kKeys;
            int const query = (idx / kKeys) % kQueries;
            int const line = idx / (kKeys * kQueries);
            int const key = k0 + kj;
            bool const valid = line0 + line < g.lines && q0 + query < g.length && key < g.length;
            prob[kj][line][query]
                = valid ? prob_lines[(static_cast<long long>(line) * g.length + q0 + query) * g.length + key] : 0.f;
        }
        __syncthreads();
#pragma unroll 4
        for (int kj = 0; kj < kKeys; ++kj)
        {
            float a[8];
            float b[8];
#pragma unroll
            for (int r = 0; r < 8; ++r)
                a[r] = value[kj][my_line][channel_group * 8 + r];
#pragma unroll
            for (int s = 0; s < 8; ++s)
                b[s] = prob[kj][my_line][query_group * 8 + s];
            accumulate_outer_product(acc, a, b);
        }
        __syncthreads();
    }

    int const line = line0 + my_line;
    if (line >= g.lines)
        return;
    T* out_line = out + static_cast<long long>(n) * c * plane + line * g.line_step;
#pragma unroll
    for (int r = 0; r < 8; ++r)
    {
        int const ch = c0 + channel_group * 8 + r;
        if (ch >= c)
            continue;
#pragma unroll
        for (int s = 0; s < 8; ++s)
        {
            int const query = q0 + query_group * 8 + s;
            if (query >= g.length)
                continue;
            T& dst = out_line[ch * plane + query * g.pixel_step];
            dst = kAccumulate ? from_float<T>(to_float(dst) + acc[r][s]) : from_float<T>(acc[r][s]);
        }
    }
}

long long ceil_div(long long a, long long b)
{
    return (a + b - 1) / b;
}

constexpr long long kMaxGridX = 2147483647;
constexpr long long kMaxGridYZ = 65535;

// Launch grids of the six kernel launches (four grids: the statistics and probability kernels of a
// branch share its energy grid); valid only when ccnet_cca_check_sizes accepted the sizes,
// which keeps every grid inside the GPU's limits.
struct LaunchGrids
{
    dim3 row_energy, column_energy, row_aggregate, column_aggregate;
};

LaunchGrids launch_grids(int n, int c, int h, int w)
{
    auto grid = [](long long x, long long y, int z) {
        return dim3(static_cast<unsigned>(x), static_cast<unsigned>(y), static_cast<unsigned>(z));
    };
    return LaunchGrids{
        grid(ceil_div(w, EnergyThread<kRowEnergyLines>::kQueries), ceil_div(h, kRowEnergyLines), n),
        grid(ceil_div(h, EnergyThread<kColumnEnergyLines>::kQueries), ceil_div(w, kColumnEnergyLines), n),
        grid(ceil_div(w, RowAggregate::kQueries) * ceil_div(c, RowAggregate::kChannels), h, n),
        grid(ceil_div(h, ColumnAggregate::kQueries) * ceil_div(c, ColumnAggregate::kChannels),
            ceil_div(w, ColumnAggregate::kLines), n)};
}

// Workspace layout: row statistics, column statistics (float2 per pixel each), then the row
// branch's probabilities (N x H x W x W floats) and the column branch's (N x W x H x H).
struct WorkspaceLayout
{
    long long pixels;
    long long row_probs;
    long long column_probs;
};

WorkspaceLayout workspace_layout(int n, int h, int w)
{
    long long const pixels = static_cast<long long>(n) * h * w;
    return WorkspaceLayout{pixels, pixels * w, pixels * h};
}

template <typename T>
int launch_cca(T const* q, T const* k, T const* v, T* out, int n, int cq, int c, int h, int w, void* workspace,
    cudaStream_t stream)
{
    long long const plane = static_cast<long long>(h) * w;
    LineGeometry const rows{w, h, w, 1, false};
    LineGeometry const columns{h, w, 1, w, true};
    WorkspaceLayout const layout = workspace_layout(n, h, w);
    float2* row_stats = static_cast<float2*>(workspace);
    float2* column_stats = row_stats + layout.pixels;
    float* row_probs = reinterpret_cast<float*>(column_stats + layout.pixels);
    float* column_probs = row_probs + layout.row_probs;
    LaunchGrids const grids = launch_grids(n, c, h, w);
    dim3 const block(kThreads);

    launch_kernel(line_softmax_stats_kernel<T, kRowEnergyLines>, grids.row_energy, block, stream, q, k, cq, plane, rows,
        row_stats);
    launch_kernel(line_softmax_stats_kernel<T, kColumnEnergyLines>, grids.column_energy, block, stream, q, k, cq, plane,
        columns, column_stats);
    launch_kernel(line_probabilities_kernel<T, kRowEnergyLines>, grids.row_energy, block, stream, q, k, cq, plane, rows,
        row_stats, column_stats, row_probs);
    launch_kernel(line_probabilities_kernel<T, kColumnEnergyLines>, grids.column_energy, block, stream, q, k, cq, plane,
        columns, row_stats, column_stats, column_probs);
    // Row branch writes out, the column branch adds to it: same stream, so ordered.
    launch_kernel(line_aggregate_kernel<T, RowAggregate, false>, grids.row_aggregate, block, stream, v, out, c, plane,
        rows, row_probs);
    launch_kernel(line_aggregate_kernel<T, ColumnAggregate, true>, grids.column_aggregate, block, stream, v, out, c,
        plane, columns, column_probs);
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
    if (ceil_div(w, RowAggregate::kQueries) * ceil_div(c, RowAggregate::kChannels) > kMaxGridX
        || ceil_div(h, ColumnAggregate::kQueries) * ceil_div(c, ColumnAggregate::kChannels) > kMaxGridX)
        return CCNET_CCA_PROBLEM_TOO_LARGE;
    // Every element offset and byte count of the largest tensor (FP32) must fit in 63 bits.
    long long elements = 0;
    long long bytes = 0;
    int const channels = cq > c ? cq : c;
    if (!checked_product(n, channels, h, w, elements) || __builtin_mul_overflow(elements, 4LL, &bytes))
        return CCNET_CCA_PROBLEM_TOO_LARGE;
    if (ccnet_cca_workspace_size(n, h, w) == 0)
        return CCNET_CCA_PROBLEM_TOO_LARGE;
    return CCNET_CCA_OK;
}

extern "C" size_t ccnet_cca_workspace_size(int n, int h, int w)
{
    if (n < 1 || h < 1 || w < 1)
        return 0;
    // Per pixel: two float2 statistics and one float per key of its row and of its column.
    long long per_pixel = 0;
    long long pixels = 0;
    long long bytes = 0;
    if (__builtin_add_overflow(static_cast<long long>(h), static_cast<long long>(w), &per_pixel)
        || __builtin_mul_overflow(per_pixel, static_cast<long long>(sizeof(float)), &per_pixel)
        || __builtin_add_overflow(per_pixel, static_cast<long long>(2 * sizeof(float2)), &per_pixel)
        || !checked_product(n, h, w, 1, pixels) || __builtin_mul_overflow(pixels, per_pixel, &bytes))
        return 0;
    return static_cast<size_t>(bytes);
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
    if (workspace_bytes < ccnet_cca_workspace_size(n, h, w))
        return CCNET_CCA_WORKSPACE_TOO_SMALL;
    if (dtype == CCNET_CCA_FP16)
        return launch_cca(static_cast<__half const*>(query), static_cast<__half const*>(key),
            static_cast<__half const*>(value), static_cast<__half*>(out), n, cq, c, h, w, workspace, stream);
    return launch_cca(static_cast<float const*>(query), static_cast<float const*>(key), static_cast<float const*>(value),
        static_cast<float*>(out), n, cq, c, h, w, workspace, stream);
}
