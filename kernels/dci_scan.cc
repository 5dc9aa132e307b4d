// DciSearch::kScan: the admission of Prioritized DCI computed by scanning a table of 16-bit
// projections (see dci_index.h, "Scan"). The table is filled by DciIndex::Add.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/dci_index.h"

namespace memoria {
namespace {

// For each 8-bit mask: the positions of its set bits, lowest first (index), and how many there
// are (count). Drives the scan's left-packing of the ids that pass a threshold.
struct LeftPackTable {
  uint8_t index[256][8] = {};
  uint8_t count[256] = {};
  constexpr LeftPackTable() {
    for (int mask = 0; mask < 256; ++mask) {
      int n = 0;
      for (int bit = 0; bit < 8; ++bit) {
        if ((mask >> bit) & 1) index[mask][n++] = static_cast<uint8_t>(bit);
      }
      count[mask] = static_cast<uint8_t>(n);
    }
  }
};
constexpr LeftPackTable kLeftPack;

}  // namespace

int16_t DciIndex::ToScanFixed(float value) const {
  return static_cast<int16_t>(std::clamp(std::nearbyint(value * scan_unit_), -16383.0f, 16383.0f));
}

// The scan admits the keys Prioritized DCI admits first. Composite index l admits key j once its
// largest gap over l's m lists, max_s |u_s . T_Q,b(q) - u_s . T_K(k_j)|, is reached by the walk;
// a key counts from the first composite index that admits it. So the admission radius of key j is
//   rad_j = min_l max_(s in l) |gap_s(j)| = r_b min_l max_s |scan_proj_s(j) - u_s . q / |q||
// (see scan_proj_), and the first `want` admissions are the `want` keys of smallest radius. The
// radius is one subtract, abs and max per key and direction over contiguous 16-bit values (16
// keys per AVX2 instruction), so scanning every visible key costs less than the walk's
// bookkeeping once the walk passes more than a few percent of them, which it does at head_dim
// 128 (projections shrink distances by ~sqrt(d), so neighbours and the rest overlap in every
// single list). Selecting the `want` smallest radii costs no sort of the n radii (see below).
void DciIndex::AdmitByScan(int64_t limit, int64_t first, int k, int64_t want,
                           DciScratch* scratch) const {
  const int m = options_.num_simple, num_composite = options_.num_composite;
  const int lists = num_lists();
  constexpr int16_t kTaken = 32767;  // radius of keys that are candidates already
  constexpr int64_t kSamples = 512;
  std::vector<int16_t>& rad = scratch->radius_;
  rad.resize(static_cast<size_t>(limit) + kSamples);
  std::vector<int16_t>& qfix = scratch->qfix_;
  qfix.resize(lists);
  for (int list = 0; list < lists; ++list) qfix[list] = ToScanFixed(scratch->qdir_[list]);
  int64_t j = 0;
#if defined(__AVX2__)
  for (; j + 16 <= limit; j += 16) {
    __m256i best = _mm256_set1_epi16(kTaken);
    for (int l = 0; l < num_composite; ++l) {
      __m256i widest = _mm256_setzero_si256();
      for (int s = 0; s < m; ++s) {
        const int list = l * m + s;
        const __m256i p = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
            &scan_proj_[static_cast<size_t>(list) * capacity_ + j]));
        const __m256i gap = _mm256_abs_epi16(_mm256_sub_epi16(p, _mm256_set1_epi16(qfix[list])));
        widest = _mm256_max_epi16(widest, gap);
      }
      best = _mm256_min_epi16(best, widest);
    }
    // gap * r_b: r_b is in steps of 2^-15, mulhrs rounds (gap * r) / 2^15.
    const __m256i r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&scan_radius_[j]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(&rad[j]), _mm256_mulhrs_epi16(best, r));
  }
