// Small measurement helpers shared by the benchmark programs: machine peaks and medians.
#pragma once

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace memoria::bench {

inline double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

// Peak f32 FMA throughput in GFLOP/s on `threads` threads: 10 independent accumulator chains of
// 8-wide FMAs per thread (enough to cover FMA latency x throughput on current x86 cores).
inline double MeasureFmaPeakGflops(int threads) {
  const int64_t iters = 20'000'000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    double t0 = NowSeconds();
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      __m256 a[10];
      for (int i = 0; i < 10; ++i) a[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
      const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
      for (int64_t it = 0; it < iters; ++it) {
        for (int i = 0; i < 10; ++i) a[i] = _mm256_fmadd_ps(a[i], b, c);
      }
      __m256 s = a[0];
      for (int i = 1; i < 10; ++i) s = _mm256_add_ps(s, a[i]);
      float out[8];
      _mm256_storeu_ps(out, s);
      sink += out[0];
    }
    double dt = NowSeconds() - t0;
    volatile float keep = sink;
    (void)keep;
    best = std::max(best, double(threads) * iters * 10 * 8 * 2 / dt / 1e9);
  }
  return best;
}

// Sustained read bandwidth in GB/s over a buffer far larger than the caches (sum of floats).
inline double MeasureReadBandwidthGBs(int threads, int64_t bytes = int64_t(1) << 30) {
  const int64_t n = bytes / 4;
  std::vector<float> buf(n, 1.0f);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    double t0 = NowSeconds();
    double total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total) schedule(static)
    for (int64_t blk = 0; blk < n / 64; ++blk) {
      __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
      const float* p = buf.data() + blk * 64;
      s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p));
      s1 = _mm256_add_ps(s1, _mm256_loadu_ps(p + 8));
      s2 = _mm256_add_ps(s2, _mm256_loadu_ps(p + 16));
      s3 = _mm256_add_ps(s3, _mm256_loadu_ps(p + 24));
      s4 = _mm256_add_ps(s4, _mm256_loadu_ps(p + 32));
      s5 = _mm256_add_ps(s5, _mm256_loadu_ps(p + 40));
      s6 = _mm256_add_ps(s6, _mm256_loadu_ps(p + 48));
      s7 = _mm256_add_ps(s7, _mm256_loadu_ps(p + 56));
      __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)),
                               _mm256_add_ps(_mm256_add_ps(s4, s5), _mm256_add_ps(s6, s7)));
      float out[8];
      _mm256_storeu_ps(out, s);
      total += out[0];
    }
    double dt = NowSeconds() - t0;
    volatile double keep = total;
    (void)keep;
    best = std::max(best, double(bytes) / dt / 1e9);
  }
  return best;
}

// "AMD EPYC 7B13" from /proc/cpuinfo, for results files.
inline std::string CpuModelName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

}  // namespace memoria::bench
