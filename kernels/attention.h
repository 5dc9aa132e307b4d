// Exact scaled-dot-product attention with grouped-query heads, blocked with an online softmax so
// that no [q_len x kv_len] matrix is ever materialised (memory O(block^2) per thread).
//
// Shapes (row-major, each row one token, heads concatenated):
//   q:   [q_len,  n_heads    * head_dim], row stride q_stride
//   k,v: [kv_len, n_kv_heads * head_dim], row strides k_stride, v_stride
//   out: [q_len,  n_heads    * head_dim], row stride out_stride
// Query head h reads KV head h / (n_heads / n_kv_heads) (Hugging Face repeat_kv order).
//
// score(i, j) = scale * q_i . k_j  + bias(h, j - (i + q_offset))   (bias optional)
// Causal: key j is visible to query i iff j <= i + q_offset (q_offset = number of keys before the
// first query: the KV-cache length before this step). Bidirectional: all keys visible.
// A query that sees no key gets a zero output.
#pragma once

#include <cstdint>

#include "kernels/thread_pool.h"

namespace memoria {

// Additive bias that depends only on the relative position r = key_pos - query_pos (T5's
// relative attention bias). values: [n_heads, length]; entry for r is
// values[h * length + clamp(r - min_relative, 0, length - 1)] (T5 buckets saturate, so clamping
// the ends is exact when the table spans the saturation distance).
struct RelativeBias {
  const float* values = nullptr;
  int64_t min_relative = 0;
  int64_t length = 0;
};

struct AttentionParams {
  int64_t q_len = 0;
  int64_t kv_len = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  float scale = 1.0f;      // 1/sqrt(head_dim) for LLaMA, 1 for T5
  bool causal = false;
  int64_t q_offset = 0;    // see header comment
  RelativeBias bias;       // values == nullptr: no bias
};

void Attention(const ThreadPool& pool, const AttentionParams& p, const float* q, int64_t q_stride,
               const float* k, int64_t k_stride, const float* v, int64_t v_stride, float* out,
               int64_t out_stride);

// Plain reference: materialises each query's scores (double accumulation), same semantics.
void AttentionReference(const AttentionParams& p, const float* q, int64_t q_stride,
                        const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                        float* out, int64_t out_stride);

}  // namespace memoria
