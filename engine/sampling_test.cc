#include "engine/sampling.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace memoria {
namespace {

TEST(SamplingTest, ValidateRejectsBadValuesWithTheNumbers) {
  SamplingParams p;
  EXPECT_TRUE(p.Validate().ok());
  p.temperature = -0.5f;
  EXPECT_EQ(p.Validate().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(p.Validate().message().find("-0.5"), std::string::npos);
  p = {};
  p.temperature = NAN;
  EXPECT_EQ(p.Validate().code(), StatusCode::kInvalidArgument);
  p = {};
  p.top_k = -1;
  EXPECT_EQ(p.Validate().code(), StatusCode::kInvalidArgument);
  p = {};
  p.top_p = 0.0f;
  EXPECT_EQ(p.Validate().code(), StatusCode::kInvalidArgument);
  p.top_p = 1.5f;
  EXPECT_EQ(p.Validate().code(), StatusCode::kInvalidArgument);
}

TEST(SamplingTest, GreedyIsArgmaxWithLowestIdOnTies) {
  std::vector<float> logits = {0.1f, 3.0f, -1.0f, 3.0f};
  Sampler s(SamplingParams{});
  EXPECT_EQ(s.Sample(logits.data(), 4), 1);
  EXPECT_EQ(Argmax(logits.data(), 4), 1);
}

TEST(SamplingTest, TopKOneAndTinyTopPAreGreedy) {
  std::vector<float> logits = {0.5f, 0.2f, 2.0f, 1.9f, -3.0f};
  SamplingParams k1{1.0f, 1, 1.0f, 7};
  SamplingParams p_small{1.0f, 0, 1e-6f, 7};
  Sampler a(k1), b(p_small);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(a.Sample(logits.data(), 5), 2);
    EXPECT_EQ(b.Sample(logits.data(), 5), 2);
  }
}

TEST(SamplingTest, SameSeedSameTokens) {
  std::vector<float> logits(100);
  for (int i = 0; i < 100; ++i) logits[i] = std::sin(i * 0.7f);
  SamplingParams p{0.9f, 40, 0.95f, 1234};
  Sampler a(p), b(p);
  std::vector<int> ta, tb;
  for (int i = 0; i < 200; ++i) {
    ta.push_back(a.Sample(logits.data(), 100));
    tb.push_back(b.Sample(logits.data(), 100));
  }
  EXPECT_EQ(ta, tb);
  p.seed = 99;
  Sampler c(p);
  std::vector<int> tc;
  for (int i = 0; i < 200; ++i) tc.push_back(c.Sample(logits.data(), 100));
  EXPECT_NE(ta, tc);
}

TEST(SamplingTest, FrequenciesFollowTemperatureSoftmax) {
  // logits ln(1), ln(2), ln(5) at temperature 1 -> p = 0.125, 0.25, 0.625.
  std::vector<float> logits = {0.0f, std::log(2.0f), std::log(5.0f)};
  Sampler s(SamplingParams{1.0f, 0, 1.0f, 42});
  std::vector<int> counts(3, 0);
  const int n = 40000;
  for (int i = 0; i < n; ++i) counts[s.Sample(logits.data(), 3)]++;
  EXPECT_NEAR(counts[0] / double(n), 0.125, 0.01);
  EXPECT_NEAR(counts[1] / double(n), 0.25, 0.01);
  EXPECT_NEAR(counts[2] / double(n), 0.625, 0.01);

  // Temperature 2 flattens: p ~ sqrt(1), sqrt(2), sqrt(5) normalised.
  Sampler hot(SamplingParams{2.0f, 0, 1.0f, 42});
  counts.assign(3, 0);
  for (int i = 0; i < n; ++i) counts[hot.Sample(logits.data(), 3)]++;
  const double z = 1 + std::sqrt(2.0) + std::sqrt(5.0);
  EXPECT_NEAR(counts[0] / double(n), 1 / z, 0.01);
  EXPECT_NEAR(counts[2] / double(n), std::sqrt(5.0) / z, 0.01);
}

TEST(SamplingTest, TopKAndTopPCutTheTail) {
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  Sampler k2(SamplingParams{1.0f, 2, 1.0f, 3});
  Sampler p70(SamplingParams{1.0f, 0, 0.7f, 3});  // 0.5 + 0.3 >= 0.7 -> keep two
  std::vector<int> seen_k(4, 0), seen_p(4, 0);
  for (int i = 0; i < 5000; ++i) {
    seen_k[k2.Sample(logits.data(), 4)]++;
    seen_p[p70.Sample(logits.data(), 4)]++;
  }
  EXPECT_GT(seen_k[0], 0);
  EXPECT_GT(seen_k[1], 0);
  EXPECT_EQ(seen_k[2] + seen_k[3], 0);
  EXPECT_GT(seen_p[1], 0);
  EXPECT_EQ(seen_p[2] + seen_p[3], 0);
  EXPECT_NEAR(seen_k[0] / 5000.0, 0.5 / 0.8, 0.03);
}

}  // namespace
}  // namespace memoria
