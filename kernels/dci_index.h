// Prioritized Dynamic Continuous Indexing (Li & Malik, ICML 2017) for maximum-inner-product search
// over attention keys.
//
// Reduction to nearest neighbours. Keys of different norms are embedded on the unit sphere of
// R^(d+1) with a norm bound c >= |k|:
//   T_K(k) = [ k / c , sqrt(1 - |k|^2 / c^2) ]        (|T_K(k)| = 1)
//   T_Q(q) = [ q / |q| , 0 ]                          (|T_Q(q)| = 1)
//   |T_Q(q) - T_K(k)|^2 = 2 - 2 q.k / (|q| c)
// so the nearest neighbours of T_Q(q) are the keys with the largest q.k. Neither embedding is
// materialised: the index stores the projections of T_K(k_j) onto its random directions and ranks
// candidates by the exact q.k_j read from the caller's key rows.
//
// Norm bands. With one c for all keys, a key of norm rho * c sits at height sqrt(1 - rho^2) above
// the query's equator, so for rho < 1 even a perfectly aligned key is far from T_Q(q) (at rho =
// 0.9, 0.44 of the unit sphere's radius) and a walk over random projections has to pass most of
// the data before it. Keys are therefore split by norm into `num_bands` bands (band b holds norms
// in (c_max g^(b+1), c_max g^b], g = band_ratio; the last band holds all smaller norms), each with
// its own sorted arrays and its own bound c_b = (band's upper norm) / band_height. Inside a band
// the query is embedded at the height of the band's middle norm,
//   T_Q,b(q) = [ r q / |q| , sqrt(1 - r^2) ],    r = band_height * (1 + g) / 2,
// i.e. where a key of that norm aligned with q lies, so aligned keys of the band are near the
// query and the walk order approximates the band's q.k order (exact for one norm). band_height
// < 1 keeps every band away from the pole, where the height changes fastest with the norm. A band
// is dropped from the walk once |q| * (band's upper norm) is below a proven lower bound of the
// k-th best score (an exact bound). num_bands = 1 with band_height = 1 is the plain reduction.
//
// Structure. L composite indices of m simple indices each; simple index (l, s) owns a random unit
// direction u_ls in R^(d+1) and, per band, the band's keys sorted by u_ls . T_K(k_j) (a sorted
// array of {projection, id}). A key becomes a candidate of composite index l when it has been
// seen in all m of its arrays, and candidates are ranked by their true inner product.
//
// Walk (Query). Prioritized DCI visits entries in increasing |projection difference| over the
// m arrays with a priority queue; a key is then admitted at the moment its largest difference
// over the m arrays is reached. We visit in rounds of a growing radius r instead, over every band
// and composite index at once: each round scans, in every array, the entries whose difference
// is <= r (sequential, branch-light), so keys are admitted in the same order up to the order
// inside one round. The walk stops after `max_candidates` admissions or `max_visits` visited
// entries per composite index (over all bands, hidden keys not counted), or when every band is
// exhausted or dropped. One walk over all bands spends the budget where the query's neighbours
// are; bands of at most k keys (outliers of large norm) are taken whole.
//
// Scan (DciSearch::kScan, IceFormer's default). The walk's admission order is by each key's
// admission radius, min over composite indices of the largest projection gap over their m
// lists. At head_dim 128 a random projection shrinks distances by ~sqrt(d), so neighbours and
// the rest overlap in every list and the walk passes most of the keys before it has admitted
// the neighbours. The scan computes every visible key's radius from a table of 16-bit
// projections in id order (16 keys per AVX2 instruction, no sorted arrays, no per-visit
// bookkeeping), takes a loose threshold from 512 sampled radii and keeps the max_candidates * L
// keys of smallest radius among those below it: Prioritized DCI's first admissions, without a
// visit limit. Its few candidates are scored exactly (no int8 screening). Code: dci_scan.cc.
//
// Scoring (kWalk). Each key also has an int8 code (k_i ~ scale * code_i). A candidate is first
// screened by its code, which brackets q.k within +-scale |q|_1 / 2 (plus fp32 rounding); a
// candidate whose upper end is below the k-th largest lower end of all candidates cannot be in
// the top-k and is never read in fp32. The rest (those near the top-k boundary) are scored
// exactly, so the answer is the same as scoring every candidate exactly.
//
// Insertion. Keys are referenced in place (row j at keys + j * stride) and become searchable in
// order: Add(count) appends the next `count` rows (kScan: their table rows, O(m L d) per key).
// Each sorted array takes its new entries by sorting them and merging them in from the back (one
// pass), so adding a block of B keys costs O(m L (B log B + n)), i.e. O(m L (log B + n / B)) per
// key. Bulk build is one Add(n); causal attention adds one block of positions at a time and
// hides the keys past each query with Query's `limit`. A per-key balanced tree would make single
// insertions O(log n) but every visit a pointer chase; flat arrays keep the walk (the hot loop)
// sequential in memory.
//
// Memory (kWalk): 8 bytes (float projection + int32 id) per key per simple index, i.e. 8 m L
// bytes per key (16 for m = 2, L = 1; up to twice that with the arrays' growth slack), plus
// d + 4 bytes of int8 code and scale and 1 byte of band id per key; L bytes per key of visit
// counts and the candidate lists in each thread's DciScratch. (kScan): 2 m L bytes of 16-bit
// projections, 2 of radius, 1 of band id and 4 of band membership per key (21 B/key at m = 6,
// L = 1); per thread 2 bytes of radius and 4 of passed id per key. Keys are not copied. No
// n x n buffer exists.
//
// Thread-safety: Query is const and may run concurrently from many threads, each with its own
// DciScratch. Reset/Add must not overlap queries.
// Determinism: directions come from `seed` alone; a query's result depends only on the index
// contents, the query and the options.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "base/status.h"
#include "kernels/thread_pool.h"

