#include "kernels/product_key.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <type_traits>
#include <utility>

#include "base/status.h"
#include "kernels/gemm.h"

namespace memoria {
namespace {

using ScoredIndex = std::pair<float, int32_t>;

// Best-first order; equal scores keep the lower index first so the result is deterministic.
// A functor (not a function pointer) so the std algorithms inline it.
struct Better {
  bool operator()(const ScoredIndex& a, const ScoredIndex& b) const {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  }
};

// Replaces the root of a size-k heap whose root is its worst entry, and restores the heap.
inline void ReplaceWorst(ScoredIndex* heap, int64_t k, ScoredIndex item) {
  int64_t i = 0;
  while (true) {
    const int64_t l = 2 * i + 1;
    if (l >= k) break;
    int64_t worse = l;  // the worse child moves up
    if (l + 1 < k && Better()(heap[l], heap[l + 1])) worse = l + 1;
    if (!Better()(item, heap[worse])) break;
    heap[i] = heap[worse];
    i = worse;
  }
  heap[i] = item;
}

// The k best of scores[0, n) into out[0, k), best first. A size-k heap whose root is the worst
// kept entry: after the first few hundred scores almost every candidate loses the comparison
// with the root, which the AVX2 loop does for 8 scores at once, so the scan costs ~n/8 compares
// plus O(k log(n/k)) heap updates.
void TopK(const float* scores, int64_t n, int64_t k, ScoredIndex* out) {
  for (int64_t i = 0; i < k; ++i) out[i] = {scores[i], static_cast<int32_t>(i)};
  std::make_heap(out, out + k, Better());  // root = worst kept
  int64_t i = k;
#ifdef __AVX2__
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(scores + i);
    int mask = _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_set1_ps(out[0].first), _CMP_GT_OQ));
    while (mask != 0) {
      const int lane = __builtin_ctz(mask);
      mask &= mask - 1;
      const float s = scores[i + lane];
      if (s > out[0].first) ReplaceWorst(out, k, {s, static_cast<int32_t>(i + lane)});
    }
  }
#endif
  for (; i < n; ++i) {
    if (scores[i] > out[0].first) ReplaceWorst(out, k, {scores[i], static_cast<int32_t>(i)});
  }
  std::sort(out, out + k, Better());
}

// Per-thread buffers for the selection (sized by knn; grow once per thread).
struct SelectBuffers {
  std::vector<ScoredIndex> best1, best2, candidates;
};

// Selection for one (token, head): s1/s2 are that head's two rows of n_keys half-key scores.
void SelectOne(const ProductKeyParams& p, const float* s1, const float* s2, SelectBuffers* buf,
               int32_t* indices, float* weights) {
  const int64_t knn = p.knn;
  buf->best1.resize(knn);
  buf->best2.resize(knn);
  TopK(s1, p.n_keys, knn, buf->best1.data());
  TopK(s2, p.n_keys, knn, buf->best2.data());

  // With both lists sorted best first, pair (i, j) is beaten or tied by every (i', j') with
  // i' <= i and j' <= j: (i + 1)(j + 1) - 1 others. So only pairs with (i + 1)(j + 1) <= knn can
  // be among the knn best: about knn * ln(knn) candidates instead of knn^2.
  auto& cand = buf->candidates;
  cand.clear();
  for (int64_t i = 0; i < knn; ++i) {
    const int64_t jmax = knn / (i + 1);
    const float a = buf->best1[i].first;
    const int64_t base = static_cast<int64_t>(buf->best1[i].second) * p.n_keys;
    for (int64_t j = 0; j < jmax; ++j) {
      cand.push_back({a + buf->best2[j].first, static_cast<int32_t>(base + buf->best2[j].second)});
    }
  }
  std::partial_sort(cand.begin(), cand.begin() + knn, cand.end(), Better());

  // Softmax over the kept scores (the first is the largest).
  const float max_score = cand[0].first;
  float sum = 0.0f;
  for (int64_t r = 0; r < knn; ++r) {
    weights[r] = std::exp(cand[r].first - max_score);
    sum += weights[r];
  }
  const float inv = 1.0f / sum;
  for (int64_t r = 0; r < knn; ++r) {
    weights[r] *= inv;
    indices[r] = cand[r].second;
  }
}

// Rows ahead of the one being accumulated whose cache lines are prefetched. A row of the default
// table is 4 KiB (f32) or 2 KiB (bf16); a few rows ahead covers DRAM latency at the rate one core
// consumes them without evicting the accumulator from L1.
constexpr int kPrefetchRows = 4;

inline void PrefetchRange(const char* p, int64_t bytes) {
  for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
}

