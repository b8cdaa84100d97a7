// The CPU build of the criss-cross attention kernels: cca_kernels.cu itself, compiled by the
// host C++ compiler against the CUDA CPU mode (plugins/cuda_cpu) instead of by nvcc.
#include "cca_kernels.cu"
