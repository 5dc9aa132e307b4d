#include "kernels/pq_kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/testing.h"

namespace memoria {
namespace {

std::vector<float> RandomVectors(int64_t n, int64_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n * d);
  for (auto& v : x) v = g(rng);
  return x;
}

// Squared distance of subvector m of x to centroid j.
double SubDist(const PqShape& s, const float* c, const float* x, int64_t m, int64_t j) {
  double t = 0.0;
  for (int64_t k = 0; k < s.dsub(); ++k) {
    const double diff = double(x[m * s.dsub() + k]) - c[(m * s.ksub + j) * s.dsub() + k];
    t += diff * diff;
  }
  return t;
}

struct PqCase {
  int64_t d, M, ksub, n;
  int threads;
};

class PqKernelTest : public ::testing::TestWithParam<PqCase> {};

// The GEMM assignment picks a nearest centroid: its true distance equals the reference minimum
// up to f32 rounding of ||x||^2 - 2 x.c + ||c||^2 (ties may pick a different, equally near id).
TEST_P(PqKernelTest, AssignMatchesReference) {
  const PqCase p = GetParam();
  const PqShape s{p.d, p.M, p.ksub};
  const auto c = RandomVectors(p.M * p.ksub, s.dsub(), 1);
  const int64_t ldx = p.d + 3;  // a row stride wider than d
  const auto x = RandomVectors(p.n, ldx, 2);
  std::vector<float> dist(p.n * p.M), ref_dist(p.n * p.M);
  std::vector<int32_t> assign(p.n * p.M), ref(p.n * p.M);
  PqTables tables;
  PqPrepareTables(s, c.data(), &tables);
  ThreadPool pool(p.threads);
  PqAssign(pool, s, c.data(), tables, p.n, x.data(), ldx, assign.data(), dist.data());
  PqAssignReference(s, c.data(), p.n, x.data(), ldx, ref.data(), ref_dist.data());
  int64_t same = 0;
  for (int64_t i = 0; i < p.n; ++i) {
    for (int64_t m = 0; m < p.M; ++m) {
      const int64_t k = i * p.M + m;
      same += assign[k] == ref[k];
      const double chosen = SubDist(s, c.data(), x.data() + i * ldx, m, assign[k]);
      EXPECT_NEAR(chosen, ref_dist[k], 1e-4 * (1.0 + ref_dist[k])) << "row " << i << " m " << m;
      EXPECT_NEAR(dist[k], ref_dist[k], 1e-4 * (1.0 + ref_dist[k]));
    }
  }
  EXPECT_GE(same, p.n * p.M * 99 / 100);
}

TEST_P(PqKernelTest, EncodeDecodeMatchReference) {
  const PqCase p = GetParam();
  const PqShape s{p.d, p.M, p.ksub};
  const auto c = RandomVectors(p.M * p.ksub, s.dsub(), 3);
  const auto x = RandomVectors(p.n, p.d, 4);
  PqTables tables;
  PqPrepareTables(s, c.data(), &tables);
  ThreadPool pool(p.threads);
  const int64_t bytes = p.n * p.M * PqCodeBytes(p.ksub);
  std::vector<uint8_t> codes(bytes), ref_codes(bytes);
  PqEncode(pool, s, c.data(), tables, p.n, x.data(), p.d, codes.data());
  PqEncodeReference(s, c.data(), p.n, x.data(), p.d, ref_codes.data());
  EXPECT_TRUE(PqCodesValid(s, p.n, codes.data()));
  int64_t same = 0;
  for (int64_t i = 0; i < bytes; ++i) same += codes[i] == ref_codes[i];
  EXPECT_GE(same, bytes * 99 / 100);

  // Decode is exact (a copy): compare with the reference bit for bit, full and truncated width.
  for (int64_t d_out : {p.d, p.d - 5}) {
    const int64_t ldo = d_out + 1;
    std::vector<float> out(p.n * ldo, -7.0f), ref(p.n * ldo, -7.0f);
    PqDecode(pool, s, c.data(), p.n, codes.data(), d_out, out.data(), ldo);
    PqDecodeReference(s, c.data(), p.n, codes.data(), d_out, ref.data(), ldo);
    EXPECT_EQ(out, ref) << "d_out " << d_out;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, PqKernelTest,
    ::testing::Values(PqCase{64, 8, 256, 300, 2},     // dsub 8, fused kernel, uint8 codes
                      PqCase{64, 4, 256, 77, 1},      // dsub 16, fused, row tail of 1
                      PqCase{48, 12, 16, 50, 2},      // dsub 4, ksub < 256: ids must stay < ksub
                      PqCase{30, 5, 100, 40, 2},      // dsub 6, ksub % 8 != 0: oneDNN GEMM path
                      PqCase{96, 3, 256, 70, 2},      // dsub 32: oneDNN GEMM path
                      PqCase{32, 4, 65536, 20, 2}));  // uint16 codes, C = 65536

TEST(PqCodesValidTest, RejectsOutOfRangeIds) {
  const PqShape s{8, 2, 16};
  std::vector<uint8_t> codes = {1, 15, 3, 16};
  EXPECT_FALSE(PqCodesValid(s, 2, codes.data()));
  codes[3] = 4;
  EXPECT_TRUE(PqCodesValid(s, 2, codes.data()));
}

// Data with a known cluster structure: 64 well-separated centres per subspace plus small noise.
std::vector<float> ClusteredVectors(int64_t n, int64_t d, int64_t clusters, float noise,
                                    uint64_t seed) {
  const auto centres = RandomVectors(clusters, d, seed);
  std::mt19937_64 rng(seed + 1);
  std::normal_distribution<float> g(0.0f, noise);
  std::uniform_int_distribution<int64_t> pick(0, clusters - 1);
  std::vector<float> x(n * d);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = pick(rng);
    for (int64_t k = 0; k < d; ++k) x[i * d + k] = 4.0f * centres[c * d + k] + g(rng);
  }
  return x;
}

TEST(PqTrainTest, LloydDistortionDecreasesAndReachesNoiseFloor) {
  const PqShape s{32, 4, 64};
  const int64_t n = 64 * 40;
  const float noise = 0.1f;
  // 16 clusters for 64 codes: k-means++ covers every cluster, so the error drops below the noise.
  const auto x = ClusteredVectors(n, s.d, 16, noise, 7);
  ThreadPool pool(2);
  std::vector<float> c(s.M * s.ksub * s.dsub());
  PqTrainOptions opt;
  opt.iterations = 15;
  int calls = 0;
  opt.on_iteration = [&](int, double, int64_t) { ++calls; };
  PqTrainReport rep;
  PqTrain(pool, s, n, x.data(), s.d, opt, c.data(), &rep);
  ASSERT_EQ(rep.distortion.size(), 16u);
  EXPECT_EQ(calls, 16);
  EXPECT_EQ(rep.training_vectors, n);
  // Lloyd never increases the distortion (resets aside, which only move unused codes).
  EXPECT_LT(rep.distortion.back(), rep.distortion.front());
  // The noise floor with one code per cluster is d * noise^2 = 0.32.
  EXPECT_LT(rep.distortion.back(), s.d * noise * noise);

  // The report's distortion is the encode -> decode error.
  std::vector<float> dec(n * s.d);
  std::vector<uint8_t> codes(n * s.M);
  PqTables tables;
  PqPrepareTables(s, c.data(), &tables);
  PqEncode(pool, s, c.data(), tables, n, x.data(), s.d, codes.data());
  PqDecode(pool, s, c.data(), n, codes.data(), s.d, dec.data(), s.d);
  double err = 0.0;
  for (int64_t i = 0; i < n * s.d; ++i) err += (dec[i] - x[i]) * (dec[i] - x[i]);
  EXPECT_NEAR(err / n, rep.distortion.back(), 1e-3 * rep.distortion.back());
}

TEST(PqTrainTest, EmaMiniBatchesConverge) {
  const PqShape s{32, 4, 64};
  const int64_t n = 64 * 40;
  const auto x = ClusteredVectors(n, s.d, 16, 0.1f, 9);
  ThreadPool pool(2);
  std::vector<float> c(s.M * s.ksub * s.dsub());
  PqTrainOptions opt;
  opt.update = PqUpdate::kEma;
  opt.ema_decay = 0.8f;
  opt.ema_batch = 1024;
  opt.iterations = 40;
  PqTrainReport rep;
  PqTrain(pool, s, n, x.data(), s.d, opt, c.data(), &rep);
  // k-means++ already lands near the optimum here; EMA steps must keep it there (below noise).
  EXPECT_LE(rep.distortion.back(), 1.05 * rep.distortion.front());
  EXPECT_LT(rep.distortion.back(), s.d * 0.01);
}

// Codes left empty (more codes than distinct points in a region) are reset and get used.
TEST(PqTrainTest, ResetsRevivesDeadCodes) {
  const PqShape s{16, 2, 32};
  const int64_t n = 32 * 30;
  const auto x = RandomVectors(n, s.d, 11);
  ThreadPool pool(1);
  std::vector<float> c(s.M * s.ksub * s.dsub());
  PqTrainOptions opt;
  opt.iterations = 10;
  opt.init_rounds = 1;  // uniform initialisation: some codes start in crowded spots
  opt.reset_fraction = 0.5;
  PqTrainReport with, without;
  PqTrain(pool, s, n, x.data(), s.d, opt, c.data(), &with);
  int64_t total = 0;
  for (auto r : with.resets) total += r;
  EXPECT_GT(total, 0);
  opt.reset_fraction = 0.0;
  PqTrain(pool, s, n, x.data(), s.d, opt, c.data(), &without);
  for (auto r : without.resets) EXPECT_EQ(r, 0);
}

TEST(PqTrainTest, SamplesAtMostMaxPointsPerCentroid) {
  const PqShape s{8, 2, 16};
  const int64_t n = 1000;
  const auto x = RandomVectors(n, s.d, 13);
  ThreadPool pool(2);
  std::vector<float> c(s.M * s.ksub * s.dsub());
  PqTrainOptions opt;
  opt.iterations = 2;
  opt.max_points_per_centroid = 10;
  PqTrainReport rep;
  PqTrain(pool, s, n, x.data(), s.d, opt, c.data(), &rep);
  EXPECT_EQ(rep.training_vectors, 160);
}

}  // namespace
}  // namespace memoria
