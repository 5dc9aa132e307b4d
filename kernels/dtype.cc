#include "kernels/dtype.h"

#include <immintrin.h>

namespace memoria {
namespace {

// Element i of a 16-bit array that may sit at any address: safetensors data offsets are relative
// to a header of any length, so a file's f16/bf16 tensors need not be 2-byte aligned.
inline uint16_t LoadU16(const void* src, int64_t i) {
  uint16_t v;
  std::memcpy(&v, static_cast<const char*>(src) + 2 * i, sizeof v);
  return v;
}

}  // namespace

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
  }
  return "?";
}

float F16ToF32(uint16_t h) { return _cvtsh_ss(h); }
uint16_t F32ToF16(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

void ConvertToF32(DType from, const void* src, float* dst, int64_t n) {
  switch (from) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToF32(LoadU16(src, i));
      return;
    case DType::kF16: {
      const char* s = static_cast<const char*>(src);
      int64_t i = 0;
      for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
      }
      for (; i < n; ++i) dst[i] = F16ToF32(LoadU16(src, i));
      return;
    }
  }
}

void ConvertF32ToBf16(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = F32ToBf16(src[i]);
}

}  // namespace memoria
