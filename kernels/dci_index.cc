#include "kernels/dci_index.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
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

// out[r] = Dot(q, row_r, n) for four rows at once: q is read once per four rows and the four
// products are independent FMA chains.
inline void Dot4(const float* q, const float* r0, const float* r1, const float* r2,
                 const float* r3, int n, float out[4]) {
  int i = 0;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(q + i);
    a0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(r0 + i), a0);
    a1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(r1 + i), a1);
    a2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(r2 + i), a2);
    a3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(r3 + i), a3);
  }
  // Horizontal sums of the four accumulators: lanes 0..3 of s hold rows 0..3.
  const __m256 h01 = _mm256_hadd_ps(a0, a1), h23 = _mm256_hadd_ps(a2, a3);
  const __m256 h = _mm256_hadd_ps(h01, h23);
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  _mm_storeu_ps(out, s);
#else
  out[0] = out[1] = out[2] = out[3] = 0.0f;
#endif
  for (; i < n; ++i) {
    out[0] += q[i] * r0[i];
    out[1] += q[i] * r1[i];
    out[2] += q[i] * r2[i];
    out[3] += q[i] * r3[i];
  }
}

// sum_i q[i] * code[i] over int8 codes (the caller multiplies by the key's scale).
inline float DotInt8(const float* q, const int8_t* code, int n) {
  int i = 0;
  float sum = 0.0f;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(code + i));
    const __m256 c0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c));
    const __m256 c1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c, 8)));
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), c0, acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), c1, acc1);
  }
  const __m256 acc = _mm256_add_ps(acc0, acc1);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  sum = _mm_cvtss_f32(s);
#endif
  for (; i < n; ++i) sum += q[i] * static_cast<float>(code[i]);
  return sum;
}

constexpr float kInf = std::numeric_limits<float>::infinity();

