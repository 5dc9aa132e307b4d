#include "kernels/gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/logging.h"
#include "base/status.h"
#include "kernels/cpu_features.h"

namespace memoria {
namespace {

// ---------------------------------------------------------------------------------------------
// oneDNN primitive cache.
//
// Creating a matmul primitive costs tens of microseconds to milliseconds (JIT); executing a
// cached one costs only its arithmetic. Primitives are keyed by everything that shapes the
// generated code. Execution uses scratchpad_mode::user with a per-thread scratchpad, so one
// cached primitive may run concurrently on several threads (each with its own ThreadPool).

struct GemmKey {
  int64_t m, n, k, lda, ldb, ldc;
  bool trans_b;
  DType b_dtype;
  bool accumulate;
  bool operator==(const GemmKey& o) const {
    return m == o.m && n == o.n && k == o.k && lda == o.lda && ldb == o.ldb && ldc == o.ldc &&
           trans_b == o.trans_b && b_dtype == o.b_dtype && accumulate == o.accumulate;
  }
};

struct GemmKeyHash {
  size_t operator()(const GemmKey& k) const {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    mix(k.m);
    mix(k.n);
    mix(k.k);
    mix(k.lda);
    mix(k.ldb);
    mix(k.ldc);
    mix((static_cast<uint64_t>(k.trans_b) << 16) | (static_cast<uint64_t>(k.b_dtype) << 8) |
        static_cast<uint64_t>(k.accumulate));
    return static_cast<size_t>(h);
  }
};

struct GemmPrimitive {
  dnnl::matmul prim;
  dnnl::memory::desc a_md, b_md, c_md, scratchpad_md;
  size_t scratchpad_bytes = 0;
  bool src_bf16 = false;  // A is converted to bf16 before the call (bf16 weights).
};

dnnl::engine& CpuEngine() {
  static dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

// Bounded LRU cache. A server sees a handful of N,K pairs per model but many M values during
// prefill; 512 primitives of a few KB each keep the working set of several models.
class PrimitiveCache {
 public:
  static constexpr size_t kCapacity = 512;

  // Returns nullptr when oneDNN has no implementation for the key (e.g. bf16 without
  // avx512_core); that answer is cached too.
  std::shared_ptr<const GemmPrimitive> Get(const GemmKey& key) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = map_.find(key);
      if (it != map_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second.second);
        return it->second.first;
      }
    }
    // Created outside the lock: creation is slow and two threads racing on one key only waste
    // a little work.
    std::shared_ptr<const GemmPrimitive> p = Create(key);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) return it->second.first;
    lru_.push_front(key);
    map_.emplace(key, std::make_pair(p, lru_.begin()));
    if (map_.size() > kCapacity) {
      map_.erase(lru_.back());
      lru_.pop_back();
    }
    return p;
  }

 private:
  static std::shared_ptr<const GemmPrimitive> Create(const GemmKey& key) {
    using dt = dnnl::memory::data_type;
    using dims = dnnl::memory::dims;
    auto out = std::make_shared<GemmPrimitive>();
    const dt b_type = key.b_dtype == DType::kBF16 ? dt::bf16 : dt::f32;
    out->src_bf16 = key.b_dtype == DType::kBF16;
    // A: [M, K] row-major with row stride lda (a bf16 copy of A is packed with stride K).
    out->a_md = dnnl::memory::desc(dims{key.m, key.k}, out->src_bf16 ? dt::bf16 : dt::f32,
                                   dims{out->src_bf16 ? key.k : key.lda, 1});
    // B as the logical [K, N] operand: a [N, K] weight with row stride ldb is its transpose
    // ("ba" with explicit strides), so no copy of the weights is ever made.
    out->b_md = key.trans_b ? dnnl::memory::desc(dims{key.k, key.n}, b_type, dims{1, key.ldb})
                            : dnnl::memory::desc(dims{key.k, key.n}, b_type, dims{key.ldb, 1});
    out->c_md = dnnl::memory::desc(dims{key.m, key.n}, dt::f32, dims{key.ldc, 1});
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (key.accumulate) {
      dnnl::post_ops ops;
      ops.append_sum(1.0f);
      attr.set_post_ops(ops);
    }
    try {
      dnnl::matmul::desc desc(out->a_md, out->b_md, out->c_md);
      dnnl::matmul::primitive_desc pd(desc, attr, CpuEngine());
      out->scratchpad_md = pd.scratchpad_desc();
      out->scratchpad_bytes = out->scratchpad_md.get_size();
      out->prim = dnnl::matmul(pd);
    } catch (const dnnl::error& e) {
      if (e.status != dnnl_unimplemented) {
        MEMORIA_LOG(kError, "oneDNN matmul creation failed: {}", e.what());
      }
      return nullptr;
    }
    return out;
  }

  std::mutex mu_;
  std::list<GemmKey> lru_;
  std::unordered_map<GemmKey,
                     std::pair<std::shared_ptr<const GemmPrimitive>, std::list<GemmKey>::iterator>,
                     GemmKeyHash>
      map_;
};

