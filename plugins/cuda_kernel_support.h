// What cca_kernels.cu uses beyond the CUDA language itself, in one form for nvcc and one for
// the CUDA CPU mode (plugins/cuda_cpu), so the kernel source stays a single file:
//   launch_kernel(kernel, grid, block, stream, args...)  the one way a kernel is started;
//   SharedArray<T, N, M...>                                the type of __shared__ arrays.
#pragma once

#if defined(__CUDACC__)

#include <cuda_runtime.h>

namespace ccnet
{
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args)
{
    kernel<<<grid, block, 0, stream>>>(static_cast<Params>(args)...);
}

template <typename T, int... Extents>
struct SharedArrayOf;
template <typename T, int N>
struct SharedArrayOf<T, N>
{
    using type = T[N];
};
template <typename T, int N, int... Rest>
struct SharedArrayOf<T, N, Rest...>
{
    using type = typename SharedArrayOf<T, Rest...>::type[N];
};
} // namespace ccnet

#else

#include <cuda_cpu_device.h>

namespace ccnet
{
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args)
{
    cuda_cpu::launch(kernel, grid, block, stream, std::forward<Args>(args)...);
}

// Out-of-range indices stop the program in the CPU mode instead of touching a neighbour.
template <typename T, int... Extents>
using SharedArrayOf = cuda_cpu::CheckedArrayOf<T, Extents...>;
} // namespace ccnet

#endif

namespace ccnet
{
template <typename T, int... Extents>
using SharedArray = typename SharedArrayOf<T, Extents...>::type;
} // namespace ccnet
