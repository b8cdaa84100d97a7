// The CUDA runtime's per-thread "last error", shared by the launcher and the runtime API.
#pragma once

#include <cuda_runtime_api.h>

namespace ccnet::cuda_cpu
{
void setLastError(cudaError_t error);
} // namespace ccnet::cuda_cpu
