#include "kernels/pq_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <unordered_set>

#include "base/status.h"
#include "kernels/gemm.h"

namespace memoria {
namespace {

// Rows per GEMM block: the block's dot products (rows x ksub floats) stay within ~256 KB so the
// arg-min pass reads them from L2, not memory.
int64_t AssignBlockRows(int64_t n, int64_t ksub) {
  const int64_t rows = std::max<int64_t>(16, (64 * 1024) / ksub);
  return std::min(n, rows);
}

// Arg-min over j of norms[j] - 2 * dots[j]; ties resolve to the smaller j. Returns the index and
// writes the minimum to *best.
inline int32_t ArgminScores(const float* dots, const float* norms, int64_t k, float* best) {
  int64_t j = 0;
  float best_value = std::numeric_limits<float>::infinity();
  int32_t best_index = 0;
#ifdef __AVX2__
  if (k >= 8) {
    const __m256 minus_two = _mm256_set1_ps(-2.0f);
    __m256 vmin = _mm256_set1_ps(std::numeric_limits<float>::infinity());
    __m256i vidx = _mm256_setzero_si256();
    __m256i cur = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i step = _mm256_set1_epi32(8);
    for (; j + 8 <= k; j += 8) {
      const __m256 s = _mm256_fmadd_ps(_mm256_loadu_ps(dots + j), minus_two,
                                       _mm256_loadu_ps(norms + j));
      const __m256 lt = _mm256_cmp_ps(s, vmin, _CMP_LT_OQ);
      vmin = _mm256_blendv_ps(vmin, s, lt);
      vidx = _mm256_castps_si256(
          _mm256_blendv_ps(_mm256_castsi256_ps(vidx), _mm256_castsi256_ps(cur), lt));
      cur = _mm256_add_epi32(cur, step);
    }
    alignas(32) float mins[8];
    alignas(32) int32_t idx[8];
    _mm256_store_ps(mins, vmin);
    _mm256_store_si256(reinterpret_cast<__m256i*>(idx), vidx);
    for (int l = 0; l < 8; ++l) {
      if (mins[l] < best_value || (mins[l] == best_value && idx[l] < best_index)) {
        best_value = mins[l];
        best_index = idx[l];
      }
    }
  }
#endif
  for (; j < k; ++j) {
    const float s = norms[j] - 2.0f * dots[j];
    if (s < best_value) {
      best_value = s;
      best_index = static_cast<int32_t>(j);
    }
  }
  *best = best_value;
  return best_index;
}

inline float SquaredNorm(const float* x, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}


// True when the fused register-blocked kernel handles this shape.
bool UseFused(const PqShape& shape) {
#ifdef __AVX2__
  return shape.dsub() <= 16 && shape.ksub % 8 == 0;
#else
  return false;
#endif
}

#ifdef __AVX2__
// Nearest centroid of R rows' subvectors in one subspace. ct: (dsub, ksub) transposed centroids,
// nm: (ksub) norms, xr[r]: the subvector of row r. Computes ||c||^2 - 2 x.c for 8 W centroids of
// R rows per step (R * W * dsub FMAs; per k, W centroid loads and R broadcasts) and keeps a
// running arg-min per lane; ties keep the smaller index. W = 2 needs ksub % 16 == 0: it halves
// the broadcast loads per FMA, which bound the W = 1 loop (R + 1 loads per R FMAs).
// DSUB > 0 fixes dsub at compile time (the k loop unrolls); DSUB == 0 reads it from dsub.
template <int R, int DSUB, int W = 1>
inline void FusedArgmin(const float* ct, const float* nm, int64_t ksub, int64_t dsub_runtime,
                        const float* const* xr, int32_t* best_j, float* best_v) {
  const int64_t dsub = DSUB > 0 ? DSUB : dsub_runtime;
  alignas(32) float xm2[R][16];
  for (int r = 0; r < R; ++r) {
    for (int64_t k = 0; k < dsub; ++k) xm2[r][k] = -2.0f * xr[r][k];
  }
  __m256 vmin[R];
  __m256i vidx[R];
  for (int r = 0; r < R; ++r) {
    vmin[r] = _mm256_set1_ps(std::numeric_limits<float>::infinity());
    vidx[r] = _mm256_setzero_si256();
  }
  __m256i cur = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i step = _mm256_set1_epi32(8);
  for (int64_t j = 0; j < ksub; j += 8 * W) {
    __m256 acc[W][R];
    for (int w = 0; w < W; ++w) {
      const __m256 n = _mm256_loadu_ps(nm + j + 8 * w);
      for (int r = 0; r < R; ++r) acc[w][r] = n;
    }
    for (int64_t k = 0; k < dsub; ++k) {
      __m256 c[W];
      for (int w = 0; w < W; ++w) c[w] = _mm256_loadu_ps(ct + k * ksub + j + 8 * w);
      for (int r = 0; r < R; ++r) {
        const __m256 xk = _mm256_broadcast_ss(&xm2[r][k]);
        for (int w = 0; w < W; ++w) acc[w][r] = _mm256_fmadd_ps(xk, c[w], acc[w][r]);
      }
    }
    // Lower centroid blocks first, strict less-than: ties keep the smaller index.
    for (int w = 0; w < W; ++w) {
      for (int r = 0; r < R; ++r) {
        const __m256 lt = _mm256_cmp_ps(acc[w][r], vmin[r], _CMP_LT_OQ);
        vmin[r] = _mm256_blendv_ps(vmin[r], acc[w][r], lt);
        vidx[r] = _mm256_castps_si256(
            _mm256_blendv_ps(_mm256_castsi256_ps(vidx[r]), _mm256_castsi256_ps(cur), lt));
      }
      cur = _mm256_add_epi32(cur, step);
    }
  }
  for (int r = 0; r < R; ++r) {
    alignas(32) float mins[8];
    alignas(32) int32_t idx[8];
    _mm256_store_ps(mins, vmin[r]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(idx), vidx[r]);
    float bv = std::numeric_limits<float>::infinity();
    int32_t bj = 0;
    for (int l = 0; l < 8; ++l) {
      if (mins[l] < bv || (mins[l] == bv && idx[l] < bj)) {
        bv = mins[l];
        bj = idx[l];
      }
    }
    best_j[r] = bj;
    best_v[r] = bv;
  }
}
#endif

// The fused path of AssignCore: tasks are (block of 64 rows, subspace) pairs.
template <typename Sink>
void AssignFused(const ThreadPool& pool, const PqShape& shape, const PqTables& tables, int64_t n,
                 const float* x, int64_t ldx, const Sink& sink) {
#ifdef __AVX2__
  const int64_t M = shape.M, ksub = shape.ksub, dsub = shape.dsub();
  const int64_t block = 64;
  const int64_t num_blocks = (n + block - 1) / block;
  pool.ParallelForDynamic(num_blocks * M, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / M, m = t % M;
      const int64_t r0 = b * block, r1 = std::min(n, r0 + block);
      const float* ct = tables.transposed.data() + m * dsub * ksub;
      const float* nm = tables.norms.data() + m * ksub;
      const bool wide = ksub % 16 == 0;
      auto kernel4 = dsub == 8 ? (wide ? FusedArgmin<4, 8, 2> : FusedArgmin<4, 8>)
                     : dsub == 16 ? (wide ? FusedArgmin<4, 16, 2> : FusedArgmin<4, 16>)
                     : dsub == 4 ? FusedArgmin<4, 4> : FusedArgmin<4, 0>;
      auto kernel1 = dsub == 8 ? FusedArgmin<1, 8> : dsub == 16 ? FusedArgmin<1, 16>
                     : dsub == 4 ? FusedArgmin<1, 4> : FusedArgmin<1, 0>;
      int64_t i = r0;
      for (; i + 4 <= r1; i += 4) {
        const float* xr[4] = {x + i * ldx + m * dsub, x + (i + 1) * ldx + m * dsub,
                              x + (i + 2) * ldx + m * dsub, x + (i + 3) * ldx + m * dsub};
        int32_t bj[4];
        float bv[4];
        kernel4(ct, nm, ksub, dsub, xr, bj, bv);
        for (int r = 0; r < 4; ++r) {
          sink(i + r, m, bj[r], std::max(0.0f, SquaredNorm(xr[r], dsub) + bv[r]));
        }
      }
      for (; i < r1; ++i) {
        const float* xr[1] = {x + i * ldx + m * dsub};
        int32_t bj[1];
        float bv[1];
        kernel1(ct, nm, ksub, dsub, xr, bj, bv);
        sink(i, m, bj[0], std::max(0.0f, SquaredNorm(xr[0], dsub) + bv[0]));
      }
    }
  });
#endif
}

