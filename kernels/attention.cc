#include "kernels/attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "base/status.h"
#include "kernels/vec_math.h"

namespace memoria {
namespace {

// Blocking. Work is cut into tasks of (KV head, row block, key split). A row is one (query,
// query head) pair; rows of all query heads that share a KV head (GQA group) are interleaved
// query-major, so one pass over a K/V block serves the whole group.
//
// Per task and key block (all per-thread, O(kBq * (kBk + head_dim))):
//   qt  [kBq/16][head_dim][16]  scaled queries, transposed in strips of 16: the QK^T
//                               micro-kernel broadcasts one key element and multiplies it with
//                               16 queries at once (no horizontal sums)
//   s   [kBk][kBq]              scores, then probabilities, key-major: the online softmax runs
//                               down the columns with plain vertical vector ops
//   vp  [head_dim/16][kBk][16]  the V block in column tiles (see PackV)
//   o   [kBq][head_dim]         unnormalised output accumulators, rescaled in the PV kernel
// kBk is a multiple of the QK tile (6 keys); 64 x 96 keeps qt, s, o and a K/V block in L2.
// Fewer than 8 rows per KV head (decode) take a separate path, DecodeTask.
constexpr int kBq = 64;
constexpr int kBk = 96;
constexpr int kKeyTile = 6;
constexpr int kStrip = 16;  // query columns per QK strip; V columns per packed PV tile
constexpr int kRowTile = 6;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Scratch {
  std::vector<float> q, s, o, vp, m, l, alpha;
  std::vector<int32_t> lim;
  void Reserve(int head_dim) {
    q.resize(static_cast<size_t>(kBq) * head_dim);
    s.resize(static_cast<size_t>(kBk) * kBq);
    o.resize(static_cast<size_t>(kBq) * head_dim);
    vp.resize(static_cast<size_t>(kBk) * ((head_dim + kStrip - 1) / kStrip) * kStrip);
    m.resize(kBq);
    l.resize(kBq);
    alpha.resize(kBq);
    lim.resize(kBq);
  }
};

Scratch& ThreadScratch(int head_dim) {
  thread_local Scratch scratch;
  scratch.Reserve(head_dim);
  return scratch;
}

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- QK^T, transposed-query form (8 or more rows) --------------------------------------------
// s[t][c] = sum_d k[t][d] * qt[d][c] for NK keys and 8*NV query columns.
//
// The accumulators are two arrays of at most 6 vectors rather than one [NK][NV] array: GCC keeps
// an aggregate above its scalar-replacement size limit in memory and would store all 12
// accumulators on every iteration.
template <int NK, int NV>
inline void QkTile(const float* qt, int D, const float* k, int64_t k_stride, float* s) {
  static_assert(NV == 1 || NV == 2);
  __m256 acc0[NK], acc1[NK];
  const float* kr[NK];
  for (int t = 0; t < NK; ++t) {
    kr[t] = k + t * k_stride;
    acc0[t] = _mm256_setzero_ps();
    acc1[t] = _mm256_setzero_ps();
  }
  for (int d = 0; d < D; ++d) {
    const __m256 q0 = _mm256_loadu_ps(qt + d * kStrip);
    const __m256 q1 = NV == 2 ? _mm256_loadu_ps(qt + d * kStrip + 8) : q0;
    for (int t = 0; t < NK; ++t) {
      const __m256 kb = _mm256_broadcast_ss(kr[t] + d);
      acc0[t] = _mm256_fmadd_ps(kb, q0, acc0[t]);
      if (NV == 2) acc1[t] = _mm256_fmadd_ps(kb, q1, acc1[t]);
    }
  }
  for (int t = 0; t < NK; ++t) {
    _mm256_storeu_ps(s + t * kBq, acc0[t]);
    if (NV == 2) _mm256_storeu_ps(s + t * kBq + 8, acc1[t]);
  }
}

// The full 6-key x 16-query tile, written out with named accumulators (the hot loop of prefill).
inline void QkTile6x16(const float* qt, int D, const float* k, int64_t k_stride, float* s) {
  const float* k0 = k;
  const float* k1 = k0 + k_stride;
  const float* k2 = k1 + k_stride;
  const float* k3 = k2 + k_stride;
  const float* k4 = k3 + k_stride;
  const float* k5 = k4 + k_stride;
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(),
         c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(),
         c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps(),
         c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int d = 0; d < D; ++d) {
    const __m256 q0 = _mm256_loadu_ps(qt + d * kStrip);
    const __m256 q1 = _mm256_loadu_ps(qt + d * kStrip + 8);
    __m256 b = _mm256_broadcast_ss(k0 + d);
    c00 = _mm256_fmadd_ps(b, q0, c00);
    c01 = _mm256_fmadd_ps(b, q1, c01);
    b = _mm256_broadcast_ss(k1 + d);
    c10 = _mm256_fmadd_ps(b, q0, c10);
    c11 = _mm256_fmadd_ps(b, q1, c11);
    b = _mm256_broadcast_ss(k2 + d);
    c20 = _mm256_fmadd_ps(b, q0, c20);
    c21 = _mm256_fmadd_ps(b, q1, c21);
    b = _mm256_broadcast_ss(k3 + d);
    c30 = _mm256_fmadd_ps(b, q0, c30);
    c31 = _mm256_fmadd_ps(b, q1, c31);
    b = _mm256_broadcast_ss(k4 + d);
    c40 = _mm256_fmadd_ps(b, q0, c40);
    c41 = _mm256_fmadd_ps(b, q1, c41);
    b = _mm256_broadcast_ss(k5 + d);
    c50 = _mm256_fmadd_ps(b, q0, c50);
    c51 = _mm256_fmadd_ps(b, q1, c51);
  }
  _mm256_storeu_ps(s, c00);
  _mm256_storeu_ps(s + 8, c01);
  _mm256_storeu_ps(s + kBq, c10);
  _mm256_storeu_ps(s + kBq + 8, c11);
  _mm256_storeu_ps(s + 2 * kBq, c20);
  _mm256_storeu_ps(s + 2 * kBq + 8, c21);
  _mm256_storeu_ps(s + 3 * kBq, c30);
  _mm256_storeu_ps(s + 3 * kBq + 8, c31);
  _mm256_storeu_ps(s + 4 * kBq, c40);
  _mm256_storeu_ps(s + 4 * kBq + 8, c41);
  _mm256_storeu_ps(s + 5 * kBq, c50);
  _mm256_storeu_ps(s + 5 * kBq + 8, c51);
}

template <int NV>
void QkTileTail(int nk, const float* qt, int D, const float* k, int64_t k_stride, float* s) {
  switch (nk) {
    case 1:
      return QkTile<1, NV>(qt, D, k, k_stride, s);
    case 2:
      return QkTile<2, NV>(qt, D, k, k_stride, s);
    case 3:
      return QkTile<3, NV>(qt, D, k, k_stride, s);
    case 4:
      return QkTile<4, NV>(qt, D, k, k_stride, s);
    case 5:
      return QkTile<5, NV>(qt, D, k, k_stride, s);
  }
}

// cols: number of query columns (multiple of 8); qt holds cols/16 rounded up strips of
// [D][16]; k points at the block's first key row.
void QkTransposed(const float* qt, int cols, int D, const float* k, int64_t k_stride, int nk,
                  float* s) {
  for (int c = 0; c < cols; c += kStrip) {
    const float* strip = qt + static_cast<int64_t>(c / kStrip) * kStrip * D;
    const bool two = c + kStrip <= cols;
    int t = 0;
    for (; t + kKeyTile <= nk; t += kKeyTile) {
      if (two) {
        QkTile6x16(strip, D, k + t * k_stride, k_stride, s + t * kBq + c);
      } else {
        QkTile<kKeyTile, 1>(strip, D, k + t * k_stride, k_stride, s + t * kBq + c);
      }
    }
    if (t < nk) {
      if (two) {
        QkTileTail<2>(nk - t, strip, D, k + t * k_stride, k_stride, s + t * kBq + c);
      } else {
        QkTileTail<1>(nk - t, strip, D, k + t * k_stride, k_stride, s + t * kBq + c);
      }
    }
  }
}

// ---- QK^T, dot-product form (fewer than 8 rows: decode) ---------------------------------------
// R query rows (row-major, stride D) against NK keys; writes 8 columns per key (zeros beyond R).
template <int R, int NK>
inline void QkDotTile(const float* q, int D, const float* k, int64_t k_stride, float* s) {
  __m256 acc[R][NK];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < NK; ++t) acc[r][t] = _mm256_setzero_ps();
  }
  for (int d = 0; d < D; d += 8) {
    __m256 kv[NK];
    for (int t = 0; t < NK; ++t) kv[t] = _mm256_loadu_ps(k + t * k_stride + d);
    for (int r = 0; r < R; ++r) {
      const __m256 qv = _mm256_loadu_ps(q + r * D + d);
      for (int t = 0; t < NK; ++t) acc[r][t] = _mm256_fmadd_ps(qv, kv[t], acc[r][t]);
    }
  }
  for (int t = 0; t < NK; ++t) {
    alignas(32) float row[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int r = 0; r < R; ++r) row[r] = HorizontalSum(acc[r][t]);
    _mm256_storeu_ps(s + t * kBq, _mm256_load_ps(row));
  }
}