// acc[0, n) += w * row[0, n) for f32 rows; prefetches `next` (n elements) line by line.
inline void AxpyF32(float w, const float* row, float* acc, int64_t n, const float* next) {
  int64_t c = 0;
#ifdef __AVX2__
  const __m256 vw = _mm256_set1_ps(w);
  for (; c + 16 <= n; c += 16) {
    _mm_prefetch(reinterpret_cast<const char*>(next + c), _MM_HINT_T0);
    __m256 a0 = _mm256_loadu_ps(acc + c);
    __m256 a1 = _mm256_loadu_ps(acc + c + 8);
    a0 = _mm256_fmadd_ps(vw, _mm256_loadu_ps(row + c), a0);
    a1 = _mm256_fmadd_ps(vw, _mm256_loadu_ps(row + c + 8), a1);
    _mm256_storeu_ps(acc + c, a0);
    _mm256_storeu_ps(acc + c + 8, a1);
  }
#endif
  for (; c < n; ++c) acc[c] += w * row[c];
}

// acc[0, n) += w * row[0, n) for bf16 rows (bf16 -> f32 is a 16-bit left shift).
inline void AxpyBf16(float w, const uint16_t* row, float* acc, int64_t n, const uint16_t* next) {
  int64_t c = 0;
#ifdef __AVX2__
  const __m256 vw = _mm256_set1_ps(w);
  for (; c + 32 <= n; c += 32) {
    _mm_prefetch(reinterpret_cast<const char*>(next + c), _MM_HINT_T0);
    const __m256i raw0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c));
    const __m256i raw1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c + 16));
    const __m256 v0 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(raw0)), 16));
    const __m256 v1 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(raw0, 1)), 16));
    const __m256 v2 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(raw1)), 16));
    const __m256 v3 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(raw1, 1)), 16));
    _mm256_storeu_ps(acc + c, _mm256_fmadd_ps(vw, v0, _mm256_loadu_ps(acc + c)));
    _mm256_storeu_ps(acc + c + 8, _mm256_fmadd_ps(vw, v1, _mm256_loadu_ps(acc + c + 8)));
    _mm256_storeu_ps(acc + c + 16, _mm256_fmadd_ps(vw, v2, _mm256_loadu_ps(acc + c + 16)));
    _mm256_storeu_ps(acc + c + 24, _mm256_fmadd_ps(vw, v3, _mm256_loadu_ps(acc + c + 24)));
  }
#endif
  for (; c < n; ++c) acc[c] += w * Bf16ToF32(row[c]);
}

// One token's weighted row sum over columns [c0, c1).
template <typename T>
void GatherBlock(const int32_t* idx, const float* w, int64_t rows, const T* values, int64_t v_dim,
                 int64_t c0, int64_t c1, float* acc) {
  const int64_t n = c1 - c0;
  std::fill(acc, acc + n, 0.0f);
  for (int64_t r = 0; r < std::min<int64_t>(kPrefetchRows, rows); ++r) {
    PrefetchRange(reinterpret_cast<const char*>(values + idx[r] * v_dim + c0),
                  n * static_cast<int64_t>(sizeof(T)));
  }
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = values + static_cast<int64_t>(idx[r]) * v_dim + c0;
    // Past the last row, "prefetch" the current one again: harmless and branch-free.
    const int64_t ahead = r + kPrefetchRows < rows ? r + kPrefetchRows : r;
    const T* next = values + static_cast<int64_t>(idx[ahead]) * v_dim + c0;
    if constexpr (std::is_same_v<T, float>) {
      AxpyF32(w[r], row, acc, n, next);
    } else {
      AxpyBf16(w[r], row, acc, n, next);
    }
  }
}

// Dot product of two f32 vectors of length n.
inline float Dot(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  float sum = 0.0f;
#ifdef __AVX2__
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  const __m256 v = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  sum = _mm_cvtss_f32(h);
#endif
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// Token counts up to this score the half-keys with one parallel pass of dot products instead of
// 2 * heads matmul calls: with so few tokens every key is read once either way, and one pass is
// one fork/join instead of 2 * heads of them (which dominate a decode step's scoring time).
constexpr int64_t kSmallBatchTokens = 4;

// half_scores[t, h, s, i] = q[t, h, s-th half] . keys[h, s, i, :] for tokens <= kSmallBatchTokens.
void HalfScoresSmallBatch(const ThreadPool& pool, const ProductKeyParams& p, const float* queries,
                          int64_t tokens, const float* keys, float* half_scores) {
  const int64_t half = p.half(), q_stride = p.heads * p.k_dim;
  const int64_t rows = p.heads * 2 * p.n_keys;  // == one token's score stride
  pool.ParallelFor(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t hs = r / p.n_keys;  // h * 2 + s
      const float* key = keys + r * half;
      const float* q = queries + (hs / 2) * p.k_dim + (hs % 2) * half;
      for (int64_t t = 0; t < tokens; ++t) half_scores[t * rows + r] = Dot(q + t * q_stride, key, half);
    }
  });
}

}  // namespace

