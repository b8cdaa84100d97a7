// The part of the CUDA runtime API that this project's sources use, for the CUDA CPU mode:
// types (dim3, float2, streams, error codes) and host functions (memory, streams, errors)
// working on host memory. Code built for the CPU mode finds this file instead of the CUDA
// toolkit's; names and numeric values are CUDA's, so the same sources compile against both.
#pragma once

#include <cstddef>

struct uint3
{
    unsigned int x, y, z;
};

struct dim3
{
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
};

struct alignas(8) float2
{
    float x, y;
};

// Streams and events order nothing in the CPU mode: every call runs to completion before it
// returns. (TensorRT's headers name both types.)
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;

enum cudaError
{
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind
{
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};

extern "C" {
cudaError_t cudaMalloc(void** pointer, std::size_t bytes);
cudaError_t cudaFree(void* pointer);
cudaError_t cudaMemcpy(void* destination, void const* source, std::size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemset(void* destination, int value, std::size_t bytes);
cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaDeviceSynchronize();
// The CPU counts as one device.
cudaError_t cudaGetDeviceCount(int* count);
// Returns and clears the calling thread's last error, as in CUDA (kernel launches set it).
cudaError_t cudaGetLastError();
char const* cudaGetErrorString(cudaError_t error);
}