template <int R>
void QkDotRows(const float* q, int D, const float* k, int64_t k_stride, int nk, float* s) {
  // Enough independent accumulators to hide the FMA latency: about 8 per step.
  constexpr int kNk = R == 1 ? 4 : R == 2 ? 4 : R <= 4 ? 2 : 1;
  int t = 0;
  for (; t + kNk <= nk; t += kNk) QkDotTile<R, kNk>(q, D, k + t * k_stride, k_stride, s + t * kBq);
  for (; t < nk; ++t) QkDotTile<R, 1>(q, D, k + t * k_stride, k_stride, s + t * kBq);
}

void QkDot(int rows, const float* q, int D, const float* k, int64_t k_stride, int nk, float* s) {
  switch (rows) {
    case 1:
      return QkDotRows<1>(q, D, k, k_stride, nk, s);
    case 2:
      return QkDotRows<2>(q, D, k, k_stride, nk, s);
    case 3:
      return QkDotRows<3>(q, D, k, k_stride, nk, s);
    case 4:
      return QkDotRows<4>(q, D, k, k_stride, nk, s);
    case 5:
      return QkDotRows<5>(q, D, k, k_stride, nk, s);
    case 6:
      return QkDotRows<6>(q, D, k, k_stride, nk, s);
    case 7:
      return QkDotRows<7>(q, D, k, k_stride, nk, s);
  }
}

