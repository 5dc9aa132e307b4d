#include "kernels/product_key.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "base/testing.h"

namespace memoria {
namespace {

struct Case {
  std::string name;
  ProductKeyParams p;
  int64_t tokens;
  DType values_dtype;
  int threads;
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

ProductKeyParams Params(int64_t heads, int64_t n_keys, int64_t k_dim, int64_t knn, int64_t v_dim) {
  ProductKeyParams p;
  p.heads = heads;
  p.n_keys = n_keys;
  p.k_dim = k_dim;
  p.knn = knn;
  p.v_dim = v_dim;
  return p;
}

// Random inputs as a memory layer sees them: queries from a linear layer, keys uniform in
// +-1/sqrt(k_dim) (Meta's init) scaled up so that scores spread, values N(0, 1).
struct Inputs {
  std::vector<float> queries, keys, values_f32;
  std::vector<uint16_t> values_bf16;
};

Inputs MakeInputs(const ProductKeyParams& p, int64_t tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  Inputs in;
  in.queries.resize(tokens * p.heads * p.k_dim);
  for (auto& q : in.queries) q = normal(rng);
  in.keys.resize(p.heads * 2 * p.n_keys * p.half());
  for (auto& k : in.keys) k = uniform(rng) / std::sqrt(static_cast<float>(p.half()));
  in.values_f32.resize(p.slots() * p.v_dim);
  for (auto& v : in.values_f32) v = normal(rng);
  in.values_bf16.resize(in.values_f32.size());
  ConvertF32ToBf16(in.values_f32.data(), in.values_bf16.data(), in.values_f32.size());
  return in;
}

class ProductKeyTest : public ::testing::TestWithParam<Case> {};

// The kernel (blocked matmul scores, heap top-k, pruned k x k candidates, prefetched gather) must
// select the same slots as the plain reference (full sorts of everything) and produce the same
// output: |diff| <= 1e-5 on outputs of magnitude ~1 (f32 rounding of the scores and sums).
TEST_P(ProductKeyTest, MatchesReference) {
  const Case& c = GetParam();
  const ProductKeyParams& p = c.p;
  ASSERT_TRUE(ValidateProductKeyParams(p).ok());
  Inputs in = MakeInputs(p, c.tokens, 1234);
  const void* values = c.values_dtype == DType::kF32 ? static_cast<const void*>(in.values_f32.data())
                                                     : static_cast<const void*>(in.values_bf16.data());
  // A row stride wider than v_dim checks that the kernel honours out_stride.
  const int64_t stride = p.v_dim + 3;
  std::vector<float> out(c.tokens * stride, -7.0f), ref(c.tokens * stride, -7.0f);
  const int64_t sel = c.tokens * p.heads * p.knn;
  std::vector<int32_t> ref_idx(sel);
  std::vector<float> ref_w(sel);
  ProductKeyLookupReference(p, in.queries.data(), c.tokens, in.keys.data(), values, c.values_dtype,
                            ref.data(), stride, ref_idx.data(), ref_w.data());

  ThreadPool pool(c.threads);
  ProductKeyScratch scratch;
  ProductKeyLookup(pool, p, in.queries.data(), c.tokens, in.keys.data(), values, c.values_dtype,
                   out.data(), stride, &scratch);

  for (int64_t i = 0; i < sel; ++i) {
    ASSERT_EQ(scratch.indices[i], ref_idx[i]) << "selection " << i;
    ASSERT_NEAR(scratch.weights[i], ref_w[i], 1e-6) << "weight " << i;
  }
  for (int64_t t = 0; t < c.tokens; ++t) {
    for (int64_t j = 0; j < p.v_dim; ++j) {
      ASSERT_NEAR(out[t * stride + j], ref[t * stride + j], 1e-5) << "token " << t << " col " << j;
    }
    for (int64_t j = p.v_dim; j < stride; ++j) ASSERT_EQ(out[t * stride + j], -7.0f);
  }

  // A second call with the grown scratch gives the same result (no stale state).
  std::vector<float> again(out.size(), -7.0f);
  ProductKeyLookup(pool, p, in.queries.data(), c.tokens, in.keys.data(), values, c.values_dtype,
                   again.data(), stride, &scratch);
  EXPECT_EQ(again, out);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ProductKeyTest,
    ::testing::Values(
        Case{"Small_f32_1t", Params(2, 16, 8, 4, 24), 5, DType::kF32, 1},
        Case{"Small_bf16_2t", Params(2, 16, 8, 4, 24), 5, DType::kBF16, 2},
        Case{"Knn1", Params(3, 20, 6, 1, 40), 7, DType::kF32, 2},
        Case{"KnnEqualsNKeys", Params(1, 6, 4, 6, 33), 4, DType::kF32, 2},
        Case{"OneHead", Params(1, 64, 32, 8, 64), 9, DType::kF32, 1},
        // Decode: one token, column blocks across threads, v_dim not a multiple of 32.
        Case{"Decode_f32", Params(4, 64, 32, 16, 300), 1, DType::kF32, 2},
        // Up to 4 tokens score with one pass of dot products (half 11: vector tails) instead of
        // matmuls; 2 threads split both the scores and the value columns.
        Case{"SmallBatch_f32", Params(3, 40, 22, 5, 50), 3, DType::kF32, 2},
        Case{"SmallBatch_bf16", Params(2, 48, 80, 7, 64), 4, DType::kBF16, 2},
        Case{"Decode_bf16", Params(4, 64, 32, 16, 300), 1, DType::kBF16, 2},
        // More tokens than one selection block (128), default-like heads/knn.
        Case{"Prefill_f32", Params(4, 128, 64, 32, 128), 150, DType::kF32, 2},
        Case{"Prefill_bf16", Params(4, 128, 64, 32, 96), 131, DType::kBF16, 2}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// The weights of each head are a softmax: positive, best first, summing to 1; indices in range
// and distinct within a head.
TEST(ProductKeySelectTest, WeightsAreSoftmaxAndIndicesDistinct) {
  ProductKeyParams p = Params(4, 32, 16, 8, 8);
  const int64_t tokens = 11;
  Inputs in = MakeInputs(p, tokens, 7);
  std::vector<float> scores(tokens * p.heads * 2 * p.n_keys);
  std::vector<int32_t> idx(tokens * p.heads * p.knn);
  std::vector<float> w(idx.size());
  ThreadPool pool(2);
  ProductKeySelect(pool, p, in.queries.data(), tokens, in.keys.data(), scores.data(), idx.data(),
                   w.data());
  for (int64_t th = 0; th < tokens * p.heads; ++th) {
    double sum = 0;
    std::vector<int32_t> seen;
    for (int64_t r = 0; r < p.knn; ++r) {
      const int64_t i = th * p.knn + r;
      EXPECT_GT(w[i], 0.0f);
      if (r > 0) {
        EXPECT_LE(w[i], w[i - 1]);
      }
      EXPECT_GE(idx[i], 0);
      EXPECT_LT(idx[i], p.slots());
      seen.push_back(idx[i]);
      sum += w[i];
    }
    EXPECT_NEAR(sum, 1.0, 1e-6);
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end());
  }
}

// Gather alone on hand-made selections: out = sum of weighted rows, exactly.
TEST(ProductKeyGatherTest, WeightedRowSum) {
  ProductKeyParams p = Params(2, 3, 2, 2, 5);
  std::vector<float> values(p.slots() * p.v_dim);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  const std::vector<int32_t> idx = {0, 8, 4, 4};  // token 0: heads 0 and 1, knn 2 each
  const std::vector<float> w = {0.5f, 0.5f, 0.25f, 0.75f};
  std::vector<float> out(p.v_dim);
  ProductKeyGather(ThreadPool(2), p, 1, idx.data(), w.data(), values.data(), DType::kF32,
                   out.data(), p.v_dim);
  for (int64_t c = 0; c < p.v_dim; ++c) {
    const float want = 0.5f * values[0 * 5 + c] + 0.5f * values[8 * 5 + c] + values[4 * 5 + c];
    EXPECT_FLOAT_EQ(out[c], want) << c;
  }
}

std::string Message(const ProductKeyParams& p) {
  const Status s = ValidateProductKeyParams(p);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  return s.message();
}

TEST(ProductKeyParamsTest, RejectsBadValues) {
  EXPECT_TRUE(ValidateProductKeyParams(Params(4, 1024, 512, 32, 1024)).ok());
  EXPECT_NE(Message(Params(0, 16, 8, 4, 8)).find("heads 0"), std::string::npos);
  EXPECT_NE(Message(Params(1, 16, 7, 4, 8)).find("k_dim 7"), std::string::npos);
  EXPECT_NE(Message(Params(1, 16, 8, 17, 8)).find("knn 17"), std::string::npos);
  EXPECT_NE(Message(Params(1, 16, 8, 0, 8)).find("knn 0"), std::string::npos);
  EXPECT_NE(Message(Params(1, 50000, 8, 4, 8)).find("n_keys 50000"),
            std::string::npos);
  EXPECT_NE(Message(Params(1, 16, 8, 4, 0)).find("v_dim 0"), std::string::npos);
}

}  // namespace
}  // namespace memoria
