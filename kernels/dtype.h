// Element types of weights and activations, and scalar conversions.
#pragma once

#include <cstdint>
#include <cstring>

namespace memoria {

enum class DType : uint8_t { kF32 = 0, kF16 = 1, kBF16 = 2 };

inline int DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }
const char* DTypeName(DType t);  // "f32", "f16", "bf16"

// bf16 is the upper 16 bits of an IEEE f32.
inline float Bf16ToF32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
// Round to nearest even; NaN stays NaN.
inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}
float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);

// Converts n elements of type `from` at src to f32 at dst. src needs no alignment (a
// safetensors tensor may start at any byte).
void ConvertToF32(DType from, const void* src, float* dst, int64_t n);
// Converts n f32 elements to bf16 (round to nearest even).
void ConvertF32ToBf16(const float* src, uint16_t* dst, int64_t n);

}  // namespace memoria