// ---- QK^T, scalar (head_dim not a multiple of 8) ----------------------------------------------
void QkScalar(int rows, int cols, const float* q, int D, const float* k, int64_t k_stride, int nk,
              float* s) {
  for (int t = 0; t < nk; ++t) {
    const float* kr = k + t * k_stride;
    for (int r = 0; r < rows; ++r) {
      float acc = 0;
      for (int d = 0; d < D; ++d) acc += q[r * D + d] * kr[d];
      s[t * kBq + r] = acc;
    }
    for (int r = rows; r < cols; ++r) s[t * kBq + r] = 0;
  }
}

// ---- P V -------------------------------------------------------------------------------------
// o[r][0:8*NV] = o[r][..] * alpha[r] + sum_t p[t][r] * v[t][0:8*NV] for NR rows.
// v: one packed column tile of V, [nk][kStrip] (see PackV).
template <int NR, int NV>
inline void PvTile(const float* p, int nk, const float* v, float* o, int D, const float* alpha) {
  static_assert(NV == 1 || NV == 2);
  __m256 acc0[NR], acc1[NR];  // two arrays: see QkTile
  for (int r = 0; r < NR; ++r) {
    acc0[r] = _mm256_setzero_ps();
    acc1[r] = _mm256_setzero_ps();
  }
  for (int t = 0; t < nk; ++t) {
    const __m256 v0 = _mm256_loadu_ps(v + t * kStrip);
    const __m256 v1 = NV == 2 ? _mm256_loadu_ps(v + t * kStrip + 8) : v0;
    for (int r = 0; r < NR; ++r) {
      const __m256 pb = _mm256_broadcast_ss(p + t * kBq + r);
      acc0[r] = _mm256_fmadd_ps(pb, v0, acc0[r]);
      if (NV == 2) acc1[r] = _mm256_fmadd_ps(pb, v1, acc1[r]);
    }
  }
  for (int r = 0; r < NR; ++r) {
    const __m256 a = _mm256_broadcast_ss(alpha + r);
    float* dst = o + r * D;
    _mm256_storeu_ps(dst, _mm256_fmadd_ps(_mm256_loadu_ps(dst), a, acc0[r]));
    if (NV == 2) {
      _mm256_storeu_ps(dst + 8, _mm256_fmadd_ps(_mm256_loadu_ps(dst + 8), a, acc1[r]));
    }
  }
}

template <int NV>
void PvTileTail(int nr, const float* p, int nk, const float* v, float* o, int D,
                const float* alpha) {
  switch (nr) {
    case 1:
      return PvTile<1, NV>(p, nk, v, o, D, alpha);
    case 2:
      return PvTile<2, NV>(p, nk, v, o, D, alpha);
    case 3:
      return PvTile<3, NV>(p, nk, v, o, D, alpha);
    case 4:
      return PvTile<4, NV>(p, nk, v, o, D, alpha);
    case 5:
      return PvTile<5, NV>(p, nk, v, o, D, alpha);
  }
}

// Copies a V block into column tiles of 16: vp[(d / 16) * kBk * 16 + t * 16 + d % 16]. The PV
// kernel then streams 64 contiguous bytes per key instead of one line per V row, which for the
// usual 512-byte row stride would fall into a handful of L1 sets and thrash.
void PackV(const float* v, int64_t v_stride, int nk, int D, float* vp) {
  for (int t = 0; t < nk; ++t) {
    const float* src = v + t * v_stride;
    int d = 0;
    for (; d + kStrip <= D; d += kStrip) {
      float* dst = vp + static_cast<int64_t>(d / kStrip) * kBk * kStrip + t * kStrip;
      _mm256_storeu_ps(dst, _mm256_loadu_ps(src + d));
      _mm256_storeu_ps(dst + 8, _mm256_loadu_ps(src + d + 8));
    }
    if (d < D) {  // D % 16 == 8
      float* dst = vp + static_cast<int64_t>(d / kStrip) * kBk * kStrip + t * kStrip;
      _mm256_storeu_ps(dst, _mm256_loadu_ps(src + d));
    }
  }
}