// Rank key of a result: a larger key is a better result (higher score, ties to the smaller id,
// which makes results independent of the order in which candidates are found), and no two
// results share one. High half: the score's bits made to order as
// unsigned integers (-0 counts as +0); low half: the id, inverted.
inline uint64_t RankKey(float score, int32_t id) {
  if (score == 0.0f) score = 0.0f;
  uint32_t bits;
  std::memcpy(&bits, &score, sizeof(bits));
  bits = (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
  return (uint64_t{bits} << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(id));
}
inline int32_t RankKeyId(uint64_t key) {
  return static_cast<int32_t>(0xFFFFFFFFu - static_cast<uint32_t>(key));
}
inline float RankKeyScore(uint64_t key) {
  uint32_t bits = static_cast<uint32_t>(key >> 32);
  bits = (bits & 0x80000000u) != 0 ? bits & 0x7FFFFFFFu : ~bits;
  float score;
  std::memcpy(&score, &bits, sizeof(score));
  return score;
}

// Moves the min(n, k) largest of the distinct keys[0 .. n) to the front, largest first, and
// returns how many. The k-th largest is found by radix selection, 8 bits at a time from the top
// (a histogram pass over the keys that share the bits fixed so far), which has no
// data-dependent branch: a comparison sort or nth_element of a few hundred scores mispredicts
// on about every other comparison, and cost more than scoring the candidates.
size_t SelectBest(uint64_t* keys, size_t n, size_t k) {
  if (n > k) {
    uint64_t prefix = 0, fixed = 0;  // the k-th key's top bits found so far, and their mask
    size_t need = k;                 // keys still wanted among those that share `prefix`
    for (int shift = 56; shift >= 0; shift -= 8) {
      uint32_t hist[256] = {};
      for (size_t i = 0; i < n; ++i) {
        hist[(keys[i] >> shift) & 0xFF] += (keys[i] & fixed) == prefix;
      }
      int bucket = 255;
      while (hist[bucket] < need) need -= hist[bucket--];
      prefix |= uint64_t(bucket) << shift;
      fixed |= uint64_t{0xFF} << shift;
      if (hist[bucket] == need) break;  // the whole bucket is wanted (always by the last byte)
    }
    // Exactly k keys have top bits >= prefix.
    size_t out = 0;
    for (size_t i = 0; i < n; ++i) {
      const uint64_t key = keys[i];
      keys[out] = key;
      out += (key & fixed) >= prefix;
    }
    n = out;
  }
  std::sort(keys, keys + n, std::greater<uint64_t>());
  return n;
}

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
      if (options_.num_bands == 1 && options_.search == DciSearch::kWalk) {
        list.reserve(capacity_ + 2);
      }
      list.assign({kLowSentinel, kHighSentinel});
    }
  }
  band_of_.assign(capacity_, 0);
  const bool scan = options_.search == DciSearch::kScan;
  scan_proj_.assign(scan ? static_cast<size_t>(capacity_) * num_lists() : 0, 0);
  scan_radius_.assign(scan ? capacity_ : 0, 0);
  float min_radius = 1.0f;
  for (const Band& band : bands_) min_radius = std::min(min_radius, band.query_radius);
  scan_unit_ = 16383.0f * min_radius / 2.0f;
  band_members_.assign(options_.num_bands, {});
  // The int8 codes screen the walk's many candidates; the scan's few are scored exactly.
  codes_.assign(scan ? 0 : static_cast<size_t>(capacity_) * dim_, 0);
  code_scales_.assign(scan ? 0 : capacity_, 0.0f);
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
  const bool scan = options_.search == DciSearch::kScan;
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
      if (scan) {
        // (u . T_K(k) - u_(d+1) h_b) / r_b: the query side is then u . q / |q| for every band.
        const Band& band = bands_[b];
        const float inv_radius = 1.0f / band.query_radius;
        for (int list = 0; list < lists; ++list) {
          const float u_last = directions_[static_cast<size_t>(list) * (d + 1) + d];
          const float p = (block_proj_[j * lists + list] - u_last * band.query_height) * inv_radius;
          scan_proj_[static_cast<size_t>(list) * capacity_ + base + j] = ToScanFixed(p);
        }
        scan_radius_[base + j] =
            static_cast<int16_t>(std::min(32767.0f, std::nearbyint(band.query_radius * 32768.0f)));
        continue;
      }
      // Symmetric int8 code of the key (scale = max |k_i| / 127), for candidate screening.
      float amax = 0.0f;
      for (int i = 0; i < d; ++i) amax = std::max(amax, std::abs(key[i]));
      const float scale = amax / 127.0f;
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      int8_t* code = &codes_[static_cast<size_t>(base + j) * d];
      for (int i = 0; i < d; ++i) {
        code[i] = static_cast<int8_t>(std::clamp(std::nearbyint(key[i] * inv), -127.0f, 127.0f));
      }
      code_scales_[base + j] = scale;
    }
  });
  const int num_bands = options_.num_bands;
  std::vector<int64_t> new_in_band(num_bands, 0);
  for (int64_t j = 0; j < count; ++j) ++new_in_band[band_of_[base + j]];
  if (scan) {
    // The projection table is the whole index: appending rows keeps it in id order.
    for (int64_t j = 0; j < count; ++j) {
      band_members_[band_of_[base + j]].push_back(static_cast<int32_t>(base + j));
    }
    for (int b = 0; b < num_bands; ++b) bands_[b].size += new_in_band[b];
    size_ += count;
    return;
  }
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