// The shared core of PqAssign/PqEncode: calls sink(row, m, index, squared_distance) for every
// subvector. Tasks are (row block, subspace) pairs so that even one short passage keeps every
// thread busy; each task is one single-threaded GEMM plus an arg-min pass (or the fused kernel).
template <typename Sink>
void AssignCore(const ThreadPool& pool, const PqShape& shape, const float* centroids,
                const PqTables& tables, int64_t n, const float* x, int64_t ldx, const Sink& sink) {
  MEMORIA_CHECK(shape.valid(), "invalid PQ shape");
  MEMORIA_CHECK(ldx >= shape.d, "PQ assign: row stride < d");
  MEMORIA_CHECK(static_cast<int64_t>(tables.norms.size()) == shape.M * shape.ksub, "PQ tables not prepared");
  if (n <= 0) return;
  if (UseFused(shape)) {
    MEMORIA_CHECK(tables.transposed.size() == tables.norms.size() * shape.dsub(), "PQ tables not prepared");
    AssignFused(pool, shape, tables, n, x, ldx, sink);
    return;
  }
  const float* norms = tables.norms.data();
  const int64_t M = shape.M, ksub = shape.ksub, dsub = shape.dsub();
  const int64_t block = AssignBlockRows(n, ksub);
  const int64_t num_blocks = (n + block - 1) / block;
  const ThreadPool single(1);
  pool.ParallelForDynamic(num_blocks * M, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> dots;
    if (static_cast<int64_t>(dots.size()) < block * ksub) dots.resize(block * ksub);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / M, m = t % M;
      const int64_t r0 = b * block, rows = std::min(block, n - r0);
      const float* xs = x + r0 * ldx + m * dsub;
      MatmulTransB(single, rows, ksub, dsub, xs, ldx, centroids + m * ksub * dsub, DType::kF32,
                   dsub, dots.data(), ksub);
      const float* nm = norms + m * ksub;
      for (int64_t r = 0; r < rows; ++r) {
        float best;
        const int32_t j = ArgminScores(dots.data() + r * ksub, nm, ksub, &best);
        const float d2 = std::max(0.0f, SquaredNorm(xs + r * ldx, dsub) + best);
        sink(r0 + r, m, j, d2);
      }
    }
  });
}

