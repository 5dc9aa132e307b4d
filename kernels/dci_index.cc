#include "kernels/dci_index.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>

namespace memoria {
namespace {

// Dot product of two fp32 vectors; AVX2/FMA when compiled for it (the Release flags).
inline float Dot(const float* a, const float* b, int n) {
  int i = 0;
  float sum = 0.0f;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  }
  const __m256 acc = _mm256_add_ps(acc0, acc1);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  sum = _mm_cvtss_f32(s);
#endif
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// Heap order for the top-k: a "less than" b when a is the better result, so the heap's front is
// the worst kept result. Ties go to the smaller id, which makes results independent of the order
// in which candidates are found.
inline bool Better(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

constexpr float kInf = std::numeric_limits<float>::infinity();

}  // namespace

// Every sorted array is framed by two sentinels: the walk reads a gap of +inf when a side runs
// out, and their id (-1) stops the skip over hidden keys, so the hot loop has no bounds checks.
const DciIndex::Entry DciIndex::kLowSentinel = {-kInf, -1};
const DciIndex::Entry DciIndex::kHighSentinel = {kInf, -1};

namespace {

}  // namespace

DciIndex::DciIndex(int dim, const DciOptions& options) : dim_(dim), options_(options) {
  const DciOptions& o = options_;
  if (dim_ < 1 || o.num_simple < 1 || o.num_simple > 255 || o.num_composite < 1 ||
      o.num_bands < 1 || o.num_bands > 255 || !(o.band_ratio > 0.0f && o.band_ratio < 1.0f) ||
      !(o.band_height > 0.0f && o.band_height <= 1.0f)) {
    CheckFailed(__FILE__, __LINE__, "valid DciOptions",
                "dim " + std::to_string(dim) + ", m " + std::to_string(o.num_simple) + ", L " +
                    std::to_string(o.num_composite) + ", bands " + std::to_string(o.num_bands) +
                    ", band_ratio " + std::to_string(o.band_ratio) + ", band_height " +
                    std::to_string(o.band_height));
  }
  // Gaussian vectors normalised to unit length are uniform on the sphere. Box-Muller over a
  // mt19937_64 stream keeps the directions identical across standard libraries.
  const int lists = num_lists();
  directions_.resize(static_cast<size_t>(lists) * (dim_ + 1));
  std::mt19937_64 rng(o.seed);
  auto uniform = [&rng]() {
    return (static_cast<double>(rng() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  };
  for (int list = 0; list < lists; ++list) {
    float* u = &directions_[static_cast<size_t>(list) * (dim_ + 1)];
    double norm2 = 0.0;
    std::vector<double> g(dim_ + 1);
    for (int i = 0; i <= dim_; ++i) {
      g[i] = std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform());
      norm2 += g[i] * g[i];
    }
    const double inv = 1.0 / std::sqrt(norm2);
    for (int i = 0; i <= dim_; ++i) u[i] = static_cast<float>(g[i] * inv);
  }
}

Status DciIndex::Reset(const float* keys, int64_t stride, int64_t capacity, float norm_bound) {
  if (capacity < 0 || capacity >= (int64_t{1} << 31)) {
    return InvalidArgumentError("dci index capacity " + std::to_string(capacity) +
                                " outside [0, 2^31)");
  }
  if (stride < dim_) {
    return InvalidArgumentError("dci key stride " + std::to_string(stride) + " < dim " +
                                std::to_string(dim_));
  }
  if (!(norm_bound > 0.0f) || !std::isfinite(norm_bound)) {
    return InvalidArgumentError("dci norm bound " + std::to_string(norm_bound) +
                                " must be positive and finite");
  }
  if (keys == nullptr && capacity > 0) return InvalidArgumentError("dci keys are null");
  keys_ = keys;
  stride_ = stride;
  capacity_ = capacity;
  size_ = 0;
  norm_bound_ = norm_bound;
  const float g = options_.band_ratio, height = options_.band_height;
  bands_.resize(options_.num_bands);
  for (int b = 0; b < options_.num_bands; ++b) {
    Band& band = bands_[b];
    band.upper_norm = norm_bound * std::pow(g, static_cast<float>(b));
    band.inv_bound = height / band.upper_norm;
    // The last band reaches down to norm 0; its query sits at its top norm, which for a single
    // band with height 1 is the plain T_Q.
    const bool last = b + 1 == options_.num_bands;
    band.query_radius = last ? height : height * 0.5f * (1.0f + g);
    band.query_height = std::sqrt(std::max(0.0f, 1.0f - band.query_radius * band.query_radius));
    band.size = 0;
    band.lists.resize(num_lists());
    for (auto& list : band.lists) {
      // One band: its arrays will hold every key, so reserve them now (no allocation in Add).
      if (options_.num_bands == 1) list.reserve(capacity_ + 2);
      list.assign({kLowSentinel, kHighSentinel});
    }
  }
  band_of_.assign(capacity_, 0);
  return Status::Ok();
}

int DciIndex::BandOf(float norm) const {
  if (options_.num_bands == 1 || !(norm < norm_bound_)) return 0;
  if (!(norm > 0.0f)) return options_.num_bands - 1;
  const float b = std::log(norm_bound_ / norm) / std::log(1.0f / options_.band_ratio);
  return static_cast<int>(std::min<float>(std::floor(b), options_.num_bands - 1));
}

void DciIndex::Add(const ThreadPool& pool, int64_t count) {
  if (count < 0 || size_ + count > capacity_) {
    CheckFailed(__FILE__, __LINE__, "size + count <= capacity",
                std::to_string(size_) + " + " + std::to_string(count) + " > " +
                    std::to_string(capacity_));
  }
  if (count == 0) return;
  const int lists = num_lists();
  const int d = dim_;
  const int64_t base = size_;
  block_proj_.resize(static_cast<size_t>(count) * lists);
  // Projections of T_K(k) = [k / c_b, sqrt(1 - |k|^2 / c_b^2)] onto every direction.
  pool.ParallelFor(count, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const float* key = keys_ + (base + j) * stride_;
      const float norm = std::sqrt(Dot(key, key, d));
      const int b = BandOf(norm);
      band_of_[base + j] = static_cast<uint8_t>(b);
      const float inv_bound = bands_[b].inv_bound;
      const float rel = norm * inv_bound;
      const float last = std::sqrt(std::max(0.0f, 1.0f - rel * rel));
      for (int list = 0; list < lists; ++list) {
        const float* u = &directions_[static_cast<size_t>(list) * (d + 1)];
        block_proj_[j * lists + list] = Dot(u, key, d) * inv_bound + u[d] * last;
      }
    }
  });
  const int num_bands = options_.num_bands;
  std::vector<int64_t> new_in_band(num_bands, 0);
  for (int64_t j = 0; j < count; ++j) ++new_in_band[band_of_[base + j]];
  // One task per (band, list) that receives keys.
  pool.ParallelForDynamic(int64_t{num_bands} * lists, 1, [&](int64_t begin, int64_t end) {
    std::vector<Entry> block;
    auto less = [](const Entry& a, const Entry& b) {
      return a.proj < b.proj || (a.proj == b.proj && a.id < b.id);
    };
    for (int64_t task = begin; task < end; ++task) {
      const int b = static_cast<int>(task / lists);
      const int list = static_cast<int>(task % lists);
      if (new_in_band[b] == 0) continue;
      block.clear();
      for (int64_t j = 0; j < count; ++j) {
        if (band_of_[base + j] == b) {
          block.push_back({block_proj_[j * lists + list], static_cast<int32_t>(base + j)});
        }
      }
      std::sort(block.begin(), block.end(), less);
      // Merge from the back into the grown tail: each slot is written after it was read.
      std::vector<Entry>& arr_vec = bands_[b].lists[list];
      const int64_t old_size = static_cast<int64_t>(arr_vec.size()) - 2;
      arr_vec.resize(old_size + block.size() + 2);
      arr_vec.back() = kHighSentinel;
      Entry* arr = arr_vec.data() + 1;
      int64_t a = old_size - 1, n_new = static_cast<int64_t>(block.size()) - 1;
      int64_t out = old_size + n_new;
      while (n_new >= 0) {
        if (a >= 0 && less(block[n_new], arr[a])) {
          arr[out--] = arr[a--];
        } else {
          arr[out--] = block[n_new--];
        }
      }
    }
  });
  for (int b = 0; b < num_bands; ++b) bands_[b].size += new_in_band[b];
  size_ += count;
}

void DciIndex::SearchBand(const Band& band, const float* q, float qnorm, int64_t limit, int k,
                          int max_candidates, int max_visits, DciScratch* scratch) const {
  const int m = options_.num_simple;
  const int d = dim_;
  const int64_t n = band.size;
  auto& heap = scratch->heap_;
  auto push = [&](float score, int32_t id) {
    const std::pair<float, int32_t> item(score, id);
    if (static_cast<int>(heap.size()) < k) {
      heap.push_back(item);
      std::push_heap(heap.begin(), heap.end(), Better);
    } else if (Better(item, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), Better);
      heap.back() = item;
      std::push_heap(heap.begin(), heap.end(), Better);
    }
  };
  // Admitted candidates are scored in batches: their key rows are prefetched on admission, so the
  // batch's cache misses overlap instead of each dot product waiting for its row. The final top-k
  // does not depend on the scoring order (ties go to the smaller id).
  constexpr int kBatch = 16;
  int32_t batch[kBatch];
  int batched = 0;
  const int64_t row_bytes = static_cast<int64_t>(d) * static_cast<int64_t>(sizeof(float));
  auto flush = [&]() {
    for (int i = 0; i < batched; ++i) push(Dot(q, keys_ + batch[i] * stride_, d), batch[i]);
    batched = 0;
  };
  // Query embedding of this band: [r q / |q|, sqrt(1 - r^2)].
  const float radius_over_norm = band.query_radius / qnorm;

