#include "kernels/btr_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "base/status.h"

namespace memoria {
namespace {

// popcnt is present on every AVX2 machine; the attribute lets the compiler emit it without
// raising the whole file's ISA baseline.
__attribute__((target("popcnt"))) int64_t HammingPopcnt(const uint8_t* x, const uint8_t* y,
                                                         int64_t nbytes) {
  int64_t total = 0, i = 0;
  for (; i + 32 <= nbytes; i += 32) {
    uint64_t a[4], b[4];
    std::memcpy(a, x + i, 32);
    std::memcpy(b, y + i, 32);
    total += _mm_popcnt_u64(a[0] ^ b[0]) + _mm_popcnt_u64(a[1] ^ b[1]) +
             _mm_popcnt_u64(a[2] ^ b[2]) + _mm_popcnt_u64(a[3] ^ b[3]);
  }
  for (; i + 8 <= nbytes; i += 8) {
    uint64_t a, b;
    std::memcpy(&a, x + i, 8);
    std::memcpy(&b, y + i, 8);
    total += _mm_popcnt_u64(a ^ b);
  }
  for (; i < nbytes; ++i) total += _mm_popcnt_u32(static_cast<uint32_t>(x[i] ^ y[i]));
  return total;
}

double InverseSumSquares(int64_t d, const float* a) {
  double s = 0.0;
  for (int64_t j = 0; j < d; ++j) s += double(a[j]) * a[j];
  return s > 0.0 ? 1.0 / s : 0.0;
}

void EncodeRows(int64_t begin, int64_t end, int64_t d, const float* x, int64_t ldx,
                const float* mu, const float* a, double inv_sum_a2, uint8_t* bits,
                float* scales) {
  const int64_t nbytes = d / 8;
  for (int64_t i = begin; i < end; ++i) {
    const float* xv = x + i * ldx;
    uint8_t* out = bits + i * nbytes;
    int64_t j = 0;
    float dot = 0.0f;
#ifdef __AVX2__
    __m256 acc = _mm256_setzero_ps();
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (; j + 8 <= d; j += 8) {
      const __m256 c = _mm256_sub_ps(_mm256_loadu_ps(xv + j), _mm256_loadu_ps(mu + j));
      const int mask = _mm256_movemask_ps(_mm256_cmp_ps(c, _mm256_setzero_ps(), _CMP_GT_OQ));
      out[j / 8] = static_cast<uint8_t>(mask);
      acc = _mm256_fmadd_ps(_mm256_and_ps(c, abs_mask), _mm256_loadu_ps(a + j), acc);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc);
    for (float v : lanes) dot += v;
#endif
    for (; j < d; j += 8) {
      uint8_t byte = 0;
      for (int b = 0; b < 8; ++b) {
        const float c = xv[j + b] - mu[j + b];
        if (c > 0.0f) byte |= static_cast<uint8_t>(1u << b);
        dot += std::fabs(c) * a[j + b];
      }
      out[j / 8] = byte;
    }
    scales[i] = static_cast<float>(dot * inv_sum_a2);
  }
}

void DecodeRows(int64_t begin, int64_t end, int64_t d, const uint8_t* bits, const float* scales,
                const float* mu, const float* a, int64_t d_out, float* out, int64_t ldo) {
  const int64_t nbytes = d / 8;
  for (int64_t i = begin; i < end; ++i) {
    const uint8_t* bv = bits + i * nbytes;
    float* o = out + i * ldo;
    const float alpha = scales[i];
    int64_t j = 0;
#ifdef __AVX2__
    // Byte -> 8 lanes: lane l keeps bit l; a clear bit flips the sign of alpha * a_j.
    const __m256i lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 valpha = _mm256_set1_ps(alpha);
    for (; j + 8 <= d_out; j += 8) {
      const __m256i b = _mm256_set1_epi32(bv[j / 8]);
      const __m256 set = _mm256_castsi256_ps(
          _mm256_cmpeq_epi32(_mm256_and_si256(b, lane_bits), lane_bits));
      const __m256 mag = _mm256_mul_ps(valpha, _mm256_loadu_ps(a + j));
      const __m256 v = _mm256_xor_ps(mag, _mm256_andnot_ps(set, sign));
      _mm256_storeu_ps(o + j, _mm256_add_ps(_mm256_loadu_ps(mu + j), v));
    }
#endif
    for (; j < d_out; ++j) {
      const bool set = (bv[j / 8] >> (j % 8)) & 1;
      const float mag = alpha * a[j];
      o[j] = mu[j] + (set ? mag : -mag);
    }
  }
}

}  // namespace

void BtrCalibrate(int64_t n, int64_t d, const float* x, int64_t ldx, float* mu, float* a) {
  MEMORIA_CHECK(n >= 1 && d >= 1, "BTR calibration needs n, d >= 1");
  std::vector<double> acc(d, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < d; ++j) acc[j] += x[i * ldx + j];
  }
  for (int64_t j = 0; j < d; ++j) mu[j] = static_cast<float>(acc[j] / n);
  std::fill(acc.begin(), acc.end(), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < d; ++j) acc[j] += std::fabs(x[i * ldx + j] - mu[j]);
  }
  for (int64_t j = 0; j < d; ++j) a[j] = static_cast<float>(acc[j] / n);
}