Status ValidateProductKeyParams(const ProductKeyParams& p) {
  auto bad = [](const std::string& m) { return InvalidArgumentError(m); };
  if (p.heads < 1) return bad("heads " + std::to_string(p.heads) + " < 1");
  if (p.n_keys < 1 || p.n_keys > 46340) {
    return bad("n_keys " + std::to_string(p.n_keys) +
               " outside [1, 46340] (n_keys^2 slots must fit int32)");
  }
  if (p.k_dim < 2 || p.k_dim % 2 != 0) {
    return bad("k_dim " + std::to_string(p.k_dim) + " must be even and >= 2");
  }
  if (p.knn < 1 || p.knn > p.n_keys) {
    return bad("knn " + std::to_string(p.knn) + " outside [1, n_keys = " +
               std::to_string(p.n_keys) + "]");
  }
  if (p.v_dim < 1) return bad("v_dim " + std::to_string(p.v_dim) + " < 1");
  return Status::Ok();
}

void ProductKeySelect(const ThreadPool& pool, const ProductKeyParams& p, const float* queries,
                      int64_t tokens, const float* keys, float* half_scores, int32_t* indices,
                      float* weights) {
  const int64_t half = p.half();
  const int64_t q_stride = p.heads * p.k_dim;
  const int64_t s_stride = p.heads * 2 * p.n_keys;  // one token's half-key scores
  for (int64_t t0 = 0; t0 < tokens; t0 += kProductKeyTokenBlock) {
    const int64_t tb = std::min(kProductKeyTokenBlock, tokens - t0);
    // Scores of the block's tokens against each (head, half) key set: [tb, n_keys] matmuls, so
    // each key set is read once per block rather than once per token.
    if (tb <= kSmallBatchTokens) {
      HalfScoresSmallBatch(pool, p, queries + t0 * q_stride, tb, keys, half_scores);
    } else {
      for (int64_t h = 0; h < p.heads; ++h) {
        for (int64_t s = 0; s < 2; ++s) {
          MatmulTransB(pool, tb, p.n_keys, half, queries + t0 * q_stride + h * p.k_dim + s * half,
                       q_stride, keys + (h * 2 + s) * p.n_keys * half, DType::kF32, half,
                       half_scores + (h * 2 + s) * p.n_keys, s_stride);
        }
      }
    }
    pool.ParallelFor(tb * p.heads, [&](int64_t begin, int64_t end) {
      thread_local SelectBuffers buf;
      for (int64_t item = begin; item < end; ++item) {
        const int64_t t = item / p.heads, h = item % p.heads;
        const float* s1 = half_scores + t * s_stride + (h * 2) * p.n_keys;
        const int64_t out = ((t0 + t) * p.heads + h) * p.knn;
        SelectOne(p, s1, s1 + p.n_keys, &buf, indices + out, weights + out);
      }
    });
  }
}

void ProductKeyGather(const ThreadPool& pool, const ProductKeyParams& p, int64_t tokens,
                      const int32_t* indices, const float* weights, const void* values,
                      DType values_dtype, float* out, int64_t out_stride) {
  MEMORIA_CHECK(values_dtype == DType::kF32 || values_dtype == DType::kBF16,
                std::string("product-key values must be f32 or bf16, got ") + DTypeName(values_dtype));
  // Few tokens (decode): split each row into column blocks so every thread reads a share of every
  // value row. Blocks are multiples of 32 elements (whole cache lines for f32 and bf16) and at
  // least 128 wide so the per-row overhead stays small.
  const int64_t threads = pool.num_threads();
  int64_t col_blocks = 1;
  if (tokens < 4 * threads) {
    col_blocks = std::min((4 * threads + tokens - 1) / tokens, std::max<int64_t>(1, p.v_dim / 128));
  }
  const int64_t block = ((p.v_dim + col_blocks - 1) / col_blocks + 31) / 32 * 32;
  col_blocks = (p.v_dim + block - 1) / block;
  const int64_t rows = p.heads * p.knn;
  pool.ParallelFor(tokens * col_blocks, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t t = item / col_blocks;
      const int64_t c0 = (item % col_blocks) * block;
      const int64_t c1 = std::min(p.v_dim, c0 + block);
      const int32_t* idx = indices + t * rows;
      const float* w = weights + t * rows;
      float* acc = out + t * out_stride + c0;
      if (values_dtype == DType::kF32) {
        GatherBlock(idx, w, rows, static_cast<const float*>(values), p.v_dim, c0, c1, acc);
      } else {
        GatherBlock(idx, w, rows, static_cast<const uint16_t*>(values), p.v_dim, c0, c1, acc);
      }
    }
  });
}