  for (int l = 0; l < options_.num_composite; ++l) {
    uint8_t* counts = scratch->counts_.data() + static_cast<size_t>(l) * capacity_;
    // Per simple index: the array, the query's projection, the next entry on each side and the
    // |projection difference| of each side (inf when that side is exhausted).
    const Entry* arr[256];
    float qps[256], gap[256][2], head[256];
    int64_t cur[256][2];  // next entry on the left (0) and right (1) side
    for (int s = 0; s < m; ++s) {
      const int list = l * m + s;
      const float* u = &directions_[static_cast<size_t>(list) * (d + 1)];
      qps[s] = Dot(u, q, d) * radius_over_norm + u[d] * band.query_height;
      const Entry* a = band.lists[list].data() + 1;  // a[-1], a[n]: sentinels
      arr[s] = a;
      const int64_t pos = std::lower_bound(a, a + n, qps[s],
                                           [](const Entry& e, float v) { return e.proj < v; }) -
                          a;
      int64_t left = pos - 1, right = pos;
      while (a[left].id >= limit) --left;
      while (a[right].id >= limit) ++right;
      cur[s][0] = left;
      cur[s][1] = right;
      gap[s][0] = qps[s] - a[left].proj;
      gap[s][1] = a[right].proj - qps[s];
      head[s] = std::min(gap[s][0], gap[s][1]);
    }
    int candidates = 0;
    for (int visit = 0; visit < max_visits; ++visit) {
      int best = 0;
      for (int s = 1; s < m; ++s) best = head[s] < head[best] ? s : best;
      if (head[best] == kInf) break;  // every visible key of the band seen
      const Entry* a = arr[best];
      const int side = gap[best][1] < gap[best][0] ? 1 : 0;
      const int64_t step = 2 * side - 1;
      int64_t at = cur[best][side];
      const int32_t id = a[at].id;
      do {
        at += step;
      } while (a[at].id >= limit);
      cur[best][side] = at;
      gap[best][side] = (a[at].proj - qps[best]) * static_cast<float>(step);
      head[best] = std::min(gap[best][0], gap[best][1]);

      const int c = ++counts[id];
      if (c == 1) scratch->touched_.push_back(id);
      if (c == m) {
        // Scored already if an earlier composite index admitted it.
        bool seen = false;
        for (int e = 0; e < l; ++e) {
          seen |= scratch->counts_[static_cast<size_t>(e) * capacity_ + id] == m;
        }
        if (!seen) {
          const char* row = reinterpret_cast<const char*>(keys_ + id * stride_);
          for (int64_t off = 0; off < row_bytes; off += 64) {
            _mm_prefetch(row + off, _MM_HINT_T0);
          }
          batch[batched++] = id;
          if (batched == kBatch) flush();
        }
        if (++candidates >= max_candidates) break;
      }
    }
  }
  flush();
}