#endif
  for (; j < limit; ++j) {
    int best = kTaken;
    for (int l = 0; l < num_composite; ++l) {
      int widest = 0;
      for (int s = 0; s < m; ++s) {
        const int list = l * m + s;
        const int16_t p = scan_proj_[static_cast<size_t>(list) * capacity_ + j];
        widest = std::max(widest, std::abs(p - qfix[list]));
      }
      best = std::min(best, widest);
    }
    rad[j] = static_cast<int16_t>((best * scan_radius_[j] + (1 << 14)) >> 15);
  }

  // Keys that are candidates already (the first keys) or taken whole (bands of at most k keys,
  // as in the walk) get the largest radius, which no threshold admits.
  std::vector<int32_t>& cand = scratch->candidates_;
  for (int64_t id = 0; id < first; ++id) rad[id] = kTaken;
  for (int b = 0; b < static_cast<int>(bands_.size()); ++b) {
    if (bands_[b].size == 0 || bands_[b].size > k) continue;
    for (const int32_t id : band_members_[b]) {
      if (id >= limit) break;  // ids increase
      if (id >= first) cand.push_back(id);
      rad[id] = kTaken;
    }
  }

  // The threshold: the radius of the (1.5 want)-th of 512 keys sampled at a fixed stride, a
  // loose cut (a 512-sample quantile is off by tens of percent when want / limit is small);
  // then the `want` smallest radii of the keys it passed are kept. Both quantiles come from
  // histograms (counts per radius bucket), not sorts: a sort's comparisons mispredict.
  std::vector<uint32_t>& hist = scratch->histogram_;
  int16_t threshold = kTaken;  // admit every visible key (not taken) when want covers them
  if (want < limit && limit > kSamples) {
    constexpr int kShift = 5;  // 1024 buckets of 32 steps over the int16 radii
    hist.assign(1 << (15 - kShift), 0);
    const int64_t step = (limit << 16) / kSamples;  // 16.16 fixed point: no division per sample
    for (int64_t i = 0; i < kSamples; ++i) ++hist[rad[(i * step) >> 16] >> kShift];
    const int64_t rank = (want * 3 * kSamples / 2 + limit - 1) / limit;
    int64_t seen = 0;
    int bucket = 0;
    while (bucket + 1 < static_cast<int>(hist.size()) && (seen += hist[bucket]) < rank) ++bucket;
    threshold = static_cast<int16_t>(std::min<int>((bucket + 1) << kShift, kTaken));
  }
  // Keys below the threshold, in id order, into scratch->passed_ (sized for every visible key
  // plus one vector of slack: the vector path stores 8 ids at a time and keeps the first few).
  std::vector<int32_t>& passed_ids = scratch->passed_;
  if (passed_ids.size() < static_cast<size_t>(limit) + 8) passed_ids.resize(limit + 8);
  int32_t* out = passed_ids.data();
  j = 0;
#if defined(__AVX2__)
  // Branch-free left-packing: where the keys that pass are scattered over the ids (most data),
  // a loop over the mask's bits mispredicts once per block.
  const __m256i t = _mm256_set1_epi16(threshold);
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (; j + 16 <= limit; j += 16) {
    const __m256i below =
        _mm256_cmpgt_epi16(t, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&rad[j])));
    // packs within each 128-bit half: bytes 0-7 = keys j .. j+7, bytes 16-23 = keys j+8 .. j+15.
    const unsigned mask =
        static_cast<unsigned>(_mm256_movemask_epi8(_mm256_packs_epi16(below, below)));
    const unsigned lo = mask & 0xFFu, hi = (mask >> 16) & 0xFFu;
    const __m256i ids = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(j)), iota);
    auto pack = [&](unsigned bits, __m256i group) {
      const __m256i order = _mm256_cvtepu8_epi32(
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kLeftPack.index[bits])));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                          _mm256_permutevar8x32_epi32(group, order));
      out += kLeftPack.count[bits];
    };
    pack(lo, ids);
    pack(hi, _mm256_add_epi32(ids, _mm256_set1_epi32(8)));
  }
#endif
  for (; j < limit; ++j) {
    if (rad[j] < threshold) *out++ = static_cast<int32_t>(j);
  }
  const int64_t passed = out - passed_ids.data();
  if (passed <= want) {
    cand.insert(cand.end(), passed_ids.data(), out);
    return;
  }
  // The cut: buckets of at most 256 over [0, threshold); all keys of the buckets below the one
  // where the count reaches `want` are kept, and that bucket's keys in id order until `want`
  // (the same keys whatever the threads or the run).
  int shift = 0;
  while ((threshold >> shift) >= 256) ++shift;
  hist.assign((threshold >> shift) + 1, 0);
  for (int64_t i = 0; i < passed; ++i) ++hist[rad[passed_ids[i]] >> shift];
  int64_t below = 0;
  int cut = 0;
  while (below + hist[cut] < want) below += hist[cut++];
  int64_t at_cut = want - below;
  for (int64_t i = 0; i < passed; ++i) {
    const int32_t id = passed_ids[i];
    const int r = rad[id] >> shift;
    if (r < cut || (r == cut && at_cut-- > 0)) cand.push_back(id);
  }
}

}  // namespace memoria
