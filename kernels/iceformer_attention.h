// IceFormer attention (Mao, Ester, Li, ICLR 2024): each query attends only to its top-k keys by
// inner product, found with Prioritized DCI (kernels/dci_index.h); the softmax is renormalised
// over those k keys and the output is their probability-weighted sum of values. The attention
// mass outside the top-k is dropped, as in the official implementation.
//
// Shapes, strides, GQA head mapping, causal semantics and q_offset are exactly those of
// Attention() in kernels/attention.h:
//   q:   [q_len,  n_heads    * head_dim], row stride q_stride
//   k,v: [kv_len, n_kv_heads * head_dim], row strides k_stride, v_stride
//   out: [q_len,  n_heads    * head_dim], row stride out_stride
// Query head h reads KV head h / (n_heads / n_kv_heads). Causal: key j is visible to query i iff
// j <= i + q_offset. A query that sees no key gets a zero output.
//
// Per KV head one DciIndex is built over that head's keys (norm bound c = the largest key norm
// of the head) and shared by the query heads of its group. Bidirectional: all keys are added at
// once (bulk build), then every query searches. Causal: keys are added one block of positions at
// a time (the first block in bulk) and each query hides the keys past its position, so no query
// ever sees a future key.
//
// Queries that see at most `exact_up_to` keys (the start of a causal prompt, or short prompts)
// get exact attention over all their visible keys instead, from the blocked Attention() kernel:
// there the search would cost as much as the exact sum and could only lose accuracy.
//
// Relative position bias (T5): added to the retrieved keys' scores after the search, so the
// top-k is chosen by q.k alone. Exact for layers without bias (T5 cross-attention, LLaMA).
//
// Cost per query (default kScan): one pass over the visible keys' m L 16-bit projections (a
// fraction of a ns per key and direction), a threshold from a sample, exact fp32 dot products for
// the ~candidates_per_k * k admitted keys, then k value rows. kWalk instead visits at most
// max_visits sorted-array entries per composite index (a few ns each) and screens its candidates
// through 128-byte int8 codes. Memory: one index per KV head at a time (kScan: 2 m L + 2 bytes
// of projections and radius, 1 byte of band and 4 of band membership per key; kWalk: 8 m L
// bytes of arrays + d + 5 bytes of int8 code, scale and band; see dci_index.h) plus per-thread
// scratch of 2 bytes (kScan) or L bytes (kWalk) per key; never an [q_len x kv_len] buffer.
//
// Thread-safety / determinism: runs on `pool`; the output does not depend on the number of
// threads or the scheduling (each query's search is independent and the index directions come
// from options.seed).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/attention.h"
#include "kernels/dci_index.h"
#include "kernels/thread_pool.h"

namespace memoria {

struct IceformerOptions {
  // Keys kept per query. top_k > 0: fixed. top_k == 0: k(n) = max(min(floor(top_k_fraction * n),
  // top_k_max), top_k_min) over the n keys of the prompt (the paper's schedule). Larger k keeps
  // more attention mass (accuracy) at a linear cost in the softmax/value sum.
  int top_k = 0;
  float top_k_fraction = 5e-3f;
  int top_k_min = 30;
  int top_k_max = 50;

  // DCI structure (see DciOptions). Defaults measured on clustered keys of varied norms
  // (bench/results/iceformer.md): the scan of the projection table (kScan) admits the same keys
  // as the walk at a fraction of its cost per key at head_dim 128, which makes more directions
  // affordable: m = 6 simple indices in L = 1 composite index rank the keys well enough that
  // 5 k candidates hold the true top-k (the walk needed m = 2 and 20 k candidates, scored
  // through int8 codes). Norm bands turned recall from ~0 into ~0.99 when key norms vary by 2x;
  // 24 bands of ratio 0.97 (norms down to 0.48x the largest in their own bands) rank real keys
  // better than 16 of 0.95 (stories260K recall@30 0.998 vs 0.979 at the same budget) at the same
  // speed and recall on the benchmark's keys.
  DciSearch search = DciSearch::kScan;
  int num_simple = 6;
  int num_composite = 1;
  int num_bands = 24;
  float band_ratio = 0.97f;
  float band_height = 0.7f;
  // Search budget per composite index, as multiples of k (k0 = candidates_per_k * k admitted
  // candidates, scored exactly; k1 = visits_per_k * k visited sorted-array entries over all norm
  // bands, kWalk only: the scan reads every visible key's projections). Higher -> recall closer
  // to 1, slower (recall >= 0.997 at n = 4096 .. 32768 with these values on the benchmark's
  // topic keys and bidirectional clustered keys; the walk needs candidates_per_k = 20,
  // visits_per_k = 200).
  int candidates_per_k = 5;
  int visits_per_k = 200;

  // The first this-many keys (positions 0 ..) are always among each query's scored candidates
  // (DciQueryOptions::first_keys): trained LMs park attention on their first tokens ("attention
  // sinks"), and scoring 4 extra keys is cheap insurance against the walk missing them. They
  // still enter the top-k only by score. Measured effect on stories260K is small (recall@30
  // 0.9654 -> 0.9662 at m = 3, L = 2, candidates_per_k = 3). 0 = pure IceFormer.
  int first_keys = 4;

  // Seed of the random directions; KV head g uses seed + g.
  uint64_t seed = 0x1CEF0;