PrimitiveCache& Cache() {
  static PrimitiveCache* cache = new PrimitiveCache();
  return *cache;
}

// Per-thread execution state: a stream (streams are not thread-safe), the user scratchpad and
// the bf16 copy of A.
struct ThreadGemmState {
  std::unique_ptr<dnnl::stream> stream;
  std::vector<uint8_t> scratchpad;
  std::vector<uint16_t> a_bf16;
};
ThreadGemmState& ThreadState() {
  thread_local ThreadGemmState state;
  if (!state.stream) state.stream = std::make_unique<dnnl::stream>(CpuEngine());
  return state;
}

void RunPrimitive(const GemmPrimitive& g, const GemmKey& key, const float* A, const void* B,
                  float* C) {
  ThreadGemmState& st = ThreadState();
  const void* a_ptr = A;
  if (g.src_bf16) {
    st.a_bf16.resize(static_cast<size_t>(key.m * key.k));
    for (int64_t i = 0; i < key.m; ++i) {
      ConvertF32ToBf16(A + i * key.lda, st.a_bf16.data() + i * key.k, key.k);
    }
    a_ptr = st.a_bf16.data();
  }
  if (st.scratchpad.size() < g.scratchpad_bytes) st.scratchpad.resize(g.scratchpad_bytes);
  dnnl::engine& eng = CpuEngine();
  dnnl::memory a_mem(g.a_md, eng, const_cast<void*>(a_ptr));
  dnnl::memory b_mem(g.b_md, eng, const_cast<void*>(B));
  dnnl::memory c_mem(g.c_md, eng, C);
  std::unordered_map<int, dnnl::memory> args = {
      {DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}};
  if (g.scratchpad_bytes > 0) {
    args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(g.scratchpad_md, eng, st.scratchpad.data()));
  }
  g.prim.execute(*st.stream, args);
  st.stream->wait();
}

