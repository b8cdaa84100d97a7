// CUDA's math_constants.h for the CUDA CPU mode (the constants this project's kernels use).
#pragma once

#include <limits>

#define CUDART_INF_F (::std::numeric_limits<float>::infinity())