template <typename Code>
void DecodeRows(const PqShape& shape, const float* centroids, int64_t begin, int64_t end,
                const uint8_t* codes, int64_t d_out, float* out, int64_t ldo) {
  const int64_t M = shape.M, ksub = shape.ksub, dsub = shape.dsub();
  // Subspaces that lie entirely within d_out; the one straddling d_out (padding) is cut.
  const int64_t full = d_out / dsub;
  for (int64_t i = begin; i < end; ++i) {
    const Code* c = reinterpret_cast<const Code*>(codes) + i * M;
    float* o = out + i * ldo;
    int64_t m = 0;
#ifdef __AVX2__
    if (dsub == 8) {
      for (; m < full; ++m) {
        _mm256_storeu_ps(o + m * 8, _mm256_loadu_ps(centroids + (m * ksub + c[m]) * 8));
      }
    } else if (dsub == 16) {
      for (; m < full; ++m) {
        const float* src = centroids + (m * ksub + c[m]) * 16;
        _mm256_storeu_ps(o + m * 16, _mm256_loadu_ps(src));
        _mm256_storeu_ps(o + m * 16 + 8, _mm256_loadu_ps(src + 8));
      }
    } else if (dsub == 4) {
      for (; m < full; ++m) {
        _mm_storeu_ps(o + m * 4, _mm_loadu_ps(centroids + (m * ksub + c[m]) * 4));
      }
    }
#endif
    for (; m < full; ++m) {
      std::memcpy(o + m * dsub, centroids + (m * ksub + c[m]) * dsub, dsub * sizeof(float));
    }
    if (m < M && m * dsub < d_out) {
      std::memcpy(o + m * dsub, centroids + (m * ksub + c[m]) * dsub,
                  (d_out - m * dsub) * sizeof(float));
    }
  }
}

inline int32_t ReadCode(const PqShape& shape, const uint8_t* codes, int64_t i, int64_t m) {
  if (PqCodeBytes(shape.ksub) == 1) return codes[i * shape.M + m];
  uint16_t v;
  std::memcpy(&v, codes + (i * shape.M + m) * 2, 2);
  return v;
}