// ---------------------------------------------------------------------------------------------
// Hand-written kernels.

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Loads 8 bf16 values as f32.
inline __m256 LoadBf16(const uint16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 Load8(const uint16_t* p) { return LoadBf16(p); }
inline float Load1(const float* p) { return *p; }
inline float Load1(const uint16_t* p) { return Bf16ToF32(*p); }

// y[n] = a . B[n, :] (+ y[n]) for n in [n0, n1); B is [N, K] with row stride ldb. Four weight
// rows are streamed at once so that each load of `a` feeds four FMAs; the loop is bound by
// memory bandwidth, which is the point of decode (M = 1).
template <typename T>
void GemvRows(int64_t n0, int64_t n1, int64_t K, const float* a, const T* B, int64_t ldb, float* y,
              bool accumulate) {
  int64_t n = n0;
  const int64_t k8 = K & ~int64_t{7};
  for (; n + 4 <= n1; n += 4) {
    const T* b0 = B + n * ldb;
    const T* b1 = b0 + ldb;
    const T* b2 = b1 + ldb;
    const T* b3 = b2 + ldb;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(),
           s3 = _mm256_setzero_ps();
    for (int64_t k = 0; k < k8; k += 8) {
      const __m256 av = _mm256_loadu_ps(a + k);
      s0 = _mm256_fmadd_ps(av, Load8(b0 + k), s0);
      s1 = _mm256_fmadd_ps(av, Load8(b1 + k), s1);
      s2 = _mm256_fmadd_ps(av, Load8(b2 + k), s2);
      s3 = _mm256_fmadd_ps(av, Load8(b3 + k), s3);
    }
    float r0 = HorizontalSum(s0), r1 = HorizontalSum(s1), r2 = HorizontalSum(s2),
          r3 = HorizontalSum(s3);
    for (int64_t k = k8; k < K; ++k) {
      r0 += a[k] * Load1(b0 + k);
      r1 += a[k] * Load1(b1 + k);
      r2 += a[k] * Load1(b2 + k);
      r3 += a[k] * Load1(b3 + k);
    }
    if (accumulate) {
      y[n] += r0;
      y[n + 1] += r1;
      y[n + 2] += r2;
      y[n + 3] += r3;
    } else {
      y[n] = r0;
      y[n + 1] = r1;
      y[n + 2] = r2;
      y[n + 3] = r3;
    }
  }
  for (; n < n1; ++n) {
    const T* b0 = B + n * ldb;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= k8; k += 16) {
      s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), Load8(b0 + k), s0);
      s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), Load8(b0 + k + 8), s1);
    }
    for (; k < k8; k += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), Load8(b0 + k), s0);
    float r = HorizontalSum(_mm256_add_ps(s0, s1));
    for (; k < K; ++k) r += a[k] * Load1(b0 + k);
    y[n] = accumulate ? y[n] + r : r;
  }
}

// Splits the N outputs of a GEMV over the pool. Small problems stay on the calling thread: an
// OpenMP fork/join costs a few microseconds, more than a 64K-element dot product.
template <typename T>
void Gemv(const ThreadPool& pool, int64_t N, int64_t K, const float* a, const T* B, int64_t ldb,
          float* y, bool accumulate) {
  constexpr int64_t kMinWorkPerThread = 32 * 1024;
  const int64_t max_threads = std::max<int64_t>(1, N * K / kMinWorkPerThread);
  if (max_threads == 1 || pool.num_threads() == 1) {
    GemvRows(0, N, K, a, B, ldb, y, accumulate);
    return;
  }
  // Whole quads of rows per part keep the 4-row kernel busy; one part per thread.
  const int64_t quads = (N + 3) / 4;
  const int64_t parts = std::min<int64_t>({max_threads, pool.num_threads(), quads});
  pool.ParallelFor(parts, [&](int64_t p0, int64_t p1) {
    const int64_t q0 = quads * p0 / parts, q1 = quads * p1 / parts;
    GemvRows(q0 * 4, std::min(N, q1 * 4), K, a, B, ldb, y, accumulate);
  });
}

// Fallback for bf16 weights when oneDNN has no bf16 matmul on this CPU: blocks of B rows are
// widened to f32 in a per-thread buffer and multiplied with every row of A. Correct, not fast:
// on such CPUs the loader converts weights to f32 (WantBf16Weights() is false).
void MatmulTransBBf16Fallback(const ThreadPool& pool, int64_t M, int64_t N, int64_t K,
                              const float* A, int64_t lda, const uint16_t* B, int64_t ldb, float* C,
                              int64_t ldc, bool accumulate) {
  constexpr int64_t kRows = 16;
  const int64_t blocks = (N + kRows - 1) / kRows;
  pool.ParallelForDynamic(blocks, 1, [&](int64_t b0, int64_t b1) {
    thread_local std::vector<float> wide;
    wide.resize(static_cast<size_t>(kRows * K));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n0 = b * kRows, n1 = std::min(N, n0 + kRows);
      for (int64_t n = n0; n < n1; ++n) {
        ConvertToF32(DType::kBF16, B + n * ldb, wide.data() + (n - n0) * K, K);
      }
      for (int64_t m = 0; m < M; ++m) {
        GemvRows(0, n1 - n0, K, A + m * lda, wide.data(), K, C + m * ldc + n0, accumulate);
      }
    }
  });
}

