#include "kernels/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "base/testing.h"
#include "kernels/vec_math.h"

namespace memoria {
namespace {

using ::memoria::testing::MaxAbsDiff;
using ::memoria::testing::Nmse;

constexpr double kF32Nmse = 1e-7;

std::vector<float> Random(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

class RmsNormTest : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, int64_t>> {};

TEST_P(RmsNormTest, MatchesReference) {
  const auto [rows, d, pad] = GetParam();
  const int64_t stride = d + pad;
  ThreadPool pool(2);
  const std::vector<float> x = Random(rows * stride, 1, -3, 3), w = Random(d, 2, 0.5f, 1.5f);
  std::vector<float> y(rows * stride, 7.0f), ref(rows * stride, 7.0f);
  RmsNorm(pool, x.data(), stride, w.data(), y.data(), stride, rows, d, 1e-6f);
  RmsNormReference(x.data(), stride, w.data(), ref.data(), stride, rows, d, 1e-6f);
  EXPECT_LE(Nmse(y.data(), ref.data(), static_cast<long>(y.size())), kF32Nmse);
  // Padding between rows is not written.
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = d; i < stride; ++i) ASSERT_EQ(y[r * stride + i], 7.0f);
  }
  // In place.
  std::vector<float> inplace = x;
  RmsNorm(pool, inplace.data(), stride, w.data(), inplace.data(), stride, rows, d, 1e-6f);
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_LE(Nmse(inplace.data() + r * stride, ref.data() + r * stride, d), kF32Nmse);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, RmsNormTest,
                         ::testing::Values(std::make_tuple(1, 1, 0), std::make_tuple(1, 7, 3),
                                           std::make_tuple(3, 13, 0), std::make_tuple(5, 64, 8),
                                           std::make_tuple(1, 4096, 0),
                                           std::make_tuple(300, 768, 5),
                                           std::make_tuple(64, 1001, 0)));

class ActivationTest : public ::testing::TestWithParam<std::tuple<Activation, int64_t>> {};

TEST_P(ActivationTest, MatchesReference) {
  const auto [act, n] = GetParam();
  const std::vector<float> x = Random(n, 3, -12, 12);
  std::vector<float> y(n), ref(n);
  Activate(act, x.data(), y.data(), n);
  ActivateReference(act, x.data(), ref.data(), n);
  EXPECT_LE(Nmse(y.data(), ref.data(), n), kF32Nmse);
  EXPECT_LE(MaxAbsDiff(y.data(), ref.data(), n), 2e-6f);
  // In place.
  std::vector<float> inplace = x;
  Activate(act, inplace.data(), inplace.data(), n);
  EXPECT_EQ(MaxAbsDiff(inplace.data(), y.data(), n), 0.0f);
}

TEST_P(ActivationTest, GatedMatchesReference) {
  const auto [act, n] = GetParam();
  const std::vector<float> gate = Random(n, 4, -10, 10), up = Random(n, 5, -2, 2);
  std::vector<float> y(n), ref(n);
  GatedActivate(act, gate.data(), up.data(), y.data(), n);
  GatedActivateReference(act, gate.data(), up.data(), ref.data(), n);
  EXPECT_LE(Nmse(y.data(), ref.data(), n), kF32Nmse);
  // In place over gate.
  std::vector<float> inplace = gate;
  GatedActivate(act, inplace.data(), up.data(), inplace.data(), n);
  EXPECT_EQ(MaxAbsDiff(inplace.data(), y.data(), n), 0.0f);
}

INSTANTIATE_TEST_SUITE_P(All, ActivationTest,
                         ::testing::Combine(::testing::Values(Activation::kRelu, Activation::kSilu,
                                                              Activation::kGeluTanh,
                                                              Activation::kGeluErf),
                                            ::testing::Values<int64_t>(1, 7, 8, 29, 4096 + 3)));

TEST(ActivationTest, ExtremeInputsStayFinite) {
  const std::vector<float> x = {-1e30f, -200.0f, -90.0f, -30.0f, 0.0f, 30.0f, 90.0f, 1e30f};
  for (Activation act :
       {Activation::kRelu, Activation::kSilu, Activation::kGeluTanh, Activation::kGeluErf}) {
    std::vector<float> y(x.size()), ref(x.size());
    Activate(act, x.data(), y.data(), static_cast<int64_t>(x.size()));
    ActivateReference(act, x.data(), ref.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_TRUE(std::isfinite(y[i])) << static_cast<int>(act) << " x=" << x[i];
      EXPECT_NEAR(y[i], ref[i], 1e-6f * std::max(1.0f, std::fabs(ref[i])))
          << static_cast<int>(act) << " x=" << x[i];
    }
  }
}

TEST(VecMathTest, ExpRelativeError) {
  // Dense sweep of the range softmax uses (scores minus their max are <= 0).
  double worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.00731f) {
    const double ref = std::exp(static_cast<double>(x));
    const double got = vec::ExpScalar(x);
    worst = std::max(worst, std::fabs(got - ref) / ref);
  }
  EXPECT_LE(worst, 3e-7);
  EXPECT_EQ(vec::ExpScalar(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_TRUE(std::isfinite(vec::ExpScalar(std::numeric_limits<float>::infinity())));
}

TEST(VecMathTest, ErfAbsoluteError) {
  double worst = 0;
  for (float x = -6.0f; x <= 6.0f; x += 0.0013f) {
    alignas(32) float buf[8];
    _mm256_store_ps(buf, vec::Erf(_mm256_set1_ps(x)));
    worst = std::max(worst, std::fabs(buf[0] - std::erf(static_cast<double>(x))));
  }
  EXPECT_LE(worst, 3e-7);
}

class SoftmaxTest : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, int64_t>> {};

TEST_P(SoftmaxTest, MatchesReference) {
  const auto [rows, cols, pad] = GetParam();
  const int64_t stride = cols + pad;
  std::vector<float> x = Random(rows * stride, 6, -20, 20);
  std::vector<float> ref = x;
  SoftmaxRows(x.data(), rows, cols, stride);
  SoftmaxRowsReference(ref.data(), rows, cols, stride);
  EXPECT_LE(Nmse(x.data(), ref.data(), static_cast<long>(x.size())), kF32Nmse);
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0;
    for (int64_t i = 0; i < cols; ++i) sum += x[r * stride + i];
    EXPECT_NEAR(sum, 1.0, 1e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, SoftmaxTest,
                         ::testing::Values(std::make_tuple(1, 1, 0), std::make_tuple(2, 7, 1),
                                           std::make_tuple(3, 8, 0), std::make_tuple(4, 33, 5),
                                           std::make_tuple(2, 32000, 0)));

TEST(SoftmaxTest, MaskedEntriesAndFullyMaskedRow) {
  const float ninf = -std::numeric_limits<float>::infinity();
  std::vector<float> x = {1,    ninf, 2,    ninf, 3,    0,    0,    0,    0,    0,
                          ninf, ninf, ninf, ninf, ninf, ninf, ninf, ninf, ninf, ninf};
  std::vector<float> ref = x;
  SoftmaxRows(x.data(), 2, 10, 10);
  SoftmaxRowsReference(ref.data(), 2, 10, 10);
  EXPECT_LE(MaxAbsDiff(x.data(), ref.data(), 20), 1e-7f);
  EXPECT_EQ(x[1], 0.0f);
  for (int i = 10; i < 20; ++i) EXPECT_EQ(x[i], 0.0f);
}

TEST(AddInPlaceTest, MatchesLoop) {
  for (int64_t n : {1, 7, 8, 9, 1000}) {
    std::vector<float> y = Random(n, 7), x = Random(n, 8);
    std::vector<float> ref = y;
    for (int64_t i = 0; i < n; ++i) ref[i] += x[i];
    AddInPlace(y.data(), x.data(), n);
    EXPECT_EQ(MaxAbsDiff(y.data(), ref.data(), n), 0.0f);
  }
}

}  // namespace
}  // namespace memoria