namespace memoria {

// How Query finds the keys admitted by a composite index (see the header comment).
enum class DciSearch {
  // Walk outward over the sorted arrays in rounds of growing radius (Prioritized DCI's
  // structure). Sublinear in the keys passed over; each visit is a few ns of bookkeeping.
  kWalk,
  // Scan a table of every visible key's projections and admit the keys of smallest admission
  // radius. The same admission order, computed with vector instructions at a fraction of a ns
  // per key and direction; no sorted arrays are built.
  kScan,
};

struct DciOptions {
  DciSearch search = DciSearch::kWalk;
  // m: simple indices (random directions) per composite index, 1..255. More -> fewer false
  // candidates per true one, but a neighbour must be reached in more arrays before it counts.
  int num_simple = 4;
  // L: composite indices. More -> a neighbour missed by one composite index is found by another
  // (higher recall) at the cost of walking L times.
  int num_composite = 2;
  // Norm bands (see header comment). 1 = one band over all norms (the plain reduction).
  int num_bands = 1;
  // Ratio g of a band's lower to upper norm, in (0, 1). Closer to 1 -> tighter bands (walk order
  // closer to q.k order) but more bands to cover a given norm range.
  float band_ratio = 0.9f;
  // Height of each band's largest norm on its sphere, rho = |k| / c_b, in (0, 1]. 1 = c_b is the
  // band's upper norm (the plain reduction); below 1 the norm -> height map is flatter.
  float band_height = 1.0f;
  // Seed of the random directions (deterministic index for a fixed seed).
  uint64_t seed = 0x1CEF0;
};

// Per-query search budget.
struct DciQueryOptions {
  int k = 20;                // neighbours wanted (k >= 1)
  int max_candidates = 400;  // k0: candidates scored per composite index (per band)
  int max_visits = 4000;     // k1: sorted-array entries visited per composite index, over
                             // all norm bands (hidden keys not counted)
  // Keys 0 .. first_keys - 1 are always scored (on top of the walk's candidates). For attention
  // over a prompt these are its first tokens, which trained LMs use as "attention sinks": keys
  // that many queries weight heavily and that a projection walk can miss. 0 = pure DCI.
  int first_keys = 0;
};

// Per-thread working memory of Query, reused across queries (no allocation per query once sized).
class DciScratch {
 public:
  DciScratch() = default;