int DciIndex::Query(const float* q, int64_t limit, const DciQueryOptions& opts,
                    DciScratch* scratch, int32_t* ids, float* scores) const {
  limit = std::min(limit, size_);
  const int k = std::max(1, opts.k);
  if (limit <= 0) return 0;
  const int d = dim_;
  std::vector<uint64_t>& ranked = scratch->ranked_;

  const float qnorm = std::sqrt(Dot(q, q, d));
  if (limit <= k || qnorm == 0.0f) {
    // Everything visible is the answer (or every key ties at score 0).
    ranked.resize(limit);
    for (int64_t j = 0; j < limit; ++j) {
      const float score = qnorm == 0.0f ? 0.0f : Dot(q, keys_ + j * stride_, d);
      ranked[j] = RankKey(score, static_cast<int32_t>(j));
    }
    return WriteBest(k, scratch, ids, scores);
  }

  const int num_composite = options_.num_composite;
  const int lists = num_lists();
  // u . q / |q| for every direction: shared by all bands (only the embedding's radius and
  // height differ between them).
  scratch->qdir_.resize(lists);
  const float inv_qnorm = 1.0f / qnorm;
  for (int list = 0; list < lists; ++list) {
    scratch->qdir_[list] = Dot(&directions_[static_cast<size_t>(list) * (d + 1)], q, d) * inv_qnorm;
  }

  std::vector<int32_t>& cand = scratch->candidates_;
  cand.clear();
  // The first keys are always candidates (opts.first_keys; see DciQueryOptions).
  const int64_t first = std::min<int64_t>(std::max(0, opts.first_keys), limit);
  for (int64_t id = 0; id < first; ++id) cand.push_back(static_cast<int32_t>(id));
  const int64_t max_admitted = int64_t{std::max(1, opts.max_candidates)} * num_composite;
  if (options_.search == DciSearch::kScan) {
    // Not screened: the scan's few candidates (a few k, in increasing id order) cost less to
    // score exactly, four rows per pass, than to screen one code at a time.
    AdmitByScan(limit, first, k, max_admitted, scratch);
  } else {
    const int64_t max_visits = int64_t{std::max(1, opts.max_visits)} * num_composite;
    AdmitByWalk(q, qnorm, limit, first, k, max_admitted, max_visits, scratch);
  }

  // Exact scores of the candidates, four rows per pass (one read of q per four rows), key rows
  // prefetched a few ahead; then the k best by their rank keys (a strict order: ties go to the
  // smaller id, so the result does not depend on the candidates' order).
  const size_t n = cand.size();
  const int64_t row_bytes = static_cast<int64_t>(d) * static_cast<int64_t>(sizeof(float));
  auto prefetch_row = [&](int32_t id) {
    const char* row = reinterpret_cast<const char*>(keys_ + id * stride_);
    for (int64_t off = 0; off < row_bytes; off += 64) _mm_prefetch(row + off, _MM_HINT_T0);
  };
  constexpr size_t kRowsAhead = 8;
  for (size_t c = 0; c < std::min(n, kRowsAhead); ++c) prefetch_row(cand[c]);
  ranked.resize(n);
  for (size_t c = 0; c < n; c += 4) {
    for (size_t p = c + kRowsAhead; p < std::min(n, c + kRowsAhead + 4); ++p) {
      prefetch_row(cand[p]);
    }
    // A last pass of fewer than four rows repeats its last row, so every score comes from the
    // same arithmetic whatever the candidate's place in the list.
    const float* rows[4];
    for (size_t r = 0; r < 4; ++r) rows[r] = keys_ + cand[std::min(c + r, n - 1)] * stride_;
    float four[4];
    Dot4(q, rows[0], rows[1], rows[2], rows[3], d, four);
    for (size_t r = 0; r < 4 && c + r < n; ++r) ranked[c + r] = RankKey(four[r], cand[c + r]);
  }
  return WriteBest(k, scratch, ids, scores);
}

int DciIndex::WriteBest(int k, DciScratch* scratch, int32_t* ids, float* scores) const {
  std::vector<uint64_t>& ranked = scratch->ranked_;
  const size_t found = SelectBest(ranked.data(), ranked.size(), static_cast<size_t>(k));
  for (size_t i = 0; i < found; ++i) {
    ids[i] = RankKeyId(ranked[i]);
    scores[i] = RankKeyScore(ranked[i]);
  }
  return static_cast<int>(found);
}