  // Queries that see at most this many keys use exact attention (see header comment). Also the
  // engine's switch: UseIceformer() is false for kv_len <= exact_up_to, where the exact kernel
  // should be called instead.
  int64_t exact_up_to = 1024;

  // Causal mode: keys are added to the index in blocks of at least this many positions
  // (amortises the sorted-array merges). The queries of a block skip the block's keys past their
  // own position.
  int64_t causal_block = 256;
  // ... or this fraction of the keys the block's first query sees, when larger: fewer blocks
  // (each one a parallel region and an index update) at a bounded share of hidden keys walked.
  float causal_block_fraction = 0.25f;
};

// k for a prompt of n keys (never more than n).
int64_t IceformerTopK(const IceformerOptions& options, int64_t n);

// True when IceformerAttention is worth calling for this many keys (kv_len > exact_up_to).
bool UseIceformer(const IceformerOptions& options, int64_t kv_len);

// Optional outputs for measuring the search (tests, benchmarks).
struct IceformerTrace {
  // [n_heads, q_len, k] key ids chosen per query, -1 where fewer than k were found (or the query
  // was computed exactly: then all of its visible keys were used and the row is left at -1).
  std::vector<int32_t> ids;
  int64_t k = 0;
  // Bytes of one DCI index over kv_len keys (excluding the keys) and of one thread's scratch.
  int64_t index_bytes = 0;
  int64_t scratch_bytes = 0;
};

// Same contract as Attention() (see kernels/attention.h), with the top-k approximation above.
// p.head_dim >= 1, n_heads a multiple of n_kv_heads (aborts otherwise, like Attention()).
void IceformerAttention(const ThreadPool& pool, const AttentionParams& p,
                        const IceformerOptions& options, const float* q, int64_t q_stride,
                        const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                        float* out, int64_t out_stride, IceformerTrace* trace = nullptr);

class DciIndex;

// The per-KV-head indices of IceformerAttention over one fixed key set, built once and queried
// by any number of Attend calls: for cross-attention whose keys (an encoder output) stay the
// same for every decoding step. Attend(q) gives exactly the output of the bidirectional
// IceformerAttention(q) over the same keys, values and options (same indices, same search).
//
// Keys are referenced in place: k[j * k_stride + g * head_dim + 0 .. head_dim) is key j of KV
// head g, and those rows must stay valid and unchanged until the next Build or the destruction.
// When kv_len <= max(exact_up_to, k(kv_len)) no index is built (searched() is false) and Attend
// computes exact attention with the blocked Attention() kernel, as IceformerAttention does.
// Memory: IndexBytes() (one DCI index per KV head, see dci_index.h); per Attend call the
// per-thread scratch (L bytes per key plus O(k) per thread).
//
// Thread-safety: Attend is const and may run concurrently (each call has its own scratch);
// Build must not overlap Attend. Movable, not copyable.
class IceformerKeyIndex {
 public:
  IceformerKeyIndex();
  ~IceformerKeyIndex();
  IceformerKeyIndex(IceformerKeyIndex&&) noexcept;
  IceformerKeyIndex& operator=(IceformerKeyIndex&&) noexcept;
  IceformerKeyIndex(const IceformerKeyIndex&) = delete;
  IceformerKeyIndex& operator=(const IceformerKeyIndex&) = delete;

  // Indexes keys k [kv_len, n_kv_heads * head_dim] (row stride k_stride), replacing any previous
  // contents. head_dim >= 1 and n_kv_heads >= 1 (aborts otherwise).
  void Build(const ThreadPool& pool, const float* k, int64_t kv_len, int n_kv_heads, int head_dim,
             int64_t k_stride, const IceformerOptions& options);

  // Bidirectional attention of q [q_len, n_heads * head_dim] (row stride q_stride) over the
  // indexed keys and values v [kv_len, n_kv_heads * head_dim] (row stride v_stride) into out
  // [q_len, n_heads * head_dim] (row stride out_stride); scores are scale * q.k, no bias. Query
  // head h reads KV head h / (n_heads / n_kv_heads); n_heads must be a multiple of n_kv_heads
  // (aborts otherwise, and when called before Build). trace as in IceformerAttention.
  void Attend(const ThreadPool& pool, int n_heads, float scale, const float* q, int64_t q_len,
              int64_t q_stride, const float* v, int64_t v_stride, float* out, int64_t out_stride,
              IceformerTrace* trace = nullptr) const;

  // True when Attend searches the indices (false: exact attention, or nothing built yet).
  bool searched() const;
  int64_t kv_len() const { return kv_len_; }
  int n_kv_heads() const { return n_kv_heads_; }
  int head_dim() const { return head_dim_; }
  // Keys kept per query, IceformerTopK(options, kv_len).
  int64_t top_k() const { return top_k_; }
  // Bytes of all KV heads' indices (0 when not searched).
  int64_t IndexBytes() const;

 private:
  const float* k_ = nullptr;
  int64_t k_stride_ = 0;
  int64_t kv_len_ = 0;
  int n_kv_heads_ = 0;
  int head_dim_ = 0;
  int64_t top_k_ = 0;
  IceformerOptions options_;
  std::vector<std::unique_ptr<DciIndex>> heads_;  // [n_kv_heads] when searched()
};

}  // namespace memoria