 private:
  friend class DciIndex;
  // counts_[l * capacity + id]: arrays of composite l that have shown id in this query.
  std::vector<uint8_t> counts_;
  // Walk state of one sorted array (band, list) in the current query: its entries (a
  // DciIndex::Entry array), the query's projection, and the visited window (lo, hi) exclusive.
  struct Walk {
    const void* entries;
    float qp;
    int64_t lo, hi;
  };
  std::vector<Walk> walk_;           // [non-empty bands][lists]
  std::vector<int> band_ids_;        // the non-empty bands, largest norms first
  std::vector<int32_t> candidates_;  // admitted ids of this query, in admission order
  std::vector<float> qdir_;          // u_list . q / |q| per direction
  // (upper bound of q.k, id) of every screened candidate of the query.
  std::vector<std::pair<float, int32_t>> screen_;
  std::vector<float> lower_;                       // lower bounds of q.k (screening threshold)
  // kScan: admission radius of every visible key (fixed point, see DciIndex::scan_unit_), then
  // the sampled radii.
  std::vector<int16_t> radius_;
  std::vector<int16_t> qfix_;  // kScan: u . q / |q| per direction, in the same fixed point
  std::vector<uint32_t> histogram_;  // kScan: keys per radius bucket (threshold selection)
  std::vector<int32_t> passed_;      // kScan: ids under the loose threshold
  std::vector<uint64_t> ranked_;     // rank keys (score, id) of the scored candidates
};

class DciIndex {
 public:
  // dim: key dimension d (>= 1). Directions are drawn here from options.seed. Aborts on options
  // outside the documented ranges (they come from code, not from requests).
  DciIndex(int dim, const DciOptions& options);

  int dim() const { return dim_; }
  const DciOptions& options() const { return options_; }
  // Keys currently searchable (ids 0 .. size() - 1).
  int64_t size() const { return size_; }

  // Empties the index and points it at `capacity` key rows: key j is keys[j * stride + 0 .. d).
  // norm_bound: an upper bound of every key norm that will be added (the largest key norm; a
  // larger key is kept in the top band and its embedding clamped, which keeps the search valid
  // but its walk order approximate). The rows must stay valid and unchanged while the index uses
  // them. Errors: INVALID_ARGUMENT for capacity outside [0, 2^31), stride < dim, norm_bound not
  // positive and finite, or null keys with capacity > 0.
  Status Reset(const float* keys, int64_t stride, int64_t capacity, float norm_bound);

  // Makes keys [size(), size() + count) searchable. Requires size() + count <= capacity (aborts
  // otherwise: a caller invariant). The arrays are updated in parallel over `pool`.
  void Add(const ThreadPool& pool, int64_t count);

  // Approximate top-k keys by inner product with q[0 .. d) among ids < limit (keys at or past
  // `limit` are skipped: causal attention hides future keys this way). Writes up to opts.k ids
  // and their scores q . k_id (fp32) to ids[] / scores[], best first (ties to the smaller id),
  // and returns how many were written. When limit <= opts.k every visible key is returned. A
  // zero query scores every key 0 and returns the first min(k, limit) ids.
  int Query(const float* q, int64_t limit, const DciQueryOptions& opts, DciScratch* scratch,
            int32_t* ids, float* scores) const;

  // Bytes held by the index (sorted arrays and directions), excluding the referenced keys.
  int64_t IndexBytes() const;
  // Bytes one DciScratch needs for this index's capacity (excluding the visit list, which grows
  // with max_visits).
  int64_t ScratchBytes() const;