bool UseGemv(int64_t M, DType b_dtype) {
  // Measured on AVX2 (bench/results/gemm.md): for a single row the hand-written GEMV streams
  // the weights at close to memory bandwidth and beats oneDNN's M=1 matmul.
  return M == 1 && (b_dtype == DType::kF32 || !WantBf16Weights());
}

}  // namespace

bool WantBf16Weights() {
  static const bool want = [] {
    if (!GetCpuFeatures().avx512_bf16) return false;
    // Keep bf16 only if oneDNN can actually run it.
    GemmKey key{16, 16, 32, 32, 32, 16, true, DType::kBF16, false};
    return Cache().Get(key) != nullptr;
  }();
  return want;
}

void MatmulTransB(const ThreadPool& pool, int64_t M, int64_t N, int64_t K, const float* A,
                  int64_t lda, const void* B, DType b_dtype, int64_t ldb, float* C, int64_t ldc,
                  bool accumulate) {
  if (UseGemv(M, b_dtype)) {
    MEMORIA_CHECK(N >= 1 && K >= 1 && ldb >= K, "MatmulTransB: bad shape or stride");
    pool.BindOpenMp();
    if (b_dtype == DType::kF32) {
      Gemv(pool, N, K, A, static_cast<const float*>(B), ldb, C, accumulate);
    } else {
      Gemv(pool, N, K, A, static_cast<const uint16_t*>(B), ldb, C, accumulate);
    }
    return;
  }
  MatmulTransBOneDnn(pool, M, N, K, A, lda, B, b_dtype, ldb, C, ldc, accumulate);
}

void MatmulTransBOneDnn(const ThreadPool& pool, int64_t M, int64_t N, int64_t K, const float* A,
                        int64_t lda, const void* B, DType b_dtype, int64_t ldb, float* C,
                        int64_t ldc, bool accumulate) {
  MEMORIA_CHECK(M >= 1 && N >= 1 && K >= 1 && lda >= K && ldb >= K && ldc >= N,
                "MatmulTransB: bad shape or stride");
  MEMORIA_CHECK(b_dtype == DType::kF32 || b_dtype == DType::kBF16,
                "MatmulTransB: B must be f32 or bf16");
  pool.BindOpenMp();
  const GemmKey key{M, N, K, lda, ldb, ldc, true, b_dtype, accumulate};
  std::shared_ptr<const GemmPrimitive> g = Cache().Get(key);
  if (g != nullptr) {
    RunPrimitive(*g, key, A, B, C);
    return;
  }
  MEMORIA_CHECK(b_dtype == DType::kBF16, "oneDNN has no f32 matmul for this shape");
  MatmulTransBBf16Fallback(pool, M, N, K, A, lda, static_cast<const uint16_t*>(B), ldb, C, ldc,
                           accumulate);
}

void Matmul(const ThreadPool& pool, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
            const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  MEMORIA_CHECK(M >= 1 && N >= 1 && K >= 1 && lda >= K && ldb >= N && ldc >= N,
                "Matmul: bad shape or stride");
  pool.BindOpenMp();
  const GemmKey key{M, N, K, lda, ldb, ldc, false, DType::kF32, accumulate};
  std::shared_ptr<const GemmPrimitive> g = Cache().Get(key);
  MEMORIA_CHECK(g != nullptr, "oneDNN has no f32 matmul for this shape");
  RunPrimitive(*g, key, A, B, C);
}

void MatmulTransBReference(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                           const void* B, DType b_dtype, int64_t ldb, float* C, int64_t ldc,
                           bool accumulate) {
  std::vector<float> row(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* b = static_cast<const uint8_t*>(B) + n * ldb * DTypeSize(b_dtype);
    ConvertToF32(b_dtype, b, row.data(), K);
    for (int64_t m = 0; m < M; ++m) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += static_cast<double>(A[m * lda + k]) * row[k];
      float& c = C[m * ldc + n];
      c = static_cast<float>(accumulate ? c + s : s);
    }
  }
}

void MatmulReference(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                     int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        s += static_cast<double>(A[m * lda + k]) * B[k * ldb + n];
      }
      float& c = C[m * ldc + n];
      c = static_cast<float>(accumulate ? c + s : s);
    }
  }
}

}  // namespace memoria