// Column tiles outer, row tiles inner: one 16-wide V tile (nk x 64 bytes) stays in L1 while
// every row tile uses it.
void PvVector(int rows, const float* p, int nk, const float* vp, float* o, int D,
              const float* alpha) {
  for (int d = 0; d < D; d += kStrip) {
    const float* vt = vp + static_cast<int64_t>(d / kStrip) * kBk * kStrip;
    const bool two = d + kStrip <= D;
    int r = 0;
    for (; r + kRowTile <= rows; r += kRowTile) {
      if (two) {
        PvTile<kRowTile, 2>(p + r, nk, vt, o + r * D + d, D, alpha + r);
      } else {
        PvTile<kRowTile, 1>(p + r, nk, vt, o + r * D + d, D, alpha + r);
      }
    }
    if (r < rows) {
      if (two) {
        PvTileTail<2>(rows - r, p + r, nk, vt, o + r * D + d, D, alpha + r);
      } else {
        PvTileTail<1>(rows - r, p + r, nk, vt, o + r * D + d, D, alpha + r);
      }
    }
  }
}

void PvScalar(int rows, const float* p, int nk, const float* v, int64_t v_stride, float* o, int D,
              const float* alpha) {
  for (int r = 0; r < rows; ++r) {
    float* orow = o + r * D;
    for (int d = 0; d < D; ++d) orow[d] *= alpha[r];
    for (int t = 0; t < nk; ++t) {
      const float pt = p[t * kBq + r];
      const float* vr = v + t * v_stride;
      for (int d = 0; d < D; ++d) orow[d] += pt * vr[d];
    }
  }
}

// ---- Online softmax over one key block --------------------------------------------------------
// s: [nk][ls] scores for keys j0..j0+nk-1 and `cols` columns. Masks keys j > lim[c] (when
// mask), turns scores into exp(s - m_new), updates m and l, and writes the factor alpha by which
// the old accumulators must be scaled.
void OnlineSoftmax(float* s, int nk, int cols, int64_t j0, bool mask, const int32_t* lim, float* m,
                   float* l, float* alpha, int ls = kBq) {
  const __m256 neg_inf = _mm256_set1_ps(kNegInf);
  for (int c = 0; c < cols; c += 8) {
    const __m256i vlim = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lim + c));
    __m256 mx = neg_inf;
    if (mask) {
      for (int t = 0; t < nk; ++t) {
        const __m256i j = _mm256_set1_epi32(static_cast<int32_t>(j0 + t));
        const __m256 hidden = _mm256_castsi256_ps(_mm256_cmpgt_epi32(j, vlim));
        const __m256 x = _mm256_blendv_ps(_mm256_loadu_ps(s + t * ls + c), neg_inf, hidden);
        _mm256_storeu_ps(s + t * ls + c, x);
        mx = _mm256_max_ps(mx, x);
      }
    } else {
      for (int t = 0; t < nk; ++t) mx = _mm256_max_ps(mx, _mm256_loadu_ps(s + t * ls + c));
    }
    const __m256 m_old = _mm256_loadu_ps(m + c);
    const __m256 m_new = _mm256_max_ps(m_old, mx);
    // While a row has seen no visible key its max is -inf; subtracting 0 instead keeps
    // exp(-inf - m) = 0 rather than NaN.
    const __m256 m_safe =
        _mm256_blendv_ps(m_new, _mm256_setzero_ps(), _mm256_cmp_ps(m_new, neg_inf, _CMP_EQ_OQ));
    const __m256 a = vec::Exp(_mm256_sub_ps(m_old, m_safe));
    __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps();
    int t = 0;
    for (; t + 2 <= nk; t += 2) {
      const __m256 p0 = vec::Exp(_mm256_sub_ps(_mm256_loadu_ps(s + t * ls + c), m_safe));
      const __m256 p1 = vec::Exp(_mm256_sub_ps(_mm256_loadu_ps(s + (t + 1) * ls + c), m_safe));
      _mm256_storeu_ps(s + t * ls + c, p0);
      _mm256_storeu_ps(s + (t + 1) * ls + c, p1);
      sum0 = _mm256_add_ps(sum0, p0);
      sum1 = _mm256_add_ps(sum1, p1);
    }
    if (t < nk) {
      const __m256 p0 = vec::Exp(_mm256_sub_ps(_mm256_loadu_ps(s + t * ls + c), m_safe));
      _mm256_storeu_ps(s + t * ls + c, p0);
      sum0 = _mm256_add_ps(sum0, p0);
    }
    _mm256_storeu_ps(l + c, _mm256_fmadd_ps(_mm256_loadu_ps(l + c), a, _mm256_add_ps(sum0, sum1)));
    _mm256_storeu_ps(m + c, m_new);
    _mm256_storeu_ps(alpha + c, a);
  }
}

// ---- One task ---------------------------------------------------------------------------------

struct Problem {
  const AttentionParams* p;
  const float *q, *k, *v;
  int64_t q_stride, k_stride, v_stride, out_stride;
  float* out;
  int g;               // query heads per KV head
  int64_t rows;        // rows per KV head: q_len * g
  int64_t row_blocks;  // ceil(rows / kBq)
  int splits;          // key-range splits per row block
  float* partial;      // splits > 1: [kv_heads * row_blocks * splits][kBq * (head_dim + 2)]
};

// Causal limit of a row: the last visible key index (may be < 0: the row sees no key).
inline int64_t RowLimit(const Problem& pr, int64_t i) {
  const AttentionParams& p = *pr.p;
  if (!p.causal) return p.kv_len - 1;
  return std::min<int64_t>(p.kv_len - 1, i + p.q_offset);
}