void BtrEncode(const ThreadPool& pool, int64_t n, int64_t d, const float* x, int64_t ldx,
               const float* mu, const float* a, uint8_t* bits, float* scales) {
  MEMORIA_CHECK(d % 8 == 0 && ldx >= d, "BTR encode: d must be a multiple of 8");
  const double inv = InverseSumSquares(d, a);
  const int64_t grain = std::max<int64_t>(1, 8192 / d);
  pool.ParallelForDynamic(n, grain, [&](int64_t b, int64_t e) {
    EncodeRows(b, e, d, x, ldx, mu, a, inv, bits, scales);
  });
}

void BtrEncodeReference(int64_t n, int64_t d, const float* x, int64_t ldx, const float* mu,
                        const float* a, uint8_t* bits, float* scales) {
  const double inv = InverseSumSquares(d, a);
  std::memset(bits, 0, n * (d / 8));
  for (int64_t i = 0; i < n; ++i) {
    double dot = 0.0;
    for (int64_t j = 0; j < d; ++j) {
      const double c = double(x[i * ldx + j]) - mu[j];
      if (c > 0.0) bits[i * (d / 8) + j / 8] |= static_cast<uint8_t>(1u << (j % 8));
      dot += std::fabs(c) * a[j];
    }
    scales[i] = static_cast<float>(dot * inv);
  }
}

void BtrDecode(const ThreadPool& pool, int64_t n, int64_t d, const uint8_t* bits,
               const float* scales, const float* mu, const float* a, int64_t d_out, float* out,
               int64_t ldo) {
  MEMORIA_CHECK(d % 8 == 0 && d_out <= d && ldo >= d_out, "BTR decode: bad shape");
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, d_out));
  pool.ParallelForDynamic(n, grain, [&](int64_t b, int64_t e) {
    DecodeRows(b, e, d, bits, scales, mu, a, d_out, out, ldo);
  });
}

void BtrDecodeReference(int64_t n, int64_t d, const uint8_t* bits, const float* scales,
                        const float* mu, const float* a, int64_t d_out, float* out, int64_t ldo) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < d_out; ++j) {
      const int bit = (bits[i * (d / 8) + j / 8] >> (j % 8)) & 1;
      out[i * ldo + j] = mu[j] + scales[i] * a[j] * (bit ? 1.0f : -1.0f);
    }
  }
}

int64_t BtrHamming(const uint8_t* x, const uint8_t* y, int64_t nbytes) {
  return HammingPopcnt(x, y, nbytes);
}

int64_t BtrHammingReference(const uint8_t* x, const uint8_t* y, int64_t nbytes) {
  int64_t total = 0;
  for (int64_t i = 0; i < nbytes; ++i) {
    for (int b = 0; b < 8; ++b) total += ((x[i] ^ y[i]) >> b) & 1;
  }
  return total;
}

void BtrHammingMatrix(const ThreadPool& pool, int64_t nx, const uint8_t* x, int64_t ny,
                      const uint8_t* y, int64_t nbytes, int32_t* out) {
  pool.ParallelForDynamic(nx, 4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      for (int64_t k = 0; k < ny; ++k) {
        out[i * ny + k] = static_cast<int32_t>(HammingPopcnt(x + i * nbytes, y + k * nbytes, nbytes));
      }
    }
  });
}

}  // namespace memoria