int DciIndex::Query(const float* q, int64_t limit, const DciQueryOptions& opts,
                    DciScratch* scratch, int32_t* ids, float* scores) const {
  limit = std::min(limit, size_);
  const int k = std::max(1, opts.k);
  if (limit <= 0) return 0;
  auto& heap = scratch->heap_;
  heap.clear();

  const float qnorm = std::sqrt(Dot(q, q, dim_));
  if (limit <= k || qnorm == 0.0f) {
    // Everything visible is the answer (or every key ties at score 0).
    const int n = static_cast<int>(std::min<int64_t>(limit, k));
    for (int64_t j = 0; j < limit; ++j) {
      const float score = qnorm == 0.0f ? 0.0f : Dot(q, keys_ + j * stride_, dim_);
      heap.emplace_back(score, static_cast<int32_t>(j));
    }
    std::partial_sort(heap.begin(), heap.begin() + n, heap.end(), Better);
    for (int i = 0; i < n; ++i) {
      ids[i] = heap[i].second;
      scores[i] = heap[i].first;
    }
    return n;
  }

  if (scratch->counts_.size() != static_cast<size_t>(options_.num_composite) * capacity_) {
    scratch->counts_.assign(static_cast<size_t>(options_.num_composite) * capacity_, 0);
  }
  scratch->touched_.clear();
  const int max_candidates = std::max(1, opts.max_candidates);
  for (const Band& band : bands_) {
    if (band.size == 0) continue;
    // Every key of this and later bands scores at most |q| * upper_norm.
    if (static_cast<int>(heap.size()) == k && qnorm * band.upper_norm <= heap.front().first) break;
    // The band's share of the visit budget, by its (estimated) visible keys; at least enough to
    // surface k candidates through m arrays.
    const double share = static_cast<double>(band.size) / static_cast<double>(size_);
    const int visits = static_cast<int>(
        std::max<double>(std::ceil(opts.max_visits * share), 2.0 * k * options_.num_simple));
    const int candidates = static_cast<int>(std::max<double>(std::ceil(max_candidates * share), k));
    SearchBand(band, q, qnorm, limit, k, candidates, visits, scratch);
  }
  for (int32_t id : scratch->touched_) {
    for (int l = 0; l < options_.num_composite; ++l) {
      scratch->counts_[static_cast<size_t>(l) * capacity_ + id] = 0;
    }
  }

  std::sort(heap.begin(), heap.end(), Better);
  const int found = static_cast<int>(heap.size());
  for (int i = 0; i < found; ++i) {
    ids[i] = heap[i].second;
    scores[i] = heap[i].first;
  }
  return found;
}

int64_t DciIndex::IndexBytes() const {
  int64_t entries = 0;
  for (const Band& band : bands_) {
    for (const auto& list : band.lists) entries += static_cast<int64_t>(list.capacity());
  }
  return entries * static_cast<int64_t>(sizeof(Entry)) +
         static_cast<int64_t>(directions_.size() * sizeof(float)) + capacity_;  // + band_of_
}

int64_t DciIndex::ScratchBytes() const { return options_.num_composite * capacity_; }

}  // namespace memoria