size_t DciIndex::ScreenByCodes(const float* q, float q_l1, int k, size_t from,
                               DciScratch* scratch) const {
  const int d = dim_;
  const std::vector<int32_t>& cand = scratch->candidates_;
  auto& screen = scratch->screen_;
  auto& lower = scratch->lower_;
  // 1/2 from the code's rounding; the rest bounds the fp32 rounding of both dot products
  // (each term is at most |q_i| * 127 * scale, n terms, twice the unit roundoff each).
  const float err_factor = 0.5f + 4.0f * static_cast<float>(d) * 127.0f * 6e-8f;
  constexpr size_t kAhead = 8;  // candidates prefetched ahead of the one being scored
  auto prefetch = [&](int32_t id) {
    const char* row = reinterpret_cast<const char*>(&codes_[static_cast<size_t>(id) * d]);
    for (int off = 0; off < d; off += 64) _mm_prefetch(row + off, _MM_HINT_T0);
  };
  // Screen the round's new candidates by their int8 codes: each gets a bracket
  // [approx - err, approx + err] around its exact score. The k-th largest lower end seen so
  // far, T, is a lower bound of the final k-th best exact score.
  for (size_t c = from; c < std::min(cand.size(), from + kAhead); ++c) prefetch(cand[c]);
  for (size_t c = from; c < cand.size(); ++c) {
    if (c + kAhead < cand.size()) prefetch(cand[c + kAhead]);
    const int32_t id = cand[c];
    const float scale = code_scales_[id];
    const float approx = scale * DotInt8(q, &codes_[static_cast<size_t>(id) * d], d);
    const float err = err_factor * scale * q_l1 + 1e-30f;
    screen.push_back({approx + err, id});
    const float low = approx - err;
    if (static_cast<int>(lower.size()) < k) {
      lower.push_back(low);
      std::push_heap(lower.begin(), lower.end(), std::greater<float>());
    } else if (low > lower.front()) {
      std::pop_heap(lower.begin(), lower.end(), std::greater<float>());
      lower.back() = low;
      std::push_heap(lower.begin(), lower.end(), std::greater<float>());
    }
  }
  return cand.size();
}