 private:
  struct Entry {
    float proj;
    int32_t id;
  };
  static const Entry kLowSentinel;
  static const Entry kHighSentinel;
  struct Band {
    float upper_norm = 0.0f;  // every key of the band has |k| <= upper_norm
    float inv_bound = 1.0f;   // 1 / c_b
    float query_radius = 1.0f;  // r of T_Q,b
    float query_height = 0.0f;  // sqrt(1 - r^2)
    int64_t size = 0;
    // lists[list]: the band's keys sorted by projection (ties by id), list = l * m + s, framed
    // by a low and a high sentinel (size + 2 entries).
    std::vector<std::vector<Entry>> lists;
  };

  int num_lists() const { return options_.num_simple * options_.num_composite; }
  // kWalk: appends to scratch->candidates_ the walk's admissions (see the header comment),
  // screened by their int8 codes: on return it holds the candidates that may enter the top-k.
  void AdmitByWalk(const float* q, float qnorm, int64_t limit, int64_t first, int k,
                   int64_t max_admitted, int64_t max_visits, DciScratch* scratch) const;
  // kWalk: screens candidates_[from ..] by their int8 codes into screen_ and lower_ (see
  // AdmitByWalk); returns candidates_.size() (the next `from`).
  size_t ScreenByCodes(const float* q, float q_l1, int k, size_t from, DciScratch* scratch) const;
  // Moves the best min(k, ranked_.size()) of scratch->ranked_ to ids / scores, best first, and
  // returns how many.
  int WriteBest(int k, DciScratch* scratch, int32_t* ids, float* scores) const;
  // value in the scan table's fixed point (see scan_unit_), clamped to +-16383.
  int16_t ToScanFixed(float value) const;
  // kScan: appends to scratch->candidates_ the visible keys (ids < limit, >= first) of bands of
  // at most k keys, and the `want` other visible keys >= first of smallest admission radius (up
  // to ties in the radius' fixed point; see the .cc). Reads scratch->qdir_.
  void AdmitByScan(int64_t limit, int64_t first, int k, int64_t want, DciScratch* scratch) const;
  int BandOf(float norm) const;
  int dim_;
  DciOptions options_;
  // directions_[list * (dim + 1) + i]: unit vectors in R^(d+1).
  std::vector<float> directions_;
  const float* keys_ = nullptr;
  int64_t stride_ = 0;
  int64_t capacity_ = 0;
  int64_t size_ = 0;
  float norm_bound_ = 1.0f;
  std::vector<Band> bands_;
  // band_of_[id]: band of key id (0 = largest norms).
  std::vector<uint8_t> band_of_;
  // codes_[id * dim + i], code_scales_[id]: int8 copy of key id (k_i ~ scale * code_i), used to
  // screen candidates before their exact score (see Query).
  std::vector<int8_t> codes_;
  std::vector<float> code_scales_;
  // Scratch for Add: per new key, its band and its projections onto every direction.
  std::vector<float> block_proj_;
  // kScan only (the sorted arrays stay empty), in int16 fixed point of scan_unit_ steps per 1.0
  // (half the bytes of floats: the scan streams this table once per query, and twice the keys
  // per vector instruction). scan_proj_[list * capacity + id]: key id's projection rescaled so
  // that its gap to the query in the key's band b is r_b |p - u_list . q / |q||, where
  // p = (u . T_K(k) - u_(d+1) h_b) / r_b (r_b, h_b: T_Q,b's radius and height, see Band);
  // scan_radius_[id] = r_b in steps of 2^-15. |p| <= 2 / min_b r_b, and scan_unit_ maps that to
  // 16383, so differences of two values never overflow int16. band_members_[b]: ids of band b
  // in increasing order (bands of at most k keys are taken whole).
  std::vector<int16_t> scan_proj_;
  std::vector<int16_t> scan_radius_;
  float scan_unit_ = 1.0f;
  std::vector<std::vector<int32_t>> band_members_;
};

}  // namespace memoria
