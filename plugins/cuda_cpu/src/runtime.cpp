// The host functions of cuda_runtime_api.h for the CUDA CPU mode: "device" memory is host
// memory from malloc (so AddressSanitizer guards it like any heap block), copies are memcpy,
// and streams are placeholders because every kernel finishes inside its launch.
#include "last_error.h"

#include <cstdlib>
#include <cstring>

namespace ccnet::cuda_cpu
{
namespace
{
thread_local cudaError_t tLastError = cudaSuccess;

cudaError_t fail(cudaError_t error)
{
    setLastError(error);
    return error;
}

// Any non-null value: stream handles are never dereferenced in the CPU mode.
CUstream_st* const kStreamHandle = reinterpret_cast<CUstream_st*>(alignof(std::max_align_t));
} // namespace

void setLastError(cudaError_t error)
{
    tLastError = error;
}
} // namespace ccnet::cuda_cpu

using ccnet::cuda_cpu::fail;

extern "C" cudaError_t cudaMalloc(void** pointer, std::size_t bytes)
{
    if (!pointer)
        return fail(cudaErrorInvalidValue);
    *pointer = std::malloc(bytes ? bytes : 1);
    return *pointer ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}

extern "C" cudaError_t cudaFree(void* pointer)
{
    std::free(pointer);
    return cudaSuccess;
}

extern "C" cudaError_t cudaMemcpy(void* destination, void const* source, std::size_t bytes, cudaMemcpyKind kind)
{
    if ((bytes && (!destination || !source)) || kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
        return fail(cudaErrorInvalidValue);
    if (bytes)
        std::memmove(destination, source, bytes);
    return cudaSuccess;
}

extern "C" cudaError_t cudaMemset(void* destination, int value, std::size_t bytes)
{
    if (bytes && !destination)
        return fail(cudaErrorInvalidValue);
    if (bytes)
        std::memset(destination, value, bytes);
    return cudaSuccess;
}

extern "C" cudaError_t cudaStreamCreate(cudaStream_t* stream)
{
    if (!stream)
        return fail(cudaErrorInvalidValue);
    *stream = ccnet::cuda_cpu::kStreamHandle;
    return cudaSuccess;
}

extern "C" cudaError_t cudaStreamSynchronize(cudaStream_t /*stream*/)
{
    return cudaSuccess;
}

extern "C" cudaError_t cudaStreamDestroy(cudaStream_t /*stream*/)
{
    return cudaSuccess;
}

extern "C" cudaError_t cudaDeviceSynchronize()
{
    return cudaSuccess;
}

extern "C" cudaError_t cudaGetDeviceCount(int* count)
{
    if (!count)
        return fail(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}

extern "C" cudaError_t cudaGetLastError()
{
    cudaError_t const error = ccnet::cuda_cpu::tLastError;
    ccnet::cuda_cpu::tLastError = cudaSuccess;
    return error;
}

extern "C" char const* cudaGetErrorString(cudaError_t error)
{
    switch (error)
    {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    }
    return "unrecognized error code";
}
