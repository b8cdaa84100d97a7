// CUDA's __half for the CUDA CPU mode: IEEE binary16 storage and the conversions this
// project's kernels use, rounding exactly as the GPU does.
#pragma once

#include <cstdint>
#include <cstring>

struct __half
{
    std::uint16_t bits;
};

namespace ccnet::cuda_cpu
{
// Round to nearest, ties to even, like __float2half_rn and the GPU's cvt.rn.f16.f32.
// Any NaN becomes CUDA's canonical NaN 0x7FFF.
inline std::uint16_t floatToHalfBits(float value)
{
    std::uint32_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    std::uint32_t const sign = (bits >> 16) & 0x8000u;
    std::uint32_t const magnitude = bits & 0x7FFFFFFFu;
    if (magnitude > 0x7F800000u)
        return 0x7FFF;
    if (magnitude >= 0x477FF000u) // 65520, halfway between the largest half 65504 and 65536
        return static_cast<std::uint16_t>(sign | 0x7C00u);
    if (magnitude < 0x38800000u) // below 2^-14: a subnormal half, or zero
    {
        if (magnitude < 0x33000000u) // below 2^-25, half the smallest subnormal
            return static_cast<std::uint16_t>(sign);
        std::uint32_t const exponent = magnitude >> 23;
        std::uint32_t const significand = (magnitude & 0x7FFFFFu) | 0x800000u;
        std::uint32_t const shift = 126 - exponent; // 14..24: units of 2^-24
        std::uint32_t result = significand >> shift;
        std::uint32_t const remainder = significand & ((1u << shift) - 1);
        std::uint32_t const halfway = 1u << (shift - 1);
        if (remainder > halfway || (remainder == halfway && (result & 1u)))
            ++result; // may carry into the smallest normal, which is the right encoding
        return static_cast<std::uint16_t>(sign | result);
    }
    std::uint32_t result = (magnitude - 0x38000000u) >> 13; // exponent bias 127 -> 15
    std::uint32_t const remainder = magnitude & 0x1FFFu;
    if (remainder > 0x1000u || (remainder == 0x1000u && (result & 1u)))
        ++result;
    return static_cast<std::uint16_t>(sign | result);
}

inline float halfBitsToFloat(std::uint16_t half)
{
    std::uint32_t const sign = (std::uint32_t{half} & 0x8000u) << 16;
    std::uint32_t const exponent = (half >> 10) & 0x1Fu;
    std::uint32_t mantissa = half & 0x3FFu;
    std::uint32_t bits;
    if (exponent == 0x1F)
        bits = sign | 0x7F800000u | (mantissa << 13);
    else if (exponent != 0)
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    else if (mantissa == 0)
        bits = sign;
    else
    {
        std::uint32_t normalizingShifts = 0;
        while ((mantissa & 0x400u) == 0)
        {
            mantissa <<= 1;
            ++normalizingShifts;
        }
        bits = sign | ((113 - normalizingShifts) << 23) | ((mantissa & 0x3FFu) << 13);
    }
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
}
} // namespace ccnet::cuda_cpu

inline __half __float2half_rn(float value)
{
    return __half{::ccnet::cuda_cpu::floatToHalfBits(value)};
}

inline float __half2float(__half value)
{
    return ::ccnet::cuda_cpu::halfBitsToFloat(value.bits);
}