void ProductKeyLookup(const ThreadPool& pool, const ProductKeyParams& p, const float* queries,
                      int64_t tokens, const float* keys, const void* values, DType values_dtype,
                      float* out, int64_t out_stride, ProductKeyScratch* scratch) {
  if (tokens <= 0) return;
  MEMORIA_CHECK(ValidateProductKeyParams(p).ok(), ValidateProductKeyParams(p).message());
  const int64_t block = std::min(tokens, kProductKeyTokenBlock);
  const size_t score_floats = static_cast<size_t>(block * p.heads * 2 * p.n_keys);
  const size_t sel = static_cast<size_t>(tokens * p.heads * p.knn);
  if (scratch->half_scores.size() < score_floats) scratch->half_scores.resize(score_floats);
  if (scratch->indices.size() < sel) scratch->indices.resize(sel);
  if (scratch->weights.size() < sel) scratch->weights.resize(sel);
  ProductKeySelect(pool, p, queries, tokens, keys, scratch->half_scores.data(),
                   scratch->indices.data(), scratch->weights.data());
  ProductKeyGather(pool, p, tokens, scratch->indices.data(), scratch->weights.data(), values,
                   values_dtype, out, out_stride);
}

void ProductKeyLookupReference(const ProductKeyParams& p, const float* queries, int64_t tokens,
                               const float* keys, const void* values, DType values_dtype,
                               float* out, int64_t out_stride, int32_t* indices, float* weights) {
  const int64_t half = p.half();
  std::vector<double> s1(p.n_keys), s2(p.n_keys);
  std::vector<int64_t> o1(p.n_keys), o2(p.n_keys);
  std::vector<std::pair<double, int64_t>> all;
  std::vector<double> acc(p.v_dim);
  auto value_at = [&](int64_t slot, int64_t c) -> double {
    if (values_dtype == DType::kF32) return static_cast<const float*>(values)[slot * p.v_dim + c];
    return Bf16ToF32(static_cast<const uint16_t*>(values)[slot * p.v_dim + c]);
  };
  for (int64_t t = 0; t < tokens; ++t) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t h = 0; h < p.heads; ++h) {
      const float* q = queries + (t * p.heads + h) * p.k_dim;
      for (int64_t i = 0; i < p.n_keys; ++i) {
        const float* k1 = keys + ((h * 2 + 0) * p.n_keys + i) * half;
        const float* k2 = keys + ((h * 2 + 1) * p.n_keys + i) * half;
        double a = 0, b = 0;
        for (int64_t c = 0; c < half; ++c) {
          a += static_cast<double>(q[c]) * k1[c];
          b += static_cast<double>(q[half + c]) * k2[c];
        }
        s1[i] = a;
        s2[i] = b;
      }
      auto by_score = [](const std::vector<double>& s) {
        return [&s](int64_t x, int64_t y) { return s[x] > s[y] || (s[x] == s[y] && x < y); };
      };
      std::iota(o1.begin(), o1.end(), 0);
      std::iota(o2.begin(), o2.end(), 0);
      std::sort(o1.begin(), o1.end(), by_score(s1));
      std::sort(o2.begin(), o2.end(), by_score(s2));
      all.clear();
      for (int64_t i = 0; i < p.knn; ++i) {
        for (int64_t j = 0; j < p.knn; ++j) {
          all.push_back({s1[o1[i]] + s2[o2[j]], o1[i] * p.n_keys + o2[j]});
        }
      }
      std::sort(all.begin(), all.end(), [](const auto& x, const auto& y) {
        return x.first > y.first || (x.first == y.first && x.second < y.second);
      });
      double sum = 0;
      for (int64_t r = 0; r < p.knn; ++r) sum += std::exp(all[r].first - all[0].first);
      for (int64_t r = 0; r < p.knn; ++r) {
        const double w = std::exp(all[r].first - all[0].first) / sum;
        const int64_t slot = all[r].second;
        if (indices) indices[(t * p.heads + h) * p.knn + r] = static_cast<int32_t>(slot);
        if (weights) weights[(t * p.heads + h) * p.knn + r] = static_cast<float>(w);
        for (int64_t c = 0; c < p.v_dim; ++c) acc[c] += w * value_at(slot, c);
      }
    }
    for (int64_t c = 0; c < p.v_dim; ++c) out[t * out_stride + c] = static_cast<float>(acc[c]);
  }
}

}  // namespace memoria
