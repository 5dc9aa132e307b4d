// GEMM and attention throughput on this machine, against its own f32 FMA peak and memory
// bandwidth (and, with --peer=FILE, against PyTorch's torch.matmul measured in the same run).
//
//   gemm_bench [--threads=N] [--runs=R] [--peer=FILE] [--quick]
//
// Prints markdown to stdout (bench/run_gemm.sh writes it to bench/results/gemm.md).
// Every time is the median of R >= 5 timed runs after one warm-up run (the best run is shown
// beside it); the machine peaks (FMA, read bandwidth) are the best of R runs.
//
// --peer FILE: lines "M N K gflops" (bench/gemm_torch_peer.py); adds a torch column and ratio.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/attention.h"
#include "kernels/gemm.h"
#include "kernels/thread_pool.h"

namespace memoria {
namespace {

double Seconds(const std::function<void()>& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Timing {
  double median = 0;  // seconds
  double best = 0;
};

// Wall time of `runs` calls after one warm-up call. The median is the reported figure; the best
// run shows what the code does when no other process takes the cores (shared machines).
Timing Time(int runs, const std::function<void()>& fn) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) t.push_back(Seconds(fn));
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t[0]};
}

// Two alternatives timed in alternation, so that a burst of load from other processes hits both
// alike.
std::pair<Timing, Timing> TimePair(int runs, const std::function<void()>& a,
                                   const std::function<void()>& b) {
  a();
  b();
  std::vector<double> ta, tb;
  for (int i = 0; i < runs; ++i) {
    ta.push_back(Seconds(a));
    tb.push_back(Seconds(b));
  }
  std::sort(ta.begin(), ta.end());
  std::sort(tb.begin(), tb.end());
  return {{ta[ta.size() / 2], ta[0]}, {tb[tb.size() / 2], tb[0]}};
}

// f32 FMA peak: 12 independent accumulators (more than FMA latency x FMA ports) so the loop is
// bound by FMA throughput alone. Returns GFLOP/s of one thread.
double FmaLoopGflops(int64_t iters) {
  // Twelve named accumulators (an array would be kept in memory around the asm barrier).
  __m256 a0 = _mm256_set1_ps(0.0f), a1 = _mm256_set1_ps(0.1f), a2 = _mm256_set1_ps(0.2f),
         a3 = _mm256_set1_ps(0.3f), a4 = _mm256_set1_ps(0.4f), a5 = _mm256_set1_ps(0.5f),
         a6 = _mm256_set1_ps(0.6f), a7 = _mm256_set1_ps(0.7f), a8 = _mm256_set1_ps(0.8f),
         a9 = _mm256_set1_ps(0.9f), a10 = _mm256_set1_ps(1.0f), a11 = _mm256_set1_ps(1.1f);
  const __m256 m = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t it = 0; it < iters; ++it) {
    a0 = _mm256_fmadd_ps(a0, m, b);
    a1 = _mm256_fmadd_ps(a1, m, b);
    a2 = _mm256_fmadd_ps(a2, m, b);
    a3 = _mm256_fmadd_ps(a3, m, b);
    a4 = _mm256_fmadd_ps(a4, m, b);
    a5 = _mm256_fmadd_ps(a5, m, b);
    a6 = _mm256_fmadd_ps(a6, m, b);
    a7 = _mm256_fmadd_ps(a7, m, b);
    a8 = _mm256_fmadd_ps(a8, m, b);
    a9 = _mm256_fmadd_ps(a9, m, b);
    a10 = _mm256_fmadd_ps(a10, m, b);
    a11 = _mm256_fmadd_ps(a11, m, b);
    // Keeps the compiler from collapsing the loop.
    __asm__ volatile(""
                     : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6),
                       "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const __m256 sum =
      _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                  _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7))),
                    _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  if (_mm256_cvtss_f32(sum) == 12345.0f) std::printf(" ");
  return static_cast<double>(iters) * 12 * 8 * 2 / s * 1e-9;
}

double FmaPeak(int threads, int runs) {
  constexpr int64_t kIters = 100'000'000;
  std::vector<double> r;
  for (int i = 0; i < runs; ++i) {
    double total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    total += FmaLoopGflops(kIters);
    r.push_back(total);
  }
  // The best run: a peak is a capability, and other processes only ever lower it.
  return *std::max_element(r.begin(), r.end());
}