inline int64_t KeyBlocksEnd(const Problem& pr, int64_t last_row) {
  return std::max<int64_t>(0, RowLimit(pr, last_row / pr.g) + 1);
}

void RunTask(const Problem& pr, int64_t task) {
  const AttentionParams& p = *pr.p;
  const int D = p.head_dim;
  const int64_t base = task / pr.splits;
  const int split = static_cast<int>(task % pr.splits);
  const int kh = static_cast<int>(base / pr.row_blocks);
  const int64_t r0 = (base % pr.row_blocks) * kBq;
  const int nr = static_cast<int>(std::min<int64_t>(kBq, pr.rows - r0));
  const int cols = (nr + 7) & ~7;
  const bool vector_d = D % 8 == 0;
  const bool transposed = vector_d && nr >= 8;

  Scratch& sc = ThreadScratch(D);
  float* q = sc.q.data();
  float* s = sc.s.data();
  float* o = sc.o.data();
  float* m = sc.m.data();
  float* l = sc.l.data();
  int32_t* lim = sc.lim.data();

  // Pack the block's queries, scaled.
  if (transposed) std::fill(q, q + static_cast<size_t>(D) * kBq, 0.0f);  // padding columns
  for (int r = 0; r < nr; ++r) {
    const int64_t i = (r0 + r) / pr.g;
    const int h = kh * pr.g + static_cast<int>((r0 + r) % pr.g);
    const float* src = pr.q + i * pr.q_stride + static_cast<int64_t>(h) * D;
    if (transposed) {
      float* strip = q + static_cast<int64_t>(r / kStrip) * kStrip * D + r % kStrip;
      for (int d = 0; d < D; ++d) strip[d * kStrip] = src[d] * p.scale;
    } else {
      for (int d = 0; d < D; ++d) q[r * D + d] = src[d] * p.scale;
    }
    lim[r] = static_cast<int32_t>(std::max<int64_t>(-1, RowLimit(pr, i)));
  }
  for (int r = nr; r < kBq; ++r) lim[r] = std::numeric_limits<int32_t>::max();
  std::fill(m, m + kBq, kNegInf);
  std::fill(l, l + kBq, 0.0f);
  std::fill(o, o + static_cast<size_t>(nr) * D, 0.0f);

  // This split's key range, in whole blocks.
  const int64_t kv_end = KeyBlocksEnd(pr, r0 + nr - 1);
  const int64_t n_blocks = (kv_end + kBk - 1) / kBk;
  const int64_t b0 = n_blocks * split / pr.splits, b1 = n_blocks * (split + 1) / pr.splits;
  const int64_t min_lim = lim[0];
  const int kv_head_offset = kh * D;

  for (int64_t b = b0; b < b1; ++b) {
    const int64_t j0 = b * kBk;
    const int nk = static_cast<int>(std::min<int64_t>(kBk, kv_end - j0));
    const float* kb = pr.k + j0 * pr.k_stride + kv_head_offset;
    const float* vb = pr.v + j0 * pr.v_stride + kv_head_offset;
    if (transposed) {
      QkTransposed(q, cols, D, kb, pr.k_stride, nk, s);
    } else if (vector_d) {
      QkDot(nr, q, D, kb, pr.k_stride, nk, s);
    } else {
      QkScalar(nr, cols, q, D, kb, pr.k_stride, nk, s);
    }
    if (p.bias.values != nullptr) {
      const RelativeBias& bias = p.bias;
      for (int t = 0; t < nk; ++t) {
        for (int r = 0; r < nr; ++r) {
          const int64_t i = (r0 + r) / pr.g;
          const int h = kh * pr.g + static_cast<int>((r0 + r) % pr.g);
          const int64_t rel = (j0 + t) - (i + p.q_offset);
          const int64_t idx = std::clamp<int64_t>(rel - bias.min_relative, 0, bias.length - 1);
          s[t * kBq + r] += bias.values[h * bias.length + idx];
        }
      }
    }
    const bool mask = j0 + nk - 1 > min_lim;
    OnlineSoftmax(s, nk, cols, j0, mask, lim, m, l, sc.alpha.data());
    if (vector_d) {
      PackV(vb, pr.v_stride, nk, D, sc.vp.data());
      PvVector(nr, s, nk, sc.vp.data(), o, D, sc.alpha.data());
    } else {
      PvScalar(nr, s, nk, vb, pr.v_stride, o, D, sc.alpha.data());
    }
  }

  if (pr.splits > 1) {
    float* dst = pr.partial + task * static_cast<int64_t>(kBq) * (D + 2);
    std::memcpy(dst, m, sizeof(float) * kBq);
    std::memcpy(dst + kBq, l, sizeof(float) * kBq);
    std::memcpy(dst + 2 * kBq, o, sizeof(float) * nr * D);
    return;
  }
  for (int r = 0; r < nr; ++r) {
    const int64_t i = (r0 + r) / pr.g;
    const int h = kh * pr.g + static_cast<int>((r0 + r) % pr.g);
    float* dst = pr.out + i * pr.out_stride + static_cast<int64_t>(h) * D;
    const float inv = l[r] > 0 ? 1.0f / l[r] : 0.0f;
    for (int d = 0; d < D; ++d) dst[d] = o[r * D + d] * inv;
  }
}

