#include "kernels/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/testing.h"

namespace memoria {
namespace {

using ::memoria::testing::MaxAbsDiff;
using ::memoria::testing::Nmse;

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

struct RopeCase {
  int head_dim;
  int n_heads;
  int64_t tokens;
  int64_t first_position;
  int64_t pad;  // row stride = n_heads * head_dim + pad
  double theta;
};

class RopeTest : public ::testing::TestWithParam<RopeCase> {};

// Against exact (double) angles: the table's float32 angles are off by up to pos * 2^-24 rad,
// which at positions below ~2k stays well inside the fp32 NMSE bound.
TEST_P(RopeTest, MatchesDoubleReference) {
  const RopeCase c = GetParam();
  const int64_t stride = static_cast<int64_t>(c.n_heads) * c.head_dim + c.pad;
  RopeTable table(c.head_dim, c.first_position + c.tokens, c.theta);
  std::vector<float> x = Random(c.tokens * stride, 1);
  std::vector<float> ref = x;
  ApplyRope(table, x.data(), c.tokens, stride, c.n_heads, c.first_position);
  ApplyRopeReference(ref.data(), c.tokens, stride, c.n_heads, c.head_dim, c.first_position,
                     c.theta);
  EXPECT_LE(Nmse(x.data(), ref.data(), static_cast<long>(x.size())), 1e-7);
  // Padding untouched (the reference leaves it alone too).
  for (int64_t t = 0; t < c.tokens; ++t) {
    for (int64_t i = stride - c.pad; i < stride; ++i)
      ASSERT_EQ(x[t * stride + i], ref[t * stride + i]);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, RopeTest,
                         ::testing::Values(RopeCase{2, 1, 1, 0, 0, 10000.0},
                                           RopeCase{8, 8, 5, 3, 0, 10000.0},     // stories260K
                                           RopeCase{6, 3, 7, 0, 2, 10000.0},     // half = 3
                                           RopeCase{24, 2, 9, 11, 1, 500000.0},  // half = 12
                                           RopeCase{64, 4, 33, 100, 0, 10000.0},
                                           RopeCase{128, 2, 64, 1900, 16, 10000.0}));

// The table reproduces Hugging Face's float32 arithmetic exactly (see rope.cc).
TEST(RopeTableTest, MatchesHuggingFaceFloat32Semantics) {
  const int d = 128;
  const double theta = 10000.0;
  RopeTable table(d, 5000, theta);
  for (int64_t pos : {0, 1, 17, 1000, 4095, 4999}) {
    for (int i = 0; i < d / 2; ++i) {
      const float inv_freq =
          1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / d);
      const float angle = static_cast<float>(pos) * inv_freq;
      EXPECT_EQ(table.cos(pos)[i], static_cast<float>(std::cos(static_cast<double>(angle))));
      EXPECT_EQ(table.sin(pos)[i], static_cast<float>(std::sin(static_cast<double>(angle))));
    }
  }
}

// At long positions the float32 angle error shows but stays small.
TEST(RopeTableTest, LongPositionsStayClose) {
  const int d = 64;
  RopeTable table(d, 32768, 10000.0);
  std::vector<float> x = Random(4 * d, 2);
  std::vector<float> ref = x;
  ApplyRope(table, x.data(), 4, d, 1, 32764);
  ApplyRopeReference(ref.data(), 4, d, 1, d, 32764, 10000.0);
  EXPECT_LE(MaxAbsDiff(x.data(), ref.data(), 4 * d), 5e-3f);
}

// Rotation by p then by -p is the identity: checks pairing of i with i + half.
TEST(RopeTableTest, PreservesNorm) {
  const int d = 16;
  RopeTable table(d, 100, 10000.0);
  std::vector<float> x = Random(d, 3);
  double before = 0, after = 0;
  for (float v : x) before += v * v;
  ApplyRope(table, x.data(), 1, d, 1, 57);
  for (float v : x) after += v * v;
  EXPECT_NEAR(before, after, 1e-5);
}

}  // namespace
}  // namespace memoria
