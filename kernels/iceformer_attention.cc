#include "kernels/iceformer_attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "base/status.h"
#include "kernels/dci_index.h"

namespace memoria {
namespace {

inline float DotF(const float* a, const float* b, int n) {
  // Four partial sums let the compiler keep independent FMA chains.
  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

inline float BiasAt(const AttentionParams& p, int h, int64_t rel) {
  const RelativeBias& b = p.bias;
  const int64_t idx = std::clamp<int64_t>(rel - b.min_relative, 0, b.length - 1);
  return b.values[h * b.length + idx];
}

// Per-thread working memory, sized once per call.
struct ThreadScratch {
  DciScratch dci;
  std::vector<int32_t> ids;
  std::vector<float> scores;
};

// out[0 .. d) = sum_j softmax(logits)_j * v[ids[j]] over `count` entries; logits overwritten.
void SoftmaxCombine(int count, const int32_t* ids, float* logits, const float* v, int64_t v_stride,
                    int d, float* out) {
  std::fill(out, out + d, 0.0f);
  if (count <= 0) return;
  float mx = logits[0];
  for (int j = 1; j < count; ++j) mx = std::max(mx, logits[j]);
  float sum = 0.0f;
  for (int j = 0; j < count; ++j) {
    logits[j] = std::exp(logits[j] - mx);
    sum += logits[j];
  }
  const float inv = 1.0f / sum;
  for (int j = 0; j < count; ++j) {
    const float w = logits[j] * inv;
    const float* vr = v + static_cast<int64_t>(ids[j]) * v_stride;
    for (int t = 0; t < d; ++t) out[t] += w * vr[t];
  }
}

}  // namespace

int64_t IceformerTopK(const IceformerOptions& o, int64_t n) {
  int64_t k;
  if (o.top_k > 0) {
    k = o.top_k;
  } else {
    // The small slack keeps e.g. 0.005f * 8000 (= 39.9999991 in double) at 40.
    k = static_cast<int64_t>(std::floor(static_cast<double>(o.top_k_fraction) * n + 1e-4));
    k = std::max<int64_t>(std::min<int64_t>(k, o.top_k_max), o.top_k_min);
  }
  return std::max<int64_t>(1, std::min(k, std::max<int64_t>(n, 1)));
}

bool UseIceformer(const IceformerOptions& o, int64_t kv_len) { return kv_len > o.exact_up_to; }

namespace {

DciOptions MakeDciOptions(const IceformerOptions& o, int g) {
  DciOptions d;
  d.search = o.search;
  d.num_simple = o.num_simple;
  d.num_composite = o.num_composite;
  d.num_bands = o.num_bands;
  d.band_ratio = o.band_ratio;
  d.band_height = o.band_height;
  d.seed = o.seed + static_cast<uint64_t>(g);
  return d;
}

DciQueryOptions MakeQueryOptions(const IceformerOptions& o, int64_t top_k) {
  DciQueryOptions q;
  q.k = static_cast<int>(top_k);
  q.max_candidates =
      static_cast<int>(std::min<int64_t>(int64_t{o.candidates_per_k} * top_k, 1 << 30));
  q.max_visits = static_cast<int>(std::min<int64_t>(int64_t{o.visits_per_k} * top_k, 1 << 30));
  q.first_keys = o.first_keys;
  return q;
}

// Smallest key count searched through an index: below it every query is computed exactly.
int64_t ExactUpTo(const IceformerOptions& o, int64_t top_k) {
  return std::max<int64_t>(o.exact_up_to, top_k);
}

std::vector<ThreadScratch> MakeScratch(const ThreadPool& pool, int64_t top_k) {
  std::vector<ThreadScratch> scratch(pool.num_threads());
  for (auto& s : scratch) {
    s.ids.resize(top_k);
    s.scores.resize(top_k);
  }
  return scratch;
}

// The index of KV head g over keys kg (row stride k_stride, the head's d columns); n_keys of the
// `capacity` rows are made searchable now (bulk build), the rest by the caller's Add().
std::unique_ptr<DciIndex> NewHeadIndex(const ThreadPool& pool, const IceformerOptions& options,
                                       int g, int d, const float* kg, int64_t k_stride,
                                       int64_t capacity, int64_t n_keys) {
  float norm_bound = 0.0f;
  for (int64_t j = 0; j < capacity; ++j) {
    const float* kr = kg + j * k_stride;
    norm_bound = std::max(norm_bound, DotF(kr, kr, d));
  }
  norm_bound = std::sqrt(norm_bound);
  if (!(norm_bound > 0.0f)) norm_bound = 1.0f;  // all-zero keys: any bound is exact
  auto index = std::make_unique<DciIndex>(d, MakeDciOptions(options, g));
  Status st = index->Reset(kg, k_stride, capacity, norm_bound);
  if (!st.ok()) CheckFailed(__FILE__, __LINE__, "index.Reset", st.ToString());
  if (n_keys > 0) index->Add(pool, n_keys);
  return index;
}

// Query rows [row_begin, row_end) of the heads of KV group g: each searches the index for its
// top-k keys among those it sees (p.causal / p.q_offset), scales and biases their scores and
// writes the softmax-weighted sum of their value rows (vg: the group's value columns).
void SearchRows(const ThreadPool& pool, const AttentionParams& p, const DciQueryOptions& qo,
                int64_t top_k, int g, const DciIndex& index, const float* q, int64_t q_stride,
                const float* vg, int64_t v_stride, float* out, int64_t out_stride,
                int64_t row_begin, int64_t row_end, std::vector<ThreadScratch>* scratch,
                IceformerTrace* trace) {
  const int d = p.head_dim;
  const int group = p.n_heads / p.n_kv_heads;
  const int64_t n = std::max<int64_t>(p.kv_len, 0);
  const bool has_bias = p.bias.values != nullptr;
  const int threads = static_cast<int>(scratch->size());
  const int64_t rows = row_end - row_begin;
  pool.ParallelForDynamic(rows * group, 16, [&](int64_t begin, int64_t end) {
    ThreadScratch& s = (*scratch)[omp_get_thread_num() % threads];
    for (int64_t item = begin; item < end; ++item) {
      const int h = g * group + static_cast<int>(item / rows);
      const int64_t i = row_begin + item % rows;
      const float* qr = q + i * q_stride + static_cast<int64_t>(h) * d;
      float* o = out + i * out_stride + static_cast<int64_t>(h) * d;
      const int64_t limit = p.causal ? std::clamp<int64_t>(i + p.q_offset + 1, 0, n) : n;
      const int count = index.Query(qr, limit, qo, &s.dci, s.ids.data(), s.scores.data());
      if (trace != nullptr) {
        int32_t* t = &trace->ids[(static_cast<size_t>(h) * p.q_len + i) * top_k];
        std::copy(s.ids.begin(), s.ids.begin() + count, t);
      }
      const int64_t pos = i + p.q_offset;
      for (int j = 0; j < count; ++j) {
        s.scores[j] *= p.scale;
        if (has_bias) s.scores[j] += BiasAt(p, h, s.ids[j] - pos);
      }
      SoftmaxCombine(count, s.ids.data(), s.scores.data(), vg, v_stride, d, o);
    }
  });
}

void CheckHeads(const AttentionParams& p) {
  if (p.head_dim < 1 || p.n_kv_heads < 1 || p.n_heads % p.n_kv_heads != 0) {
    CheckFailed(__FILE__, __LINE__, "valid attention heads",
                "head_dim " + std::to_string(p.head_dim) + ", n_heads " +
                    std::to_string(p.n_heads) + ", n_kv_heads " + std::to_string(p.n_kv_heads));
  }
}

}  // namespace

void IceformerAttention(const ThreadPool& pool, const AttentionParams& p,
                        const IceformerOptions& options, const float* q, int64_t q_stride,
                        const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                        float* out, int64_t out_stride, IceformerTrace* trace) {
  CheckHeads(p);
  if (p.q_len <= 0) return;
  const int d = p.head_dim;
  const int64_t n = std::max<int64_t>(p.kv_len, 0);
  const int64_t top_k = IceformerTopK(options, n);
  const int64_t exact_up_to = ExactUpTo(options, top_k);
  const DciQueryOptions query_options = MakeQueryOptions(options, top_k);

  if (trace != nullptr) {
    trace->k = top_k;
    trace->ids.assign(static_cast<size_t>(p.n_heads) * p.q_len * top_k, -1);
  }

  // Visible keys of query row i.
  auto visible = [&](int64_t i) -> int64_t {
    return p.causal ? std::clamp<int64_t>(i + p.q_offset + 1, 0, n) : n;
  };

  // Rows that see at most exact_up_to keys come first (causal order; in bidirectional mode either
  // all rows or none): the exact blocked kernel computes them for every head at once.
  int64_t first_searched = p.q_len;
  for (int64_t i = 0; i < p.q_len; ++i) {
    if (visible(i) > exact_up_to) {
      first_searched = i;
      break;
    }
  }
  if (first_searched > 0) {
    AttentionParams prefix = p;
    prefix.q_len = first_searched;
    prefix.kv_len = visible(first_searched - 1);
    Attention(pool, prefix, q, q_stride, k, k_stride, v, v_stride, out, out_stride);
  }
  if (first_searched == p.q_len) return;

  std::vector<ThreadScratch> scratch = MakeScratch(pool, top_k);
  for (int g = 0; g < p.n_kv_heads; ++g) {
    const float* kg = k + static_cast<int64_t>(g) * d;
    const float* vg = v + static_cast<int64_t>(g) * d;
    // One index at a time: memory for one KV head's arrays, whatever n_kv_heads is.
    std::unique_ptr<DciIndex> index =
        NewHeadIndex(pool, options, g, d, kg, k_stride, n, p.causal ? 0 : n);
    if (!p.causal) {
      SearchRows(pool, p, query_options, top_k, g, *index, q, q_stride, vg, v_stride, out,
                 out_stride, first_searched, p.q_len, &scratch, trace);
    } else {
      for (int64_t row = first_searched, row_end; row < p.q_len; row = row_end) {
        // Blocks grow with the visible keys: each block is one parallel region (a barrier, which
        // costs most when other processes share the cores), and the queries of a block skip at
        // most block - 1 hidden keys, a fraction <= causal_block_fraction of what they see.
        const double grown = options.causal_block_fraction * static_cast<double>(visible(row));
        const int64_t block = std::max<int64_t>(std::max<int64_t>(1, options.causal_block),
                                                static_cast<int64_t>(grown));
        row_end = std::min(p.q_len, row + block);
        const int64_t need = visible(row_end - 1);
        if (need > index->size()) index->Add(pool, need - index->size());
        SearchRows(pool, p, query_options, top_k, g, *index, q, q_stride, vg, v_stride, out,
                   out_stride, row, row_end, &scratch, trace);
      }
    }
    if (trace != nullptr && g == 0) {
      trace->index_bytes = index->IndexBytes();
      trace->scratch_bytes = index->ScratchBytes();
    }
  }
}

IceformerKeyIndex::IceformerKeyIndex() = default;
IceformerKeyIndex::~IceformerKeyIndex() = default;
IceformerKeyIndex::IceformerKeyIndex(IceformerKeyIndex&&) noexcept = default;
IceformerKeyIndex& IceformerKeyIndex::operator=(IceformerKeyIndex&&) noexcept = default;

void IceformerKeyIndex::Build(const ThreadPool& pool, const float* k, int64_t kv_len,
                              int n_kv_heads, int head_dim, int64_t k_stride,
                              const IceformerOptions& options) {
  AttentionParams p;
  p.n_heads = n_kv_heads;
  p.n_kv_heads = n_kv_heads;
  p.head_dim = head_dim;
  CheckHeads(p);
  k_ = k;
  k_stride_ = k_stride;
  kv_len_ = std::max<int64_t>(kv_len, 0);
  n_kv_heads_ = n_kv_heads;
  head_dim_ = head_dim;
  options_ = options;
  top_k_ = IceformerTopK(options, kv_len_);
  heads_.clear();
  if (!searched()) return;
  heads_.reserve(n_kv_heads);
  for (int g = 0; g < n_kv_heads; ++g) {
    heads_.push_back(NewHeadIndex(pool, options, g, head_dim,
                                  k + static_cast<int64_t>(g) * head_dim, k_stride, kv_len_,
                                  kv_len_));
  }
}

bool IceformerKeyIndex::searched() const {
  return k_ != nullptr && kv_len_ > ExactUpTo(options_, top_k_);
}

int64_t IceformerKeyIndex::IndexBytes() const {
  int64_t bytes = 0;
  for (const auto& h : heads_) bytes += h->IndexBytes();
  return bytes;
}

void IceformerKeyIndex::Attend(const ThreadPool& pool, int n_heads, float scale, const float* q,
                               int64_t q_len, int64_t q_stride, const float* v, int64_t v_stride,
                               float* out, int64_t out_stride, IceformerTrace* trace) const {
  MEMORIA_CHECK(k_ != nullptr, "IceformerKeyIndex::Attend before Build");
  AttentionParams p;
  p.q_len = q_len;
  p.kv_len = kv_len_;
  p.n_heads = n_heads;
  p.n_kv_heads = n_kv_heads_;
  p.head_dim = head_dim_;
  p.scale = scale;
  CheckHeads(p);
  if (trace != nullptr) {
    trace->k = top_k_;
    trace->ids.assign(static_cast<size_t>(n_heads) * std::max<int64_t>(q_len, 0) * top_k_, -1);
  }
  if (q_len <= 0) return;
  if (!searched()) {
    Attention(pool, p, q, q_stride, k_, k_stride_, v, v_stride, out, out_stride);
    return;
  }
  const DciQueryOptions query_options = MakeQueryOptions(options_, top_k_);
  std::vector<ThreadScratch> scratch = MakeScratch(pool, top_k_);
  for (int g = 0; g < n_kv_heads_; ++g) {
    SearchRows(pool, p, query_options, top_k_, g, *heads_[g], q, q_stride,
               v + static_cast<int64_t>(g) * head_dim_, v_stride, out, out_stride, 0, q_len,
               &scratch, trace);
  }
  if (trace != nullptr) {
    trace->index_bytes = heads_[0]->IndexBytes();
    trace->scratch_bytes = heads_[0]->ScratchBytes();
  }
}

}  // namespace memoria
