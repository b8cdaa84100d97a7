// The device side of the CUDA CPU mode: what nvcc gives a kernel source implicitly, so that
// the same kernel source compiles with the host C++ compiler and runs on the CPU with CUDA's
// semantics. Every thread of a block runs as a fiber; __syncthreads() and the warp shuffles
// are real rendezvous points (plugins/cuda_cpu/src/block_runner.cpp); blocks run on a pool
// of worker threads (grid_launcher.cpp). __shared__ variables are per block because one
// worker runs one block at a time.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <math.h>

#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
// All fibers of a block run on the worker thread that owns the block, and a worker runs one
// block at a time: a thread_local is exactly one copy per running block.
#define __shared__ static thread_local

namespace ccnet::cuda_cpu
{
uint3 threadIndex();
uint3 blockIndex();
dim3 blockDimension();
dim3 gridDimension();
void syncThreads();
std::uint64_t shuffleXorBits(std::uint64_t bits, unsigned int mask, int laneMask, int width);
[[noreturn]] void sharedIndexOutOfRange(long long index, long long extent);

// Type-erased kernel call: invoke(closure) runs the kernel body for the current thread.
struct KernelInvocation
{
    void (*invoke)(void const* closure);
    void const* closure;
};

// Runs every block of the grid and returns when all are done. A launch configuration the
// GPU would refuse runs nothing and sets cudaErrorInvalidConfiguration (cudaGetLastError).
void launchGrid(KernelInvocation const& kernel, dim3 grid, dim3 block);

// Bounds-checked array for __shared__ memory: an index outside the array stops the program
// with the block and thread that used it, where the GPU would silently read a neighbour.
template <typename T, int N>
struct CheckedArray
{
    T items[N];

    T& operator[](long long index)
    {
        if (index < 0 || index >= N)
            sharedIndexOutOfRange(index, N);
        return items[index];
    }
    T const& operator[](long long index) const
    {
        if (index < 0 || index >= N)
            sharedIndexOutOfRange(index, N);
        return items[index];
    }
};

template <typename T, int... Extents>
struct CheckedArrayOf;
template <typename T, int N>
struct CheckedArrayOf<T, N>
{
    using type = CheckedArray<T, N>;
};
template <typename T, int N, int... Rest>
struct CheckedArrayOf<T, N, Rest...>
{
    using type = CheckedArray<typename CheckedArrayOf<T, Rest...>::type, N>;
};

// Kernel parameters are copied at launch, as CUDA copies them into constant memory.
template <typename... Params>
struct KernelClosure
{
    void (*kernel)(Params...);
    std::tuple<std::decay_t<Params>...> params;

    static void invoke(void const* self)
    {
        auto const& closure = *static_cast<KernelClosure const*>(self);
        std::apply(closure.kernel, closure.params);
    }
};

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t /*stream*/, Args&&... args)
{
    KernelClosure<Params...> const closure{kernel, std::tuple<std::decay_t<Params>...>(std::forward<Args>(args)...)};
    launchGrid(KernelInvocation{&KernelClosure<Params...>::invoke, &closure}, grid, block);
}
} // namespace ccnet::cuda_cpu

#define threadIdx (::ccnet::cuda_cpu::threadIndex())
#define blockIdx (::ccnet::cuda_cpu::blockIndex())
#define blockDim (::ccnet::cuda_cpu::blockDimension())
#define gridDim (::ccnet::cuda_cpu::gridDimension())
constexpr int warpSize = 32;

inline void __syncthreads()
{
    ::ccnet::cuda_cpu::syncThreads();
}

// All lanes named in `mask` meet, then each reads the value of lane (its lane ^ laneMask).
// The CPU mode supports the full-warp mask only.
template <typename T>
T __shfl_xor_sync(unsigned int mask, T value, int laneMask, int width = warpSize)
{
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(std::uint64_t), "shuffle of a register value");
    std::uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    bits = ::ccnet::cuda_cpu::shuffleXorBits(bits, mask, laneMask, width);
    T result;
    std::memcpy(&result, &bits, sizeof(T));
    return result;
}

inline float2 make_float2(float x, float y)
{
    return float2{x, y};
}
