#include "kernels/elementwise.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/vec_math.h"

namespace memoria {
namespace {

// Rows per parallel chunk are chosen so that each chunk carries at least this many elements;
// below it an OpenMP fork/join costs more than it saves.
constexpr int64_t kMinParallelElements = 16 * 1024;

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float HorizontalMax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

void RmsNormRow(const float* x, const float* w, float* y, int64_t d, float eps) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    s0 = _mm256_fmadd_ps(a, a, s0);
    s1 = _mm256_fmadd_ps(b, b, s1);
  }
  for (; i + 8 <= d; i += 8) {
    const __m256 a = _mm256_loadu_ps(x + i);
    s0 = _mm256_fmadd_ps(a, a, s0);
  }
  float ss = HorizontalSum(_mm256_add_ps(s0, s1));
  for (; i < d; ++i) ss += x[i] * x[i];
  // Same operation order as Hugging Face: x * rsqrt(mean + eps), then * weight.
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
  const __m256 vinv = _mm256_set1_ps(inv);
  i = 0;
  for (; i + 8 <= d; i += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(v, _mm256_loadu_ps(w + i)));
  }
  for (; i < d; ++i) y[i] = (x[i] * inv) * w[i];
}

inline __m256 ActivateVec(Activation act, __m256 x) {
  switch (act) {
    case Activation::kRelu:
      return _mm256_max_ps(x, _mm256_setzero_ps());
    case Activation::kSilu:
      return vec::Silu(x);
    case Activation::kGeluTanh:
      return vec::GeluTanh(x);
    case Activation::kGeluErf:
      return vec::GeluErf(x);
  }
  return x;
}

inline float ActivateScalar(Activation act, float x) {
  // The scalar tail goes through the vector code so that every element sees the same formula.
  alignas(32) float buf[8] = {x, 0, 0, 0, 0, 0, 0, 0};
  _mm256_store_ps(buf, ActivateVec(act, _mm256_load_ps(buf)));
  return buf[0];
}

template <Activation kAct>
void ActivateLoop(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, ActivateVec(kAct, _mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] = ActivateScalar(kAct, x[i]);
}

template <Activation kAct>
void GatedLoop(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = ActivateVec(kAct, _mm256_loadu_ps(gate + i));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(g, _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) out[i] = ActivateScalar(kAct, gate[i]) * up[i];
}

double ActivateDouble(Activation act, double x) {
  switch (act) {
    case Activation::kRelu:
      return x > 0 ? x : 0;
    case Activation::kSilu:
      return x / (1.0 + std::exp(-x));
    case Activation::kGeluTanh: {
      const double k = std::sqrt(2.0 / M_PI);
      return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
    }
    case Activation::kGeluErf:
      return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  }
  return x;
}

}  // namespace

void RmsNorm(const ThreadPool& pool, const float* x, int64_t x_stride, const float* weight,
             float* y, int64_t y_stride, int64_t rows, int64_t d, float eps) {
  auto run = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      RmsNormRow(x + r * x_stride, weight, y + r * y_stride, d, eps);
  };
  if (rows * d < kMinParallelElements || pool.num_threads() == 1 || rows == 1) {
    run(0, rows);
  } else {
    pool.ParallelFor(rows, run);
  }
}

void RmsNormReference(const float* x, int64_t x_stride, const float* weight, float* y,
                      int64_t y_stride, int64_t rows, int64_t d, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * x_stride;
    float* yr = y + r * y_stride;
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(d) + eps);
    for (int64_t i = 0; i < d; ++i) yr[i] = static_cast<float>(xr[i] * inv * weight[i]);
  }
}

void Activate(Activation act, const float* x, float* y, int64_t n) {
  switch (act) {
    case Activation::kRelu:
      return ActivateLoop<Activation::kRelu>(x, y, n);
    case Activation::kSilu:
      return ActivateLoop<Activation::kSilu>(x, y, n);
    case Activation::kGeluTanh:
      return ActivateLoop<Activation::kGeluTanh>(x, y, n);
    case Activation::kGeluErf:
      return ActivateLoop<Activation::kGeluErf>(x, y, n);
  }
}

void ActivateReference(Activation act, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(ActivateDouble(act, x[i]));
}

void GatedActivate(Activation act, const float* gate, const float* up, float* out, int64_t n) {
  switch (act) {
    case Activation::kRelu:
      return GatedLoop<Activation::kRelu>(gate, up, out, n);
    case Activation::kSilu:
      return GatedLoop<Activation::kSilu>(gate, up, out, n);
    case Activation::kGeluTanh:
      return GatedLoop<Activation::kGeluTanh>(gate, up, out, n);
    case Activation::kGeluErf:
      return GatedLoop<Activation::kGeluErf>(gate, up, out, n);
  }
}

void GatedActivateReference(Activation act, const float* gate, const float* up, float* out,
                            int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = static_cast<float>(ActivateDouble(act, gate[i]) * static_cast<double>(up[i]));
  }
}

void SoftmaxRows(float* x, int64_t rows, int64_t cols, int64_t stride) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * stride;
    __m256 vmax = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    int64_t i = 0;
    for (; i + 8 <= cols; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(row + i));
    float mx = HorizontalMax(vmax);
    for (; i < cols; ++i) mx = std::max(mx, row[i]);
    // A row of -inf (fully masked) becomes all zeros rather than NaN.
    if (mx == -std::numeric_limits<float>::infinity()) {
      std::fill(row, row + cols, 0.0f);
      continue;
    }
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 vsum = _mm256_setzero_ps();
    i = 0;
    for (; i + 8 <= cols; i += 8) {
      const __m256 e = vec::Exp(_mm256_sub_ps(_mm256_loadu_ps(row + i), vm));
      vsum = _mm256_add_ps(vsum, e);
      _mm256_storeu_ps(row + i, e);
    }
    float sum = HorizontalSum(vsum);
    for (; i < cols; ++i) {
      row[i] = vec::ExpScalar(row[i] - mx);
      sum += row[i];
    }
    const float inv = 1.0f / sum;
    const __m256 vinv = _mm256_set1_ps(inv);
    i = 0;
    for (; i + 8 <= cols; i += 8)
      _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_loadu_ps(row + i), vinv));
    for (; i < cols; ++i) row[i] *= inv;
  }
}

void SoftmaxRowsReference(float* x, int64_t rows, int64_t cols, int64_t stride) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * stride;
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < cols; ++i) mx = std::max<double>(mx, row[i]);
    if (mx == -std::numeric_limits<double>::infinity()) {
      std::fill(row, row + cols, 0.0f);
      continue;
    }
    double sum = 0;
    for (int64_t i = 0; i < cols; ++i) sum += std::exp(row[i] - mx);
    for (int64_t i = 0; i < cols; ++i) row[i] = static_cast<float>(std::exp(row[i] - mx) / sum);
  }
}

void AddInPlace(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
  }
  for (; i < n; ++i) y[i] += x[i];
}

}  // namespace memoria