inline void WriteCode(const PqShape& shape, uint8_t* codes, int64_t i, int64_t m, int32_t j) {
  if (PqCodeBytes(shape.ksub) == 1) {
    codes[i * shape.M + m] = static_cast<uint8_t>(j);
  } else {
    const uint16_t v = static_cast<uint16_t>(j);
    std::memcpy(codes + (i * shape.M + m) * 2, &v, 2);
  }
}

// Draws `count` distinct row indices with probability proportional to weights[i * stride]
// (D^2 sampling), excluding rows already in `taken`. Falls back to uniform draws when all
// weights are zero (every point coincides with a centre).
std::vector<int64_t> SampleDSquared(const float* weights, int64_t stride, int64_t n,
                                    int64_t count, std::mt19937_64& rng,
                                    std::unordered_set<int64_t>* taken) {
  std::vector<double> cdf(n);
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    total += weights[i * stride];
    cdf[i] = total;
  }
  std::vector<int64_t> out;
  out.reserve(count);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  std::uniform_int_distribution<int64_t> any(0, n - 1);
  int64_t tries = 0;
  while (static_cast<int64_t>(out.size()) < count) {
    int64_t i;
    if (total > 0.0 && tries < 8 * count + 64) {
      const double u = uni(rng) * total;
      i = std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin();
      i = std::min(i, n - 1);
    } else {
      i = any(rng);
    }
    ++tries;
    if (taken->insert(i).second) {
      out.push_back(i);
    } else if (static_cast<int64_t>(taken->size()) >= n) {
      out.push_back(any(rng));  // more centres than distinct points: duplicates are unavoidable
    }
  }
  return out;
}

// Batched k-means++ seeding, independently per subspace. xs: (n, d) contiguous.
void InitKmeansPlusPlus(const ThreadPool& pool, const PqShape& shape, int64_t n, const float* xs,
                        const PqTrainOptions& options, std::mt19937_64& rng, float* centroids) {
  const int64_t M = shape.M, ksub = shape.ksub, dsub = shape.dsub(), d = shape.d;
  const int64_t rounds = std::clamp<int64_t>(options.init_rounds, 1, ksub);
  std::vector<float> mind(n * M, std::numeric_limits<float>::infinity());
  std::vector<std::unordered_set<int64_t>> taken(M);
  std::vector<int64_t> filled(M, 0);
  std::vector<float> batch_centroids, batch_dist;
  PqTables batch_tables;
  std::vector<int32_t> batch_assign;
  for (int64_t r = 0; r < rounds; ++r) {
    // Round 0 draws one centre uniformly; later rounds draw equal batches of the remaining
    // ksub - 1 (equal sizes keep the number of distinct GEMM shapes, each a JIT compile, small).
    const int64_t per_round = rounds == 1 ? ksub : (ksub - 1 + rounds - 2) / (rounds - 1);
    const int64_t count = rounds == 1 ? ksub : (r == 0 ? 1 : std::min(per_round, ksub - filled[0]));
    if (count <= 0) break;
    batch_centroids.assign(M * count * dsub, 0.0f);
    for (int64_t m = 0; m < M; ++m) {
      std::vector<int64_t> picks;
      if (r == 0) {
        std::vector<float> ones(n, 1.0f);
        picks = SampleDSquared(ones.data(), 1, n, count, rng, &taken[m]);
      } else {
        picks = SampleDSquared(mind.data() + m, M, n, count, rng, &taken[m]);
      }
      for (int64_t p = 0; p < count; ++p) {
        const float* src = xs + picks[p] * d + m * dsub;
        std::memcpy(batch_centroids.data() + (m * count + p) * dsub, src, dsub * sizeof(float));
        std::memcpy(centroids + (m * ksub + filled[m] + p) * dsub, src, dsub * sizeof(float));
      }
      filled[m] += count;
    }
    if (filled[0] == ksub) break;  // the last round's distances are never sampled from
    const PqShape batch_shape{d, M, count};
    batch_dist.resize(n * M);
    batch_assign.resize(n * M);
    if (count >= 2) {
      PqPrepareTables(batch_shape, batch_centroids.data(), &batch_tables);
      PqAssign(pool, batch_shape, batch_centroids.data(), batch_tables, n, xs, d,
               batch_assign.data(), batch_dist.data());
    } else {
      // A single centre: the distance is a plain loop (PqShape needs ksub >= 2).
      pool.ParallelFor(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          for (int64_t m = 0; m < M; ++m) {
            const float* xv = xs + i * d + m * dsub;
            const float* cv = batch_centroids.data() + m * dsub;
            float s = 0.0f;
            for (int64_t k = 0; k < dsub; ++k) s += (xv[k] - cv[k]) * (xv[k] - cv[k]);
            batch_dist[i * M + m] = s;
          }
        }
      });
    }
    for (int64_t i = 0; i < n * M; ++i) mind[i] = std::min(mind[i], batch_dist[i]);
  }
  for (int64_t m = 0; m < M; ++m) MEMORIA_CHECK(filled[m] == ksub, "k-means++ filled != ksub");
}

}  // namespace