void DciIndex::AdmitByWalk(const float* q, float qnorm, int64_t limit, int64_t first, int k,
                           int64_t max_admitted, int64_t max_visits, DciScratch* scratch) const {
  const int d = dim_;
  const int m = options_.num_simple, num_composite = options_.num_composite;
  const int lists = num_lists();
  if (scratch->counts_.size() != static_cast<size_t>(num_composite) * capacity_) {
    scratch->counts_.assign(static_cast<size_t>(num_composite) * capacity_, 0);
  }
  std::vector<int32_t>& cand = scratch->candidates_;
  // Screening: the int8 code gives q . k within err = scale * |q|_1 / 2 (each k_i is within
  // scale / 2 of scale * code_i), plus a little for fp32 rounding. Candidates that provably
  // cannot enter the top-k are dropped (see below) and the rest are scored exactly from the key
  // row, so the answer is the same as scoring every candidate exactly, while most candidates
  // cost a 128-byte code read instead of a 512-byte key row (random rows from L3 or DRAM were
  // the dominant cost of the search).
  float q_l1 = 0.0f;
  for (int i = 0; i < d; ++i) q_l1 += std::abs(q[i]);
  auto& screen = scratch->screen_;  // (upper end, id) of every screened candidate
  auto& lower = scratch->lower_;    // min-heap of the k largest lower ends (front: T)
  screen.clear();
  lower.clear();
  size_t scored = 0;  // candidates screened so far

  auto& walk = scratch->walk_;
  walk.clear();
  std::vector<int>& band_ids = scratch->band_ids_;
  band_ids.clear();
  // Walk state of every (non-empty band, list): the query's projection and the visited window
  // (lo, hi) exclusive: entries lo + 1 .. hi - 1 have been visited, lo and hi come next.
  float radius = kInf;
  int64_t largest = 0;
  for (const Band& band : bands_) largest = std::max(largest, band.size);
  for (int b = 0; b < static_cast<int>(bands_.size()); ++b) {
    const Band& band = bands_[b];
    const int64_t n = band.size;
    if (n == 0) continue;
    if (n <= k) {
      // A band of at most k keys is taken whole: the one walk over all bands stops when the
      // large bands have filled the budget, and would otherwise miss an outlier that sits alone
      // in its band (often the key that matters most, e.g. an attention sink of large norm).
      const Entry* a = band.lists[0].data() + 1;
      for (int64_t i = 0; i < n; ++i) {
        if (a[i].id < limit && a[i].id >= first) cand.push_back(a[i].id);
      }
      continue;
    }
    band_ids.push_back(b);
    // Starting radius: the reach of max(k / 2, n / 32) entries on each side of the query in the
    // tightest list of the largest band (measured: a few rounds below the final radius; the
    // rounds grow it geometrically, and small bands would give a radius far too small).
    const int64_t probe =
        n == largest
            ? std::max<int64_t>(1, std::min<int64_t>(std::max<int64_t>(k / 2 + 1, n / 32), n / 2))
            : 0;
    for (int list = 0; list < lists; ++list) {
      const float* u = &directions_[static_cast<size_t>(list) * (d + 1)];
      // Projection of T_Q,b(q) = [r q / |q|, sqrt(1 - r^2)].
      const float qp = scratch->qdir_[list] * band.query_radius + u[d] * band.query_height;
      const Entry* a = band.lists[list].data() + 1;  // a[-1], a[n]: sentinels
      const int64_t pos =
          std::lower_bound(a, a + n, qp, [](const Entry& e, float v) { return e.proj < v; }) - a;
      walk.push_back({a, qp, pos - 1, pos});
      if (probe == 0) continue;
      const int64_t l_at = std::max<int64_t>(-1, pos - probe);
      const int64_t r_at = std::min(n, pos + probe - 1);
      radius = std::min(radius, std::min(qp - a[l_at].proj, a[r_at].proj - qp));
    }
  }
  if (!(radius < kInf)) radius = 0.0f;  // tiny bands: the rounds grow it until exhausted
  radius = std::max(radius, 1e-6f);

  // The walk, in rounds of growing radius r over every band at once: all entries within r of the
  // query's projection are visited, in every list, before any entry beyond r. A key is admitted
  // (becomes a candidate) when its largest projection gap over the m lists of a composite index
  // is <= r: the admission order of Prioritized DCI's priority queue (which visits entries in
  // increasing gap across the m lists), up to the order inside one round. A round is a
  // branch-light sequential scan, where a per-entry priority queue pays a mispredicted branch per
  // visit; and one walk over all bands spends the budget where the query's neighbours are,
  // instead of a fixed share per band. After each round the new candidates are screened, and
  // bands that cannot reach the top-k (|q| * upper norm below the bound T) are dropped.
  int64_t admitted = 0, visits = 0;
  int active = static_cast<int>(band_ids.size());  // bands [0, active) of band_ids still walked
  for (;;) {
    bool exhausted = true;
    for (int bi = 0; bi < active; ++bi) {
      const int64_t n = bands_[band_ids[bi]].size;
      for (int l = 0; l < num_composite; ++l) {
        uint8_t* counts = scratch->counts_.data() + static_cast<size_t>(l) * capacity_;
        auto admit = [&](int32_t id) {
          // Already a candidate through another composite index (the composite indices walk in
          // the same rounds, so any of them may have admitted it first).
          bool seen = false;
          for (int e = 0; e < num_composite; ++e) {
            seen |= e != l && scratch->counts_[static_cast<size_t>(e) * capacity_ + id] == m;
          }
          if (!seen) cand.push_back(id);
          ++admitted;
        };
        for (int s = 0; s < m; ++s) {
          DciScratch::Walk& w = walk[static_cast<size_t>(bi) * lists + l * m + s];
          const Entry* a = static_cast<const Entry*>(w.entries);
          const float qp = w.qp;
          // The sentinels' +-inf projections end each scan without a bounds check.
          // Hidden keys (causal: future ones) are skipped and not counted as visits, so the
          // budget buys the same number of visible entries whatever the block structure.
          int64_t i = w.lo, hidden = 0;
          for (; qp - a[i].proj <= radius; --i) {
            const int32_t id = a[i].id;
            if (id >= limit) {
              ++hidden;
              continue;
            }
            if (++counts[id] == m && id >= first) admit(id);
          }
          visits += w.lo - i;
          w.lo = i;
          i = w.hi;
          for (; a[i].proj - qp <= radius; ++i) {
            const int32_t id = a[i].id;
            if (id >= limit) {
              ++hidden;
              continue;
            }
            if (++counts[id] == m && id >= first) admit(id);
          }
          visits += i - w.hi - hidden;
          w.hi = i;
          exhausted &= w.lo < 0 && w.hi >= n;
        }
      }
    }
    scored = ScreenByCodes(q, q_l1, k, scored, scratch);
    if (exhausted || admitted >= max_admitted || visits >= max_visits) break;
    // Every key of a band and of the bands after it (smaller norms) scores at most
    // |q| * upper_norm: once that is below T, none of them can enter the top-k.
    if (static_cast<int>(lower.size()) == k) {
      while (active > 0 && qnorm * bands_[band_ids[active - 1]].upper_norm < lower.front()) {
        --active;
      }
      if (active == 0) break;
    }
    // Grow faster while few candidates have come (the radius is still far below the
    // neighbours' distance), then in finer steps so the budget is not overshot by much.
    radius *= admitted * 8 < max_admitted ? 1.5f : 1.2f;
  }

  // Clear the visit counts by walking the visited windows again (cheaper than a list of touched
  // ids: no store per first visit).
  for (size_t bi = 0; bi < band_ids.size(); ++bi) {
    for (int list = 0; list < lists; ++list) {
      const DciScratch::Walk& w = walk[bi * lists + list];
      uint8_t* counts = scratch->counts_.data() + static_cast<size_t>(list / m) * capacity_;
      const Entry* a = static_cast<const Entry*>(w.entries);
      for (int64_t i = w.lo + 1; i < w.hi; ++i) counts[a[i].id] = 0;
    }
  }

  // The candidates left: those whose upper end reaches T (a candidate below it scores less than
  // k others for sure). The answer is the same as scoring every candidate exactly.
  const float threshold = static_cast<int>(lower.size()) == k ? lower.front() : -kInf;
  cand.clear();
  for (const auto& item : screen) {
    if (!(item.first < threshold)) cand.push_back(item.second);
  }
}

int64_t DciIndex::IndexBytes() const {
  int64_t entries = 0;
  for (const Band& band : bands_) {
    for (const auto& list : band.lists) entries += static_cast<int64_t>(list.capacity());
  }
  int64_t members = 0;
  for (const auto& m : band_members_) members += static_cast<int64_t>(m.capacity());
  return entries * static_cast<int64_t>(sizeof(Entry)) +
         static_cast<int64_t>(directions_.size() * sizeof(float)) +
         static_cast<int64_t>((scan_proj_.size() + scan_radius_.size()) * sizeof(int16_t)) +
         members * static_cast<int64_t>(sizeof(int32_t)) +
         static_cast<int64_t>(band_of_.size() + codes_.size() +
                              code_scales_.size() * sizeof(float));
}

int64_t DciIndex::ScratchBytes() const {
  // kWalk: a visit count per key and composite index; kScan: a 16-bit radius per key.
  return options_.search == DciSearch::kScan
             ? capacity_ * static_cast<int64_t>(sizeof(int16_t))
             : options_.num_composite * capacity_;
}

}  // namespace memoria