// ---- Decode: fewer than 8 rows per KV head ---------------------------------------------------
// Bound by reading K and V once. A cached K/V row is n_kv_heads * head_dim wide, so walking one
// head's column of a key block would touch a short piece of every row (at 4 KiB rows, a new
// page per key) and starve the prefetchers. This path walks each key row across all KV heads,
// contiguously; a task is a range of key blocks for every head, and the pool splits the key
// range (partial softmax states merged by MergeSplits).

constexpr int kDecodeCols = 8;  // score columns per key and head (rows padded to one vector)

// s[r] = q[r] . k for R rows of q (stride D); s[R..8) = 0.
template <int R>
void DotRows(const float* q, int D, const float* k, float* s) {
  __m256 a0[R], a1[R];  // two chains per row hide the FMA latency
  for (int r = 0; r < R; ++r) {
    a0[r] = _mm256_setzero_ps();
    a1[r] = _mm256_setzero_ps();
  }
  int d = 0;
  for (; d + 16 <= D; d += 16) {
    const __m256 k0 = _mm256_loadu_ps(k + d), k1 = _mm256_loadu_ps(k + d + 8);
    for (int r = 0; r < R; ++r) {
      a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * D + d), k0, a0[r]);
      a1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * D + d + 8), k1, a1[r]);
    }
  }
  if (d < D) {
    const __m256 k0 = _mm256_loadu_ps(k + d);
    for (int r = 0; r < R; ++r) a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * D + d), k0, a0[r]);
  }
  alignas(32) float row[kDecodeCols] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int r = 0; r < R; ++r) row[r] = HorizontalSum(_mm256_add_ps(a0[r], a1[r]));
  _mm256_storeu_ps(s, _mm256_load_ps(row));
}

using DotRowsFn = void (*)(const float*, int, const float*, float*);
DotRowsFn GetDotRows(int rows) {
  static constexpr DotRowsFn kFns[] = {nullptr,    DotRows<1>, DotRows<2>, DotRows<3>,
                                       DotRows<4>, DotRows<5>, DotRows<6>, DotRows<7>};
  return kFns[rows];
}

struct DecodeScratch {
  std::vector<float> q, s, o, m, l, alpha;
};