bool PqShape::valid() const {
  return d > 0 && M > 0 && d % M == 0 && ksub >= 2 && ksub <= 65536;
}

void PqCentroidNorms(const PqShape& shape, const float* centroids, float* norms) {
  const int64_t dsub = shape.dsub();
  for (int64_t j = 0; j < shape.M * shape.ksub; ++j) norms[j] = SquaredNorm(centroids + j * dsub, dsub);
}

void PqPrepareTables(const PqShape& shape, const float* centroids, PqTables* tables) {
  const int64_t M = shape.M, ksub = shape.ksub, dsub = shape.dsub();
  tables->norms.resize(M * ksub);
  PqCentroidNorms(shape, centroids, tables->norms.data());
  if (!UseFused(shape)) {
    tables->transposed.clear();
    return;
  }
  tables->transposed.resize(M * dsub * ksub);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t j = 0; j < ksub; ++j) {
      for (int64_t k = 0; k < dsub; ++k) {
        tables->transposed[(m * dsub + k) * ksub + j] = centroids[(m * ksub + j) * dsub + k];
      }
    }
  }
}

void PqAssign(const ThreadPool& pool, const PqShape& shape, const float* centroids,
              const PqTables& tables, int64_t n, const float* x, int64_t ldx, int32_t* assign,
              float* dist) {
  const int64_t M = shape.M;
  AssignCore(pool, shape, centroids, tables, n, x, ldx,
             [&](int64_t i, int64_t m, int32_t j, float d2) {
               assign[i * M + m] = j;
               if (dist != nullptr) dist[i * M + m] = d2;
             });
}

void PqAssignReference(const PqShape& shape, const float* centroids, int64_t n, const float* x,
                       int64_t ldx, int32_t* assign, float* dist) {
  const int64_t M = shape.M, ksub = shape.ksub, dsub = shape.dsub();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t m = 0; m < M; ++m) {
      double best = std::numeric_limits<double>::infinity();
      int32_t best_j = 0;
      for (int64_t j = 0; j < ksub; ++j) {
        double s = 0.0;
        for (int64_t k = 0; k < dsub; ++k) {
          const double diff = double(x[i * ldx + m * dsub + k]) - centroids[(m * ksub + j) * dsub + k];
          s += diff * diff;
        }
        if (s < best) {
          best = s;
          best_j = static_cast<int32_t>(j);
        }
      }
      assign[i * M + m] = best_j;
      if (dist != nullptr) dist[i * M + m] = static_cast<float>(best);
    }
  }
}

void PqEncode(const ThreadPool& pool, const PqShape& shape, const float* centroids,
              const PqTables& tables, int64_t n, const float* x, int64_t ldx, uint8_t* codes) {
  if (PqCodeBytes(shape.ksub) == 1) {
    const int64_t M = shape.M;
    AssignCore(pool, shape, centroids, tables, n, x, ldx,
               [&](int64_t i, int64_t m, int32_t j, float) { codes[i * M + m] = static_cast<uint8_t>(j); });
  } else {
    AssignCore(pool, shape, centroids, tables, n, x, ldx,
               [&](int64_t i, int64_t m, int32_t j, float) { WriteCode(shape, codes, i, m, j); });
  }
}

void PqEncodeReference(const PqShape& shape, const float* centroids, int64_t n, const float* x,
                       int64_t ldx, uint8_t* codes) {
  std::vector<int32_t> assign(n * shape.M);
  PqAssignReference(shape, centroids, n, x, ldx, assign.data(), nullptr);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t m = 0; m < shape.M; ++m) WriteCode(shape, codes, i, m, assign[i * shape.M + m]);
  }
}

