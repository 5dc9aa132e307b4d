#include "kernels/rope.h"

#include <immintrin.h>

#include <cmath>

#include "base/status.h"

namespace memoria {

// The table follows Hugging Face's float32 arithmetic (LlamaRotaryEmbedding), not exact math:
//   inv_freq = 1.0 / (theta ** (arange(0, d, 2).float() / d))    all in float32
//   angle    = float(pos) * inv_freq                              float32 product
//   cos/sin  = cos/sin of that float32 angle
// so logits agree with a float32 PyTorch run to ~1e-6 even at large positions, where the float32
// angle itself is off from the exact one by up to pos * 2^-24 rad. cos/sin of the float32 angle
// are evaluated in double and rounded once (PyTorch's float32 cos is within 1 ulp of that).
RopeTable::RopeTable(int head_dim, int64_t max_positions, double theta)
    : head_dim_(head_dim), max_positions_(max_positions) {
  MEMORIA_CHECK(head_dim > 0 && head_dim % 2 == 0 && max_positions >= 0,
                "RopeTable: head_dim must be positive and even");
  const int half = head_dim / 2;
  std::vector<float> inv_freq(half);
  const float theta_f = static_cast<float>(theta);
  for (int i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[i] = 1.0f / std::pow(theta_f, exponent);
  }
  cos_.resize(static_cast<size_t>(max_positions * half));
  sin_.resize(static_cast<size_t>(max_positions * half));
  for (int64_t p = 0; p < max_positions; ++p) {
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * inv_freq[i];
      cos_[p * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin_[p * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
}

void ApplyRope(const RopeTable& table, float* x, int64_t tokens, int64_t stride, int n_heads,
               int64_t first_position) {
  const int d = table.head_dim();
  const int half = d / 2;
  MEMORIA_CHECK(first_position >= 0 && first_position + tokens <= table.max_positions(),
                "ApplyRope: position beyond the table");
  for (int64_t t = 0; t < tokens; ++t) {
    const float* c = table.cos(first_position + t);
    const float* s = table.sin(first_position + t);
    for (int h = 0; h < n_heads; ++h) {
      float* a = x + t * stride + static_cast<int64_t>(h) * d;
      float* b = a + half;
      int i = 0;
      for (; i + 8 <= half; i += 8) {
        const __m256 va = _mm256_loadu_ps(a + i), vb = _mm256_loadu_ps(b + i);
        const __m256 vc = _mm256_loadu_ps(c + i), vs = _mm256_loadu_ps(s + i);
        _mm256_storeu_ps(a + i, _mm256_fmsub_ps(va, vc, _mm256_mul_ps(vb, vs)));
        _mm256_storeu_ps(b + i, _mm256_fmadd_ps(vb, vc, _mm256_mul_ps(va, vs)));
      }
      for (; i < half; ++i) {
        const float va = a[i], vb = b[i];
        a[i] = va * c[i] - vb * s[i];
        b[i] = vb * c[i] + va * s[i];
      }
    }
  }
}

void ApplyRopeReference(float* x, int64_t tokens, int64_t stride, int n_heads, int head_dim,
                        int64_t first_position, double theta) {
  const int half = head_dim / 2;
  for (int64_t t = 0; t < tokens; ++t) {
    const double pos = static_cast<double>(first_position + t);
    for (int h = 0; h < n_heads; ++h) {
      float* a = x + t * stride + static_cast<int64_t>(h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const double w = std::pow(theta, -2.0 * i / head_dim);
        const double c = std::cos(pos * w), s = std::sin(pos * w);
        const double va = a[i], vb = a[i + half];
        a[i] = static_cast<float>(va * c - vb * s);
        a[i + half] = static_cast<float>(vb * c + va * s);
      }
    }
  }
}

}  // namespace memoria
