#include "kernels/btr_kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/testing.h"

namespace memoria {
namespace {

std::vector<float> Gaussian(int64_t n, uint64_t seed, float mean = 0.0f, float sd = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(mean, sd);
  std::vector<float> x(n);
  for (auto& v : x) v = g(rng);
  return x;
}

class BtrKernelTest : public ::testing::TestWithParam<std::pair<int64_t, int>> {};

TEST_P(BtrKernelTest, EncodeDecodeMatchReference) {
  const auto [d, threads] = GetParam();
  const int64_t n = 37, ldx = d + 5;
  auto x = Gaussian(n * ldx, 1, 0.3f, 2.0f);
  std::vector<float> mu(d), a(d);
  BtrCalibrate(n, d, x.data(), ldx, mu.data(), a.data());
  ThreadPool pool(threads);
  std::vector<uint8_t> bits(n * d / 8), ref_bits(n * d / 8);
  std::vector<float> scales(n), ref_scales(n);
  BtrEncode(pool, n, d, x.data(), ldx, mu.data(), a.data(), bits.data(), scales.data());
  BtrEncodeReference(n, d, x.data(), ldx, mu.data(), a.data(), ref_bits.data(), ref_scales.data());
  EXPECT_EQ(bits, ref_bits);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(scales[i], ref_scales[i], 1e-5f * ref_scales[i]);

  for (int64_t d_out : {d, d - 3}) {
    const int64_t ldo = d_out + 2;
    std::vector<float> out(n * ldo, 9.0f), ref(n * ldo, 9.0f);
    BtrDecode(pool, n, d, bits.data(), scales.data(), mu.data(), a.data(), d_out, out.data(), ldo);
    BtrDecodeReference(n, d, bits.data(), scales.data(), mu.data(), a.data(), d_out, ref.data(), ldo);
    EXPECT_LE(testing::MaxAbsDiff(out.data(), ref.data(), n * ldo), 1e-6f);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, BtrKernelTest,
                         ::testing::Values(std::make_pair<int64_t, int>(64, 1),
                                           std::make_pair<int64_t, int>(768, 2),
                                           std::make_pair<int64_t, int>(24, 2)));

// The decoded token keeps the sign pattern around mu and, by construction, the optimal scale:
// the reconstruction error is below the error of decoding with alpha = 0 (just mu), and the
// decoded spread matches the original's for a Gaussian (E|x| ratio is what alpha restores).
TEST(BtrCalibrationTest, DecodeRestoresScale) {
  const int64_t n = 500, d = 256;
  auto x = Gaussian(n * d, 2, 1.5f, 3.0f);
  std::vector<float> mu(d), a(d), scales(n), out(n * d);
  std::vector<uint8_t> bits(n * d / 8);
  BtrCalibrate(n, d, x.data(), d, mu.data(), a.data());
  ThreadPool pool(2);
  BtrEncode(pool, n, d, x.data(), d, mu.data(), a.data(), bits.data(), scales.data());
  BtrDecode(pool, n, d, bits.data(), scales.data(), mu.data(), a.data(), d, out.data(), d);
  double err = 0.0, base = 0.0, norm_in = 0.0, norm_out = 0.0;
  for (int64_t i = 0; i < n * d; ++i) {
    err += (out[i] - x[i]) * (out[i] - x[i]);
    base += (mu[i % d] - x[i]) * (mu[i % d] - x[i]);
    norm_in += std::fabs(x[i] - mu[i % d]);
    norm_out += std::fabs(out[i] - mu[i % d]);
  }
  // For Gaussian data 1-bit with optimal scale keeps 2/pi of the variance: error ~ 1 - 2/pi.
  EXPECT_NEAR(err / base, 1.0 - 2.0 / M_PI, 0.03);
  EXPECT_NEAR(norm_out / norm_in, 1.0, 0.02);
}

TEST(BtrHammingTest, MatchesReference) {
  std::mt19937_64 rng(3);
  for (int64_t nbytes : {1, 7, 8, 31, 32, 33, 96, 513}) {
    std::vector<uint8_t> x(nbytes), y(nbytes);
    for (auto& v : x) v = static_cast<uint8_t>(rng());
    for (auto& v : y) v = static_cast<uint8_t>(rng());
    EXPECT_EQ(BtrHamming(x.data(), y.data(), nbytes), BtrHammingReference(x.data(), y.data(), nbytes));
    EXPECT_EQ(BtrHamming(x.data(), x.data(), nbytes), 0);
  }
  const int64_t nx = 5, ny = 9, nb = 24;
  std::vector<uint8_t> X(nx * nb), Y(ny * nb);
  for (auto& v : X) v = static_cast<uint8_t>(rng());
  for (auto& v : Y) v = static_cast<uint8_t>(rng());
  std::vector<int32_t> m(nx * ny);
  BtrHammingMatrix(ThreadPool(2), nx, X.data(), ny, Y.data(), nb, m.data());
  for (int64_t i = 0; i < nx; ++i) {
    for (int64_t k = 0; k < ny; ++k) {
      EXPECT_EQ(m[i * ny + k], BtrHammingReference(&X[i * nb], &Y[k * nb], nb));
    }
  }
}

}  // namespace
}  // namespace memoria