void PqDecode(const ThreadPool& pool, const PqShape& shape, const float* centroids, int64_t n,
              const uint8_t* codes, int64_t d_out, float* out, int64_t ldo) {
  MEMORIA_CHECK(shape.valid(), "invalid PQ shape");
  MEMORIA_CHECK(d_out <= shape.d && ldo >= d_out, "PQ decode: bad output width");
  if (n <= 0) return;
  // Rows per task: enough output (~64 KB) that the fork/join cost is amortised.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, d_out));
  pool.ParallelForDynamic(n, grain, [&](int64_t begin, int64_t end) {
    if (PqCodeBytes(shape.ksub) == 1) {
      DecodeRows<uint8_t>(shape, centroids, begin, end, codes, d_out, out, ldo);
    } else {
      DecodeRows<uint16_t>(shape, centroids, begin, end, codes, d_out, out, ldo);
    }
  });
}

void PqDecodeReference(const PqShape& shape, const float* centroids, int64_t n,
                       const uint8_t* codes, int64_t d_out, float* out, int64_t ldo) {
  const int64_t dsub = shape.dsub();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < d_out; ++k) {
      const int64_t m = k / dsub;
      const int32_t j = ReadCode(shape, codes, i, m);
      out[i * ldo + k] = centroids[(m * shape.ksub + j) * dsub + k % dsub];
    }
  }
}

bool PqCodesValid(const PqShape& shape, int64_t n, const uint8_t* codes) {
  if (shape.ksub == 256 || shape.ksub == 65536) return true;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t m = 0; m < shape.M; ++m) {
      if (ReadCode(shape, codes, i, m) >= shape.ksub) return false;
    }
  }
  return true;
}