void DecodeTask(const Problem& pr, int split) {
  const AttentionParams& p = *pr.p;
  const int D = p.head_dim;
  const int H = p.n_kv_heads;
  const int R = static_cast<int>(pr.rows);
  thread_local DecodeScratch sc;
  sc.q.resize(static_cast<size_t>(H) * R * D);
  sc.o.resize(static_cast<size_t>(H) * R * D);
  sc.s.resize(static_cast<size_t>(H) * kBk * kDecodeCols);
  sc.m.assign(static_cast<size_t>(H) * kDecodeCols, kNegInf);
  sc.l.assign(static_cast<size_t>(H) * kDecodeCols, 0.0f);
  sc.alpha.resize(static_cast<size_t>(H) * kDecodeCols);
  std::fill(sc.o.begin(), sc.o.end(), 0.0f);
  alignas(32) int32_t lim[kDecodeCols];
  for (int r = 0; r < kDecodeCols; ++r) {
    lim[r] = r < R ? static_cast<int32_t>(std::max<int64_t>(-1, RowLimit(pr, r / pr.g)))
                   : std::numeric_limits<int32_t>::max();
  }
  for (int kh = 0; kh < H; ++kh) {
    for (int r = 0; r < R; ++r) {
      const int64_t i = r / pr.g;
      const int h = kh * pr.g + r % pr.g;
      const float* src = pr.q + i * pr.q_stride + static_cast<int64_t>(h) * D;
      float* dst = sc.q.data() + (static_cast<int64_t>(kh) * R + r) * D;
      for (int d = 0; d < D; ++d) dst[d] = src[d] * p.scale;
    }
  }
  const DotRowsFn dot = GetDotRows(R);
  const int64_t kv_end = KeyBlocksEnd(pr, R - 1);
  const int64_t n_blocks = (kv_end + kBk - 1) / kBk;
  const int64_t b0 = n_blocks * split / pr.splits, b1 = n_blocks * (split + 1) / pr.splits;
  const int64_t sh = static_cast<int64_t>(kBk) * kDecodeCols;  // s stride between heads
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t j0 = b * kBk;
    const int nk = static_cast<int>(std::min<int64_t>(kBk, kv_end - j0));
    for (int t = 0; t < nk; ++t) {
      const float* krow = pr.k + (j0 + t) * pr.k_stride;
      for (int kh = 0; kh < H; ++kh) {
        dot(sc.q.data() + static_cast<int64_t>(kh) * R * D, D, krow + kh * D,
            sc.s.data() + kh * sh + t * kDecodeCols);
      }
    }
    if (p.bias.values != nullptr) {
      const RelativeBias& bias = p.bias;
      for (int kh = 0; kh < H; ++kh) {
        for (int t = 0; t < nk; ++t) {
          for (int r = 0; r < R; ++r) {
            const int h = kh * pr.g + r % pr.g;
            const int64_t rel = (j0 + t) - (r / pr.g + p.q_offset);
            const int64_t idx = std::clamp<int64_t>(rel - bias.min_relative, 0, bias.length - 1);
            sc.s[kh * sh + t * kDecodeCols + r] += bias.values[h * bias.length + idx];
          }
        }
      }
    }
    const bool mask = j0 + nk - 1 > lim[0];
    for (int kh = 0; kh < H; ++kh) {
      float* alpha = sc.alpha.data() + kh * kDecodeCols;
      OnlineSoftmax(sc.s.data() + kh * sh, nk, kDecodeCols, j0, mask, lim,
                    sc.m.data() + kh * kDecodeCols, sc.l.data() + kh * kDecodeCols, alpha,
                    kDecodeCols);
      for (int r = 0; r < R; ++r) {
        float* o = sc.o.data() + (static_cast<int64_t>(kh) * R + r) * D;
        const __m256 a = _mm256_set1_ps(alpha[r]);
        for (int d = 0; d < D; d += 8)
          _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), a));
      }
    }
    for (int t = 0; t < nk; ++t) {
      const float* vrow = pr.v + (j0 + t) * pr.v_stride;
      for (int kh = 0; kh < H; ++kh) {
        const float* vh = vrow + kh * D;
        for (int r = 0; r < R; ++r) {
          const float pt = sc.s[kh * sh + t * kDecodeCols + r];
          if (pt == 0.0f) continue;  // masked key
          const __m256 pb = _mm256_set1_ps(pt);
          float* o = sc.o.data() + (static_cast<int64_t>(kh) * R + r) * D;
          for (int d = 0; d < D; d += 8) {
            _mm256_storeu_ps(o + d,
                             _mm256_fmadd_ps(pb, _mm256_loadu_ps(vh + d), _mm256_loadu_ps(o + d)));
          }
        }
      }
    }
  }
  for (int kh = 0; kh < H; ++kh) {
    const float* m = sc.m.data() + kh * kDecodeCols;
    const float* l = sc.l.data() + kh * kDecodeCols;
    if (pr.splits > 1) {
      // Same layout as RunTask's partial states (one row block per KV head).
      float* dst = pr.partial + (static_cast<int64_t>(kh) * pr.splits + split) * kBq * (D + 2);
      std::memcpy(dst, m, sizeof(float) * R);
      std::memcpy(dst + kBq, l, sizeof(float) * R);
      std::memcpy(dst + 2 * kBq, sc.o.data() + static_cast<int64_t>(kh) * R * D,
                  sizeof(float) * R * D);
      continue;
    }
    for (int r = 0; r < R; ++r) {
      const int h = kh * pr.g + r % pr.g;
      float* dst = pr.out + (r / pr.g) * pr.out_stride + static_cast<int64_t>(h) * D;
      const float* o = sc.o.data() + (static_cast<int64_t>(kh) * R + r) * D;
      const float inv = l[r] > 0 ? 1.0f / l[r] : 0.0f;
      for (int d = 0; d < D; ++d) dst[d] = o[d] * inv;
    }
  }
}

// Combines the partial softmax states of one row block's key splits.
void MergeSplits(const Problem& pr, int64_t base) {
  const int D = pr.p->head_dim;
  const int kh = static_cast<int>(base / pr.row_blocks);
  const int64_t r0 = (base % pr.row_blocks) * kBq;
  const int nr = static_cast<int>(std::min<int64_t>(kBq, pr.rows - r0));
  const int64_t part = static_cast<int64_t>(kBq) * (D + 2);
  const float* first = pr.partial + base * pr.splits * part;
  for (int r = 0; r < nr; ++r) {
    float mx = kNegInf;
    for (int sp = 0; sp < pr.splits; ++sp) mx = std::max(mx, first[sp * part + r]);
    const int64_t i = (r0 + r) / pr.g;
    const int h = kh * pr.g + static_cast<int>((r0 + r) % pr.g);
    float* dst = pr.out + i * pr.out_stride + static_cast<int64_t>(h) * D;
    std::fill(dst, dst + D, 0.0f);
    if (mx == kNegInf) continue;
    float l = 0;
    for (int sp = 0; sp < pr.splits; ++sp) {
      const float* st = first + sp * part;
      if (st[r] == kNegInf) continue;
      const float w = std::exp(st[r] - mx);
      l += w * st[kBq + r];
      const float* o = st + 2 * kBq + static_cast<int64_t>(r) * D;
      for (int d = 0; d < D; ++d) dst[d] += w * o[d];
    }
    const float inv = l > 0 ? 1.0f / l : 0.0f;
    for (int d = 0; d < D; ++d) dst[d] *= inv;
  }
}

}  // namespace