// Read bandwidth: sums a 512 MiB array (far beyond any cache) with `threads` threads.
double ReadBandwidthGBs(int threads, int runs) {
  const int64_t n = int64_t{128} << 20;
  std::vector<float> x(n, 1.0f);
  float sink = 0;
  const double s =
      Time(runs, [&] {
        float total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total) schedule(static)
        for (int64_t c = 0; c < n / 4096; ++c) {
          __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
                 a3 = _mm256_setzero_ps();
          const float* p = x.data() + c * 4096;
          for (int i = 0; i < 4096; i += 32) {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
            a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
            a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
          }
          alignas(32) float buf[8];
          _mm256_store_ps(buf, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
          for (float f : buf) total += f;
        }
        sink += total;
      }).best;
  if (sink == 1.0f) std::printf(" ");
  return static_cast<double>(n) * 4 / s * 1e-9;
}

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::map<std::tuple<int64_t, int64_t, int64_t>, double> ReadPeer(const std::string& path) {
  std::map<std::tuple<int64_t, int64_t, int64_t>, double> out;
  std::ifstream f(path);
  int64_t m, n, k;
  double g;
  while (f >> m >> n >> k >> g) out[{m, n, k}] = g;
  return out;
}

int Main(int argc, char** argv) {
  int threads = 2, runs = 5;
  bool quick = false;
  std::string peer_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--threads=", 0) == 0)
      threads = std::stoi(a.substr(10));
    else if (a.rfind("--runs=", 0) == 0)
      runs = std::max(5, std::stoi(a.substr(7)));
    else if (a.rfind("--peer=", 0) == 0)
      peer_path = a.substr(7);
    else if (a == "--quick")
      quick = true;
    else {
      std::fprintf(stderr,
                   "usage: gemm_bench [--threads=N] [--runs=R>=5] [--peer=FILE] [--quick]\n");
      return 2;
    }
  }
  ThreadPool pool(threads);
  const auto peer = peer_path.empty() ? decltype(ReadPeer("")){} : ReadPeer(peer_path);

  const double peak1 = FmaPeak(1, runs);
  const double peak_all = FmaPeak(threads, runs);
  const double bw1 = ReadBandwidthGBs(1, runs);
  const double bw_all = ReadBandwidthGBs(threads, runs);
  std::printf("## Machine peak (measured)\n\n");
  std::printf("| measure | 1 thread | %d threads |\n|---|---|---|\n", threads);
  std::printf("| f32 FMA peak (GFLOP/s) | %.1f | %.1f |\n", peak1, peak_all);
  std::printf("| memory read bandwidth (GB/s) | %.1f | %.1f |\n\n", bw1, bw_all);

  // ---- GEMM: C[M,N] = A[M,K] W[N,K]^T (a Linear layer), f32.
  std::printf("## GEMM, f32, C = A W^T with W in [N, K] (Linear layout), %d threads\n\n", threads);
  std::printf(
      "M = 1 streams a fresh copy of W each call (the working set is well beyond the "
      "caches, as in decode); its %% column is of memory bandwidth, the others of FMA peak.\n\n");
  std::printf(
      "| M | N | K | ms | GFLOP/s | best GFLOP/s | %% of peak | GB/s (M=1) | oneDNN "
      "M=1 GB/s | best GB/s (M=1) |%s\n",
      peer.empty() ? "" : " torch GFLOP/s | ours / torch |");
  std::printf("|---|---|---|---|---|---|---|---|---|---|%s\n", peer.empty() ? "" : "---|---|");
  const std::vector<int64_t> Ms =
      quick ? std::vector<int64_t>{1, 32} : std::vector<int64_t>{1, 32, 512, 2048};
  const std::vector<int64_t> NKs = {768, 2048, 3072};
  for (int64_t M : Ms) {
    for (int64_t N : NKs) {
      for (int64_t K : NKs) {
        const std::vector<float> A = Random(M * K, 1);
        std::vector<float> C(M * N);
        Timing t, t_dnnl;
        if (M == 1) {
          // Enough copies of W to exceed 512 MiB, cycled, so each call reads W from DRAM.
          const int64_t bytes = N * K * 4;
          const int copies =
              static_cast<int>(std::max<int64_t>(2, (int64_t{512} << 20) / bytes + 1));
          std::vector<std::vector<float>> W(copies);
          for (int c = 0; c < copies; ++c) W[c] = Random(N * K, 100 + c);
          int next = 0;
          std::tie(t, t_dnnl) = TimePair(
              runs * 4,
              [&] {
                MatmulTransB(pool, M, N, K, A.data(), K, W[next].data(), DType::kF32, K, C.data(),
                             N);
                next = (next + 1) % copies;
              },
              [&] {
                MatmulTransBOneDnn(pool, M, N, K, A.data(), K, W[next].data(), DType::kF32, K,
                                   C.data(), N);
                next = (next + 1) % copies;
              });
        } else {
          const std::vector<float> W = Random(N * K, 2);
          t = Time(runs, [&] {
            MatmulTransB(pool, M, N, K, A.data(), K, W.data(), DType::kF32, K, C.data(), N);
          });
        }
        const double s = t.median;
        const double gflops = 2.0 * M * N * K / s * 1e-9;
        const double best_gflops = 2.0 * M * N * K / t.best * 1e-9;
        std::printf("| %ld | %ld | %ld | %.3f | %.1f | %.1f | ", M, N, K, s * 1e3, gflops,
                    best_gflops);
        if (M == 1) {
          const double gbs = N * K * 4.0 / s * 1e-9;
          std::printf("%.0f%% | %.1f | %.1f | %.1f |", 100 * gbs / bw_all, gbs,
                      N * K * 4.0 / t_dnnl.median * 1e-9, N * K * 4.0 / t.best * 1e-9);
        } else {
          std::printf("%.0f%% | | | |", 100 * gflops / peak_all);
        }
        if (!peer.empty()) {
          auto it = peer.find({M, N, K});
          if (it != peer.end()) {
            std::printf(" %.1f | %.2f |", it->second, gflops / it->second);
          } else {
            std::printf(" | |");
          }
        }
        std::printf("\n");
        std::fflush(stdout);
      }
    }
  }

  // ---- Attention: exact, causal, head_dim 128.
  constexpr int kHeads = 8, kD = 128;
  std::printf("\n## Exact attention, f32, causal, %d heads x head_dim %d, %d threads\n\n", kHeads,
              kD, threads);
  std::printf(
      "Prefill: q_len = kv_len = n; FLOPs = 4 n (n+1)/2 d per head (QK^T and PV over the "
      "visible keys). Decode: one query against n cached keys (K and V read once).\n\n");
  std::printf(
      "| n | prefill ms | prefill GFLOP/s | best GFLOP/s | %% of peak | decode ms | decode K+V "
      "GB/s | best decode GB/s |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  const std::vector<int64_t> ns =
      quick ? std::vector<int64_t>{512, 2048} : std::vector<int64_t>{512, 2048, 8192};
  for (int64_t n : ns) {
    const int64_t w = kHeads * kD;
    const std::vector<float> q = Random(n * w, 1), k = Random(n * w, 2), v = Random(n * w, 3);
    std::vector<float> out(n * w);
    AttentionParams p;
    p.q_len = n;
    p.kv_len = n;
    p.n_heads = kHeads;
    p.n_kv_heads = kHeads;
    p.head_dim = kD;
    p.scale = 1.0f / std::sqrt(static_cast<float>(kD));
    p.causal = true;
    const Timing t = Time(
        runs, [&] { Attention(pool, p, q.data(), w, k.data(), w, v.data(), w, out.data(), w); });
    const double flops = 4.0 * n * (n + 1) / 2 * kD * kHeads;
    AttentionParams d = p;
    d.q_len = 1;
    d.q_offset = n - 1;
    const Timing td = Time(runs * 4, [&] {
      Attention(pool, d, q.data() + (n - 1) * w, w, k.data(), w, v.data(), w, out.data(), w);
    });
    const double kv_bytes = 2.0 * n * w * 4;
    std::printf("| %ld | %.2f | %.1f | %.1f | %.0f%% | %.3f | %.1f | %.1f |\n", n, t.median * 1e3,
                flops / t.median * 1e-9, flops / t.best * 1e-9,
                100 * flops / t.median * 1e-9 / peak_all, td.median * 1e3,
                kv_bytes / td.median * 1e-9, kv_bytes / td.best * 1e-9);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) { return memoria::Main(argc, argv); }
