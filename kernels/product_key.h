// Product-key memory lookup (Lample et al. 2019, "Large Memory Layers with Product Keys"; Meta's
// "Memory Layers at Scale" 2024): the sparse read at the heart of a memory layer.
//
// For each token t and read head h the query q[t, h] (k_dim floats) is split into two halves of
// half = k_dim / 2. Each half is scored against its own set of n_keys half-keys:
//   s1[i] = q[t, h, :half] . keys[h, 0, i, :]      s2[j] = q[t, h, half:] . keys[h, 1, j, :]
// The memory has n_keys^2 slots; slot (i, j) = i * n_keys + j has score s1[i] + s2[j]. The lookup
// keeps the knn best i of s1 and the knn best j of s2, then the knn best of those knn x knn sums,
// so a read scores 2 * n_keys half-keys instead of n_keys^2 full keys. The kept scores go through
// a softmax (per head) and weight their value rows; the heads' results are summed:
//   out[t, :] = sum_h sum_{r < knn} w[t, h, r] * values[index[t, h, r], :]
//
// Layouts (row-major, f32 unless stated):
//   queries: [tokens, heads, k_dim]              (row stride heads * k_dim)
//   keys:    [heads, 2, n_keys, k_dim / 2]       (Meta's layout: keys.view(heads, 2, n_keys, half))
//   values:  [n_keys^2, v_dim], f32 or bf16      (row stride v_dim)
//   indices: [tokens, heads, knn] int32 slot ids, best first
//   weights: [tokens, heads, knn] softmax weights, in the order of indices
//   out:     [tokens, v_dim] with row stride out_stride >= v_dim
//
// Cost per token: heads * n_keys * k_dim multiply-adds for the scores (oneDNN matmuls over blocks
// of up to kProductKeyTokenBlock tokens, so the keys are read once per block; up to 4 tokens use
// one parallel pass of dot products instead), O(heads * n_keys) for the top-k, and
// heads * knn * v_dim multiply-adds for the value reads. The value reads dominate the memory
// traffic: heads * knn random rows of v_dim * sizeof(value) bytes per token (512 KiB at the
// default heads 4, knn 32, v_dim 1024, f32), so the read is bandwidth- and latency-bound and the
// kernel prefetches the rows it will read next. bf16 values halve those bytes.
//
// Threads: selection runs over (token, head) pairs; the value reads run over tokens and, when
// there are fewer tokens than threads (decode), over column blocks of v_dim as well (the values
// are "sharded along the embedding dimension").
//
// Ties between equal scores may be broken differently from PyTorch's topk; with real-valued
// scores this changes nothing but the order of equal entries.
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "kernels/dtype.h"
#include "kernels/thread_pool.h"

namespace memoria {

struct ProductKeyParams {
  int64_t heads = 4;     // read heads, >= 1
  int64_t n_keys = 1024; // half-keys per set; the memory has n_keys^2 slots (<= 46340^2 < 2^31)
  int64_t k_dim = 512;   // query / key size per head, even; each half has k_dim / 2
  int64_t knn = 32;      // slots read per head, 1 <= knn <= n_keys
  int64_t v_dim = 1024;  // value row size

  int64_t slots() const { return n_keys * n_keys; }
  int64_t half() const { return k_dim / 2; }
};

// OK when p is usable, else INVALID_ARGUMENT naming the bad field and its value
// ("knn 40 outside [1, n_keys = 32]"). The kernels below assume valid parameters (they abort on
// invalid ones); layers validate their config once at load.
Status ValidateProductKeyParams(const ProductKeyParams& p);

// Reusable buffers for ProductKeyLookup. Grows on first use to the size a call needs
// (about min(tokens, 128) * heads * 2 * n_keys floats plus tokens * heads * knn * 8 bytes), then
// allocates nothing more for calls of the same or smaller size. One per concurrent caller.
struct ProductKeyScratch {
  std::vector<float> half_scores;
  std::vector<int32_t> indices;
  std::vector<float> weights;
};

// Scores and selection: fills indices and weights ([tokens, heads, knn], best first, weights
// softmaxed per head) from queries and keys. half_scores: scratch of at least
// min(tokens, kProductKeyTokenBlock) * heads * 2 * n_keys floats.
inline constexpr int64_t kProductKeyTokenBlock = 128;
void ProductKeySelect(const ThreadPool& pool, const ProductKeyParams& p, const float* queries,
                      int64_t tokens, const float* keys, float* half_scores, int32_t* indices,
                      float* weights);

// Weighted sum of value rows: out[t, :] = sum_{h, r} weights[t, h, r] * values[indices[t, h, r], :]
// (out is overwritten). Indices must lie in [0, n_keys^2).
void ProductKeyGather(const ThreadPool& pool, const ProductKeyParams& p, int64_t tokens,
                      const int32_t* indices, const float* weights, const void* values,
                      DType values_dtype, float* out, int64_t out_stride);

// Select + Gather. values_dtype: kF32 or kBF16.
void ProductKeyLookup(const ThreadPool& pool, const ProductKeyParams& p, const float* queries,
                      int64_t tokens, const float* keys, const void* values, DType values_dtype,
                      float* out, int64_t out_stride, ProductKeyScratch* scratch);

// Plain-loop reference (double accumulation, full sorts, no shortcuts) for tests. Same contract
// as ProductKeyLookup; indices/weights, when not null, receive the selection ([tokens, heads, knn]).
void ProductKeyLookupReference(const ProductKeyParams& p, const float* queries, int64_t tokens,
                               const float* keys, const void* values, DType values_dtype,
                               float* out, int64_t out_stride, int32_t* indices = nullptr,
                               float* weights = nullptr);

}  // namespace memoria