void Attention(const ThreadPool& pool, const AttentionParams& p, const float* q, int64_t q_stride,
               const float* k, int64_t k_stride, const float* v, int64_t v_stride, float* out,
               int64_t out_stride) {
  MEMORIA_CHECK(p.n_heads > 0 && p.n_kv_heads > 0 && p.n_heads % p.n_kv_heads == 0,
                "Attention: n_heads must be a multiple of n_kv_heads");
  MEMORIA_CHECK(p.head_dim > 0 && p.q_len >= 0 && p.kv_len >= 0, "Attention: bad shape");
  MEMORIA_CHECK(p.kv_len < std::numeric_limits<int32_t>::max() / 2, "Attention: kv_len too large");
  MEMORIA_CHECK(p.bias.values == nullptr || p.bias.length > 0, "Attention: empty bias table");
  if (p.q_len == 0) return;

  Problem pr;
  pr.p = &p;
  pr.q = q;
  pr.k = k;
  pr.v = v;
  pr.q_stride = q_stride;
  pr.k_stride = k_stride;
  pr.v_stride = v_stride;
  pr.out = out;
  pr.out_stride = out_stride;
  pr.g = p.n_heads / p.n_kv_heads;
  pr.rows = p.q_len * pr.g;
  pr.row_blocks = (pr.rows + kBq - 1) / kBq;
  pr.splits = 1;
  pr.partial = nullptr;

  const int64_t base_tasks = static_cast<int64_t>(p.n_kv_heads) * pr.row_blocks;
  const int threads = pool.num_threads();
  const int64_t key_blocks = (KeyBlocksEnd(pr, pr.rows - 1) + kBk - 1) / kBk;
  const bool decode = p.head_dim % 8 == 0 && pr.rows < 8;
  if (decode) {
    // Tasks are key ranges over all heads; two per thread balance uneven preemption.
    pr.splits = static_cast<int>(
        std::max<int64_t>(1, std::min<int64_t>(threads > 1 ? 2 * threads : 1, key_blocks)));
  } else if (threads > 1 && base_tasks < 2 * threads) {
    // Few row blocks (short chunks) cannot keep every thread busy: split the key range as well,
    // at least 4 key blocks per split, and merge the partial softmax states afterwards.
    const int64_t want = (2 * threads + base_tasks - 1) / base_tasks;
    pr.splits = static_cast<int>(std::max<int64_t>(1, std::min(want, key_blocks / 4)));
  }
  thread_local std::vector<float> partial;
  if (pr.splits > 1) {
    partial.resize(static_cast<size_t>(base_tasks * pr.splits * kBq * (p.head_dim + 2)));
    pr.partial = partial.data();
  }

  pool.BindOpenMp();
  if (decode) {
    pool.ParallelForDynamic(pr.splits, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) DecodeTask(pr, static_cast<int>(t));
    });
  } else {
    // Later row blocks see more keys under a causal mask: hand them out first.
    const int64_t tasks = base_tasks * pr.splits;
    pool.ParallelForDynamic(tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t base = t / pr.splits;
        const int64_t kh = base / pr.row_blocks, rb = base % pr.row_blocks;
        const int64_t flipped =
            (kh * pr.row_blocks + (pr.row_blocks - 1 - rb)) * pr.splits + t % pr.splits;
        RunTask(pr, flipped);
      }
    });
  }
  if (pr.splits > 1) {
    pool.ParallelFor(base_tasks, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) MergeSplits(pr, b);
    });
  }
}

void AttentionReference(const AttentionParams& p, const float* q, int64_t q_stride, const float* k,
                        int64_t k_stride, const float* v, int64_t v_stride, float* out,
                        int64_t out_stride) {
  const int D = p.head_dim;
  const int g = p.n_heads / p.n_kv_heads;
  std::vector<double> score(static_cast<size_t>(std::max<int64_t>(1, p.kv_len)));
  std::vector<double> acc(D);
  for (int64_t i = 0; i < p.q_len; ++i) {
    for (int h = 0; h < p.n_heads; ++h) {
      const int kh = h / g;
      const float* qi = q + i * q_stride + static_cast<int64_t>(h) * D;
      const int64_t last = p.causal ? std::min(p.kv_len - 1, i + p.q_offset) : p.kv_len - 1;
      float* dst = out + i * out_stride + static_cast<int64_t>(h) * D;
      if (last < 0) {
        std::fill(dst, dst + D, 0.0f);
        continue;
      }
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j <= last; ++j) {
        const float* kj = k + j * k_stride + static_cast<int64_t>(kh) * D;
        double dot = 0;
        for (int d = 0; d < D; ++d) dot += static_cast<double>(qi[d]) * kj[d];
        double sc = p.scale * dot;
        if (p.bias.values != nullptr) {
          const int64_t idx =
              std::clamp<int64_t>(j - (i + p.q_offset) - p.bias.min_relative, 0, p.bias.length - 1);
          sc += p.bias.values[h * p.bias.length + idx];
        }
        score[j] = sc;
        mx = std::max(mx, sc);
      }
      double sum = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j <= last; ++j) {
        const double w = std::exp(score[j] - mx);
        sum += w;
        const float* vj = v + j * v_stride + static_cast<int64_t>(kh) * D;
        for (int d = 0; d < D; ++d) acc[d] += w * vj[d];
      }
      for (int d = 0; d < D; ++d) dst[d] = static_cast<float>(acc[d] / sum);
    }
  }
}

}  // namespace memoria