void PqTrain(const ThreadPool& pool, const PqShape& shape, int64_t n, const float* x, int64_t ldx,
             const PqTrainOptions& options, float* centroids, PqTrainReport* report) {
  MEMORIA_CHECK(shape.valid(), "invalid PQ shape");
  MEMORIA_CHECK(n >= shape.ksub, "PQ training needs at least ksub vectors");
  const int64_t M = shape.M, ksub = shape.ksub, dsub = shape.dsub(), d = shape.d;
  std::mt19937_64 rng(options.seed);

  // Training subset, copied contiguous (n_train, d).
  int64_t n_train = n;
  if (options.max_points_per_centroid > 0) {
    n_train = std::min(n, options.max_points_per_centroid * ksub);
  }
  std::vector<int64_t> rows(n);
  std::iota(rows.begin(), rows.end(), 0);
  if (n_train < n) {
    for (int64_t i = 0; i < n_train; ++i) {
      std::uniform_int_distribution<int64_t> pick(i, n - 1);
      std::swap(rows[i], rows[pick(rng)]);
    }
  }
  std::vector<float> xs(n_train * d);
  pool.ParallelFor(n_train, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::memcpy(&xs[i * d], x + rows[i] * ldx, d * sizeof(float));
  });

  PqTrainReport local;
  PqTrainReport* rep = report != nullptr ? report : &local;
  *rep = PqTrainReport{};
  rep->training_vectors = n_train;

  InitKmeansPlusPlus(pool, shape, n_train, xs.data(), options, rng, centroids);

  const bool ema = options.update == PqUpdate::kEma;
  const int64_t batch = ema && options.ema_batch > 0 ? std::min(options.ema_batch, n_train) : n_train;
  std::vector<float> dist(batch * M), sums(M * ksub * dsub);
  PqTables tables;
  std::vector<int32_t> assign(batch * M);
  std::vector<int64_t> counts(M * ksub);
  // EMA state: smoothed counts N_j and sums s_j (centroid = s_j / N_j).
  std::vector<double> ema_n, ema_s;
  if (ema) {
    ema_n.assign(M * ksub, static_cast<double>(batch) / ksub);
    ema_s.resize(M * ksub * dsub);
    for (int64_t j = 0; j < M * ksub * dsub; ++j) ema_s[j] = centroids[j] * ema_n[j / dsub];
  }
  std::vector<int64_t> batch_rows;
  const float* bx = xs.data();

  for (int it = 0; it <= options.iterations; ++it) {
    // Mini-batch for EMA steps (a fresh random subset); Lloyd and the final pass use everything.
    const bool last = it == options.iterations;
    int64_t nb = n_train;
    bx = xs.data();
    std::vector<float> batch_x;
    if (ema && batch < n_train && !last) {
      nb = batch;
      batch_x.resize(nb * d);
      std::uniform_int_distribution<int64_t> pick(0, n_train - 1);
      for (int64_t i = 0; i < nb; ++i) std::memcpy(&batch_x[i * d], &xs[pick(rng) * d], d * sizeof(float));
      bx = batch_x.data();
    }
    if (static_cast<int64_t>(dist.size()) < nb * M) {
      dist.resize(nb * M);
      assign.resize(nb * M);
    }
    PqPrepareTables(shape, centroids, &tables);
    PqAssign(pool, shape, centroids, tables, nb, bx, d, assign.data(), dist.data());
    double total = 0.0;
    for (int64_t i = 0; i < nb * M; ++i) total += dist[i];
    rep->distortion.push_back(total / nb);
    if (options.on_iteration) {
      options.on_iteration(it, rep->distortion.back(), it > 0 ? rep->resets[it - 1] : 0);
    }
    if (last) break;

    // Per-subspace statistics and update; subspaces are independent, so they run in parallel.
    std::vector<int64_t> resets_per_m(M, 0);
    std::vector<uint64_t> seeds(M);
    for (auto& s : seeds) s = rng();
    pool.ParallelForDynamic(M, 1, [&](int64_t mb, int64_t me) {
      for (int64_t m = mb; m < me; ++m) {
        int64_t* cnt = counts.data() + m * ksub;
        float* sm = sums.data() + m * ksub * dsub;
        std::fill(cnt, cnt + ksub, 0);
        std::fill(sm, sm + ksub * dsub, 0.0f);
        for (int64_t i = 0; i < nb; ++i) {
          const int32_t j = assign[i * M + m];
          ++cnt[j];
          const float* xv = bx + i * d + m * dsub;
          float* s = sm + j * dsub;
          for (int64_t k = 0; k < dsub; ++k) s[k] += xv[k];
        }
        float* cm = centroids + m * ksub * dsub;
        for (int64_t j = 0; j < ksub; ++j) {
          if (ema) {
            const double g = options.ema_decay;
            double& N = ema_n[m * ksub + j];
            N = g * N + (1.0 - g) * cnt[j];
            for (int64_t k = 0; k < dsub; ++k) {
              double& s = ema_s[(m * ksub + j) * dsub + k];
              s = g * s + (1.0 - g) * sm[j * dsub + k];
              if (N > 1e-12) cm[j * dsub + k] = static_cast<float>(s / N);
            }
          } else if (cnt[j] > 0) {
            for (int64_t k = 0; k < dsub; ++k) cm[j * dsub + k] = sm[j * dsub + k] / cnt[j];
          }
        }
        // Codebook reset: rarely used codes restart at vectors drawn by D^2 sampling from this
        // subspace's current errors, where they can take load off crowded codes.
        if (options.reset_fraction > 0.0) {
          const double threshold = options.reset_fraction * static_cast<double>(nb) / ksub;
          std::vector<int64_t> dead;
          for (int64_t j = 0; j < ksub; ++j) {
            if (cnt[j] == 0 || cnt[j] < threshold) dead.push_back(j);
          }
          if (!dead.empty()) {
            std::mt19937_64 local_rng(seeds[m]);
            std::unordered_set<int64_t> taken;
            const auto picks = SampleDSquared(dist.data() + m, M, nb, std::min<int64_t>(dead.size(), nb),
                                              local_rng, &taken);
            for (size_t p = 0; p < picks.size(); ++p) {
              const int64_t j = dead[p];
              std::memcpy(cm + j * dsub, bx + picks[p] * d + m * dsub, dsub * sizeof(float));
              if (ema) {
                const double target = std::max(1.0, static_cast<double>(nb) / ksub);
                ema_n[m * ksub + j] = target;
                for (int64_t k = 0; k < dsub; ++k) ema_s[(m * ksub + j) * dsub + k] = cm[j * dsub + k] * target;
              }
            }
            resets_per_m[m] = static_cast<int64_t>(picks.size());
          }
        }
      }
    });
    const int64_t resets = std::accumulate(resets_per_m.begin(), resets_per_m.end(), int64_t{0});
    rep->resets.push_back(resets);
  }
}

}  // namespace memoria
