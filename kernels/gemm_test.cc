#include "kernels/gemm.h"

#include <gtest/gtest.h>

#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "base/testing.h"
#include "kernels/cpu_features.h"

namespace memoria {
namespace {

using ::memoria::testing::Nmse;

// fp32 tolerance (llama.cpp test-backend-ops): NMSE <= 1e-7.
constexpr double kF32Nmse = 1e-7;
// bf16 weights: the weights themselves are exact in both runs; oneDNN also rounds A to bf16
// (relative error <= 2^-9 per element), which costs NMSE ~1e-6 on random data.
constexpr double kBf16Nmse = 1e-4;

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

struct Shape {
  int64_t M, N, K;
  int64_t pad_a, pad_b, pad_c;  // row stride = width + pad
  bool accumulate;
};

std::string Name(const Shape& s) {
  std::ostringstream os;
  os << "M" << s.M << "N" << s.N << "K" << s.K
     << (s.pad_a + s.pad_b + s.pad_c > 0 ? "_strided" : "") << (s.accumulate ? "_acc" : "");
  return os.str();
}

class GemmTest : public ::testing::TestWithParam<std::tuple<Shape, int>> {};

TEST_P(GemmTest, TransBF32MatchesReference) {
  const auto [s, threads] = GetParam();
  ThreadPool pool(threads);
  const int64_t lda = s.K + s.pad_a, ldb = s.K + s.pad_b, ldc = s.N + s.pad_c;
  const std::vector<float> A = Random(s.M * lda, 1), B = Random(s.N * ldb, 2);
  std::vector<float> C = Random(s.M * ldc, 3);
  std::vector<float> ref = C;
  MatmulTransB(pool, s.M, s.N, s.K, A.data(), lda, B.data(), DType::kF32, ldb, C.data(), ldc,
               s.accumulate);
  MatmulTransBReference(s.M, s.N, s.K, A.data(), lda, B.data(), DType::kF32, ldb, ref.data(), ldc,
                        s.accumulate);
  // Covers the padding too: it must be left untouched.
  EXPECT_LE(Nmse(C.data(), ref.data(), static_cast<long>(C.size())), kF32Nmse) << Name(s);
  for (int64_t m = 0; m < s.M; ++m) {
    for (int64_t n = s.N; n < ldc; ++n) ASSERT_EQ(C[m * ldc + n], ref[m * ldc + n]);
  }
}

TEST_P(GemmTest, PlainF32MatchesReference) {
  const auto [s, threads] = GetParam();
  ThreadPool pool(threads);
  const int64_t lda = s.K + s.pad_a, ldb = s.N + s.pad_b, ldc = s.N + s.pad_c;
  const std::vector<float> A = Random(s.M * lda, 4), B = Random(s.K * ldb, 5);
  std::vector<float> C = Random(s.M * ldc, 6);
  std::vector<float> ref = C;
  Matmul(pool, s.M, s.N, s.K, A.data(), lda, B.data(), ldb, C.data(), ldc, s.accumulate);
  MatmulReference(s.M, s.N, s.K, A.data(), lda, B.data(), ldb, ref.data(), ldc, s.accumulate);
  EXPECT_LE(Nmse(C.data(), ref.data(), static_cast<long>(C.size())), kF32Nmse) << Name(s);
}

TEST_P(GemmTest, TransBBf16MatchesReference) {
  const auto [s, threads] = GetParam();
  ThreadPool pool(threads);
  const int64_t lda = s.K + s.pad_a, ldb = s.K + s.pad_b, ldc = s.N + s.pad_c;
  const std::vector<float> A = Random(s.M * lda, 7), Bf = Random(s.N * ldb, 8);
  std::vector<uint16_t> B(Bf.size());
  ConvertF32ToBf16(Bf.data(), B.data(), static_cast<int64_t>(B.size()));
  std::vector<float> C = Random(s.M * ldc, 9);
  std::vector<float> ref = C;
  MatmulTransB(pool, s.M, s.N, s.K, A.data(), lda, B.data(), DType::kBF16, ldb, C.data(), ldc,
               s.accumulate);
  MatmulTransBReference(s.M, s.N, s.K, A.data(), lda, B.data(), DType::kBF16, ldb, ref.data(), ldc,
                        s.accumulate);
  EXPECT_LE(Nmse(C.data(), ref.data(), static_cast<long>(C.size())), kBf16Nmse) << Name(s);
}

const Shape kShapes[] = {
    {1, 1, 1, 0, 0, 0, false},     {1, 1, 13, 0, 0, 0, true},       {1, 7, 5, 0, 0, 0, false},
    {1, 257, 100, 3, 5, 7, false}, {1, 1000, 1003, 0, 0, 0, true},  {1, 4096, 512, 0, 16, 0, false},
    {2, 3, 9, 0, 0, 0, false},     {5, 1, 17, 1, 2, 3, true},       {17, 33, 65, 0, 0, 0, false},
    {64, 96, 128, 8, 8, 8, true},  {128, 257, 300, 0, 3, 1, false}, {31, 768, 768, 0, 0, 0, false},
};

INSTANTIATE_TEST_SUITE_P(Shapes, GemmTest,
                         ::testing::Combine(::testing::ValuesIn(kShapes), ::testing::Values(1, 2)));

TEST(GemmBf16, WantBf16WeightsFollowsCpu) {
  // bf16 weights are only worth keeping where the CPU has native bf16 dot products (the bf16
  // path itself is checked by TransBBf16MatchesReference on every CPU).
  if (!GetCpuFeatures().avx512_bf16) {
    EXPECT_FALSE(WantBf16Weights());
  }
}

TEST(GemmCache, ConcurrentCallsFromSeveralPools) {
  // Each caller has its own pool; cached primitives are shared and must be safe to run at once.
  constexpr int64_t M = 8, N = 64, K = 96;
  const std::vector<float> A = Random(M * K, 10), B = Random(N * K, 11);
  std::vector<float> ref(M * N);
  MatmulTransBReference(M, N, K, A.data(), K, B.data(), DType::kF32, K, ref.data(), N);
  std::vector<std::vector<float>> out(4, std::vector<float>(M * N));
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&, w] {
      ThreadPool pool(1);
      for (int it = 0; it < 50; ++it) {
        MatmulTransB(pool, M, N, K, A.data(), K, B.data(), DType::kF32, K, out[w].data(), N);
      }
    });
  }
  for (auto& t : workers) t.join();
  for (int w = 0; w < 4; ++w) EXPECT_LE(Nmse(out[w].data(), ref.data(), M * N), kF32Nmse);
}

TEST(GemmCache, ManyShapesStayCorrect) {
  // More distinct shapes than the cache holds: eviction must not break later calls.
  ThreadPool pool(2);
  constexpr int64_t N = 8, K = 8;
  const std::vector<float> B = Random(N * K, 12);
  for (int64_t M = 2; M < 600; M += 1) {
    const std::vector<float> A = Random(M * K, static_cast<uint32_t>(M));
    std::vector<float> C(M * N), ref(M * N);
    MatmulTransB(pool, M, N, K, A.data(), K, B.data(), DType::kF32, K, C.data(), N);
    MatmulTransBReference(M, N, K, A.data(), K, B.data(), DType::kF32, K, ref.data(), N);
    ASSERT_LE(Nmse(C.data(), ref.data(), M * N), kF32Nmse) << "M=" << M;
  }
}

}  // namespace
}  // namespace memoria
