// C interface of the criss-cross attention CUDA kernels. Usable without TensorRT
// (ctypes + torch data_ptr in the GPU tests, the plugin's enqueue in production).
#pragma once

#include <cstddef>
#include <cuda_runtime_api.h>

#if defined(__GNUC__)
#define CCNET_EXPORT __attribute__((visibility("default")))
#else
#define CCNET_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

// dtype codes accepted by ccnet_cca_forward.
enum CcnetCcaDtype
{
    CCNET_CCA_FP32 = 0,
    CCNET_CCA_FP16 = 1
};

// Return codes of ccnet_cca_forward.
enum CcnetCcaStatus
{
    CCNET_CCA_OK = 0,
    CCNET_CCA_BAD_ARGUMENT = 1,      // a size < 1, unknown dtype or a null pointer
    CCNET_CCA_WORKSPACE_TOO_SMALL = 2,
    CCNET_CCA_LAUNCH_FAILED = 3      // cudaGetLastError() reported an error after a launch
};

// Bytes of device workspace ccnet_cca_forward needs for a batch of n images of h x w pixels
// (two float2 softmax statistics per pixel: 16 bytes per pixel, independent of channels).
CCNET_EXPORT size_t ccnet_cca_workspace_size(int n, int h, int w);

// out[n,c,h,w] = criss-cross attention of query/key (n x cq x h x w) over value (n x c x h x w).
// All tensors contiguous NCHW on the device, all of dtype `dtype`. Asynchronous on `stream`.
CCNET_EXPORT int ccnet_cca_forward(void const* query, void const* key, void const* value, void* out, int n, int cq,
    int c, int h, int w, int dtype, void* workspace, size_t workspace_bytes, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
