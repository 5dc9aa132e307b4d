#include "engine/t5_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/testing.h"

namespace memoria {
namespace {

TEST(T5RelativeBucketTest, MatchesHuggingFaceValues) {
  // Bidirectional, 32 buckets, max distance 128: 16 per direction, 8 exact.
  EXPECT_EQ(T5RelativeBucket(0, true, 32, 128), 0);
  EXPECT_EQ(T5RelativeBucket(-1, true, 32, 128), 1);
  EXPECT_EQ(T5RelativeBucket(1, true, 32, 128), 17);
  EXPECT_EQ(T5RelativeBucket(-7, true, 32, 128), 7);
  EXPECT_EQ(T5RelativeBucket(-8, true, 32, 128), 8);
  // 8 + int(log(20/8) / log(16) * 8) = 8 + int(2.643) = 10.
  EXPECT_EQ(T5RelativeBucket(-20, true, 32, 128), 10);
  EXPECT_EQ(T5RelativeBucket(20, true, 32, 128), 26);
  EXPECT_EQ(T5RelativeBucket(-127, true, 32, 128), 15);
  EXPECT_EQ(T5RelativeBucket(-500, true, 32, 128), 15);
  EXPECT_EQ(T5RelativeBucket(500, true, 32, 128), 31);
  // Causal: only r <= 0 counts; 16 exact buckets.
  EXPECT_EQ(T5RelativeBucket(3, false, 32, 128), 0);
  EXPECT_EQ(T5RelativeBucket(-15, false, 32, 128), 15);
  // 16 + int(log(20/16) / log(8) * 16) = 16 + int(1.717) = 17.
  EXPECT_EQ(T5RelativeBucket(-20, false, 32, 128), 17);
  EXPECT_EQ(T5RelativeBucket(-1000, false, 32, 128), 31);
  // Saturation at max_distance: the bias table spans exactly [-max_distance, max_distance].
  for (int md : {20, 40, 128}) {
    EXPECT_EQ(T5RelativeBucket(-md, true, 32, md), T5RelativeBucket(-md - 100, true, 32, md));
    EXPECT_EQ(T5RelativeBucket(md, true, 32, md), T5RelativeBucket(md + 100, true, 32, md));
    EXPECT_EQ(T5RelativeBucket(-md, false, 32, md), T5RelativeBucket(-md - 100, false, 32, md));
  }
}

TEST(T5ConfigTest, ParsesFamiliesAndRejectsBadValues) {
  auto parse = [](const std::string& text) -> StatusOr<T5Config> {
    auto json = JsonConfig::ParseString(text, "config.json");
    if (!json.ok()) return json.status();
    return T5Config::FromJson(**json);
  };
  auto v11 = parse(R"({"d_model": 64, "feed_forward_proj": "gated-gelu",
                       "tie_word_embeddings": false, "num_layers": 3})");
  ASSERT_TRUE(v11.ok()) << v11.status().ToString();
  EXPECT_TRUE(v11->gated_ffn);
  EXPECT_EQ(v11->ffn_activation, Activation::kGeluTanh);
  EXPECT_FALSE(v11->tie_word_embeddings);
  EXPECT_EQ(v11->num_decoder_layers, 3);  // defaults to num_layers
  auto orig = parse(R"({"feed_forward_proj": "relu"})");
  ASSERT_TRUE(orig.ok());
  EXPECT_FALSE(orig->gated_ffn);
  EXPECT_EQ(orig->ffn_activation, Activation::kRelu);
  EXPECT_TRUE(orig->tie_word_embeddings);  // HF default
  auto erf = parse(R"({"feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu"})");
  ASSERT_TRUE(erf.ok());
  EXPECT_EQ(erf->ffn_activation, Activation::kGeluTanh);  // "gated-gelu" always means gelu_new
  EXPECT_EQ(parse(R"({"feed_forward_proj": "gated-tanhish"})").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(parse(R"({"d_model": 0})").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(parse(R"({"num_heads": -2})").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(parse(R"({"eos_token_id": 99999})").status().code(), StatusCode::kInvalidArgument);
}

// ---- Golden data: t5-v1_1-tiny computed by llama.cpp ------------------------------------------

class T5GoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MEMORIA_REQUIRE_SHARED();
    dir_ = testing::SharedPath("golden/t5-v1_1-tiny");
    std::ifstream f(dir_ + "/cases.json");
    ASSERT_TRUE(f.good()) << dir_;
    cases_ = nlohmann::json::parse(f)["cases"];
    auto model = T5Model::Load(dir_);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    model_ = *model;
  }
  static std::vector<int> Ids(const nlohmann::json& j) { return j.get<std::vector<int>>(); }

  std::string dir_;
  nlohmann::json cases_;
  std::shared_ptr<const T5Model> model_;
  ThreadPool pool_{2};
};

TEST_F(T5GoldenTest, EncoderOutputsMatch) {
  float worst = 0.0f;
  for (const auto& c : cases_) {
    auto enc = model_->Encode(pool_, Ids(c["encoder_input_ids"]));
    ASSERT_TRUE(enc.ok()) << enc.status().ToString();
    auto golden = testing::ReadNpyFloat32(dir_ + "/" + c["encoder_output_file"].get<std::string>());
    ASSERT_EQ(golden.data.size(), enc->size());
    const float diff = testing::MaxAbsDiff(enc->data(), golden.data.data(), golden.data.size());
    EXPECT_LE(diff, 1e-4) << c["name"];
    worst = std::max(worst, diff);
  }
  std::printf("t5-v1_1-tiny encoder output: max abs diff %.3g\n", worst);
}

TEST_F(T5GoldenTest, TeacherForcedAndIncrementalLogitsMatch) {
  const int64_t V = model_->config().vocab_size;
  float worst_golden = 0.0f;
  for (const auto& c : cases_) {
    const std::string name = c["name"];
    auto enc = model_->Encode(pool_, Ids(c["encoder_input_ids"]));
    ASSERT_TRUE(enc.ok());
    const int64_t enc_len = static_cast<int64_t>(enc->size()) / model_->config().d_model;
    const std::vector<int> dec = Ids(c["decoder_input_ids"]);
    const int64_t n = static_cast<int64_t>(dec.size());
    auto golden = testing::ReadNpyFloat32(dir_ + "/" + c["logits_file"].get<std::string>());
    const std::vector<int> rows = Ids(c["logits_rows"]);
    const std::vector<int> argmax = Ids(c["argmax_teacher_forced"]);

    // Full teacher-forced pass: all positions in one step.
    T5DecoderState full;
    ASSERT_TRUE(model_->StartDecoder(pool_, enc->data(), enc_len, 1, n, n, &full).ok());
    std::vector<float> logits(n * V);
    ASSERT_TRUE(model_->DecoderStep(pool_, dec.data(), n, true, &full, logits.data()).ok());
    for (size_t r = 0; r < rows.size(); ++r) {
      const float diff =
          testing::MaxAbsDiff(logits.data() + rows[r] * V, golden.data.data() + r * V, V);
      EXPECT_LE(diff, 1e-4) << name << " row " << rows[r];
      worst_golden = std::max(worst_golden, diff);
    }
    for (int64_t t = 0; t < n; ++t) {
      const float* row = logits.data() + t * V;
      EXPECT_EQ(std::max_element(row, row + V) - row, argmax[t]) << name << " position " << t;
    }

    // Incremental: one token per step through the KV cache gives the same logits.
    T5DecoderState inc;
    ASSERT_TRUE(model_->StartDecoder(pool_, enc->data(), enc_len, 1, n, 1, &inc).ok());
    std::vector<float> step(V);
    float worst = 0.0f;
    for (int64_t t = 0; t < n; ++t) {
      ASSERT_TRUE(model_->DecoderStep(pool_, &dec[t], 1, false, &inc, step.data()).ok());
      worst = std::max(worst, testing::MaxAbsDiff(step.data(), logits.data() + t * V, V));
      auto it = std::find(rows.begin(), rows.end(), static_cast<int>(t));
      if (it != rows.end()) {
        EXPECT_LE(testing::MaxAbsDiff(step.data(), golden.data.data() + (it - rows.begin()) * V, V),
                  1e-4)
            << name << " incremental row " << t;
      }
    }
    EXPECT_LE(worst, 1e-4) << name << ": incremental vs full pass";
  }
  std::printf("t5-v1_1-tiny decoder logits: max abs diff %.3g\n", worst_golden);
}

TEST_F(T5GoldenTest, GreedyIdsMatch) {
  for (const auto& c : cases_) {
    auto enc = model_->Encode(pool_, Ids(c["encoder_input_ids"]));
    ASSERT_TRUE(enc.ok());
    const int64_t enc_len = static_cast<int64_t>(enc->size()) / model_->config().d_model;
    T5GenerationOptions options;
    options.max_new_tokens = 10;
    options.stop_at_eos = false;  // the golden run never stops at EOS
    T5DecoderState state;
    auto result = T5Generate(*model_, pool_, enc->data(), enc_len, options, &state);
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    EXPECT_EQ(result->tokens, Ids(c["greedy_ids"])) << c["name"];
  }
}

// ---- Random-weight properties
// --------------------------------------------------------------------

T5Config SmallConfig() {
  T5Config c;
  c.vocab_size = 100;
  c.d_model = 32;
  c.d_kv = 12;
  c.num_heads = 3;
  c.d_ff = 40;
  c.num_layers = 3;
  c.num_decoder_layers = 2;
  c.relative_attention_max_distance = 24;
  c.gated_ffn = true;
  c.ffn_activation = Activation::kGeluTanh;
  c.tie_word_embeddings = false;
  return c;
}

TEST(T5ModelTest, BatchedEncoderEqualsOneSequenceAtATime) {
  auto model = T5Model::CreateRandom(SmallConfig(), 7);
  ASSERT_TRUE(model.ok());
  ThreadPool pool(2);
  const int64_t d = SmallConfig().d_model;
  std::vector<std::vector<int>> seqs = {{5, 6, 7, 1}, {9, 10, 11, 12, 13, 14, 15, 16, 17, 1}, {3}};
  std::vector<int64_t> offsets{0};
  std::vector<int> all;
  for (auto& s : seqs) {
    offsets.push_back(offsets.back() + s.size());
    all.insert(all.end(), s.begin(), s.end());
  }
  std::vector<float> h(all.size() * d);
  ASSERT_TRUE((*model)->Embed(all.data(), all.size(), h.data()).ok());
  T5EncoderScratch scratch;
  (*model)->EncoderLayers(pool, 0, 3, offsets, h.data(), &scratch);
  (*model)->EncoderFinalNorm(pool, h.data(), all.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto single = (*model)->Encode(pool, seqs[i]);
    ASSERT_TRUE(single.ok());
    EXPECT_LE(testing::MaxAbsDiff(single->data(), h.data() + offsets[i] * d, single->size()), 1e-5);
  }
}

TEST(T5ModelTest, ChunkedDecoderStepsEqualOnePass) {
  auto model = T5Model::CreateRandom(SmallConfig(), 8);
  ASSERT_TRUE(model.ok());
  ThreadPool pool(2);
  const int64_t V = SmallConfig().vocab_size;
  auto enc = (*model)->Encode(pool, {4, 8, 15, 16, 23, 42, 1});
  ASSERT_TRUE(enc.ok());
  std::vector<int> dec = {0, 5, 9, 2, 7, 7, 31, 64, 3, 11};
  const int64_t n = dec.size();
  T5DecoderState a, b;
  ASSERT_TRUE((*model)->StartDecoder(pool, enc->data(), 7, 1, n, n, &a).ok());
  std::vector<float> la(n * V), lb(n * V);
  ASSERT_TRUE((*model)->DecoderStep(pool, dec.data(), n, true, &a, la.data()).ok());
  ASSERT_TRUE((*model)->StartDecoder(pool, enc->data(), 7, 1, n, 4, &b).ok());
  ASSERT_TRUE((*model)->DecoderStep(pool, dec.data(), 4, true, &b, lb.data()).ok());
  ASSERT_TRUE((*model)->DecoderStep(pool, dec.data() + 4, 3, true, &b, lb.data() + 4 * V).ok());
  ASSERT_TRUE((*model)->DecoderStep(pool, dec.data() + 7, 3, true, &b, lb.data() + 7 * V).ok());
  EXPECT_LE(testing::MaxAbsDiff(la.data(), lb.data(), n * V), 1e-4);
  // Past the end of the cache, and a bad id: errors, state unchanged.
  std::vector<float> one(V);
  int tok = 3;
  EXPECT_EQ((*model)->DecoderStep(pool, &tok, 1, false, &b, one.data()).code(),
            StatusCode::kOutOfRange);
  T5DecoderState c;
  ASSERT_TRUE((*model)->StartDecoder(pool, enc->data(), 7, 1, n, 1, &c).ok());
  int bad = 100;
  EXPECT_EQ((*model)->DecoderStep(pool, &bad, 1, false, &c, one.data()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(c.length(), 0);
  EXPECT_EQ((*model)->DecoderStep(pool, dec.data(), 2, false, &c, one.data()).code(),
            StatusCode::kOutOfRange);
}

TEST(T5ModelTest, ReorderCacheFollowsParents) {
  // Two sequences fed different prefixes; after swapping caches each continues the other's.
  auto model = T5Model::CreateRandom(SmallConfig(), 9);
  ASSERT_TRUE(model.ok());
  ThreadPool pool(2);
  const int64_t V = SmallConfig().vocab_size;
  auto enc = (*model)->Encode(pool, {4, 8, 15, 1});
  ASSERT_TRUE(enc.ok());
  T5DecoderState two;
  ASSERT_TRUE((*model)->StartDecoder(pool, enc->data(), 4, 2, 8, 1, &two).ok());
  std::vector<float> logits(2 * V), single(V);
  int step0[2] = {0, 0}, step1[2] = {5, 6}, step2[2] = {7, 7};
  ASSERT_TRUE((*model)->DecoderStep(pool, step0, 1, false, &two, logits.data()).ok());
  ASSERT_TRUE((*model)->DecoderStep(pool, step1, 1, false, &two, logits.data()).ok());
  (*model)->ReorderCache({1, 1}, &two);  // both continue sequence 1's prefix [0, 6]
  ASSERT_TRUE((*model)->DecoderStep(pool, step2, 1, false, &two, logits.data()).ok());
  T5DecoderState one;
  ASSERT_TRUE((*model)->StartDecoder(pool, enc->data(), 4, 1, 8, 3, &one).ok());
  int prefix[3] = {0, 6, 7};
  std::vector<float> all(3 * V);
  ASSERT_TRUE((*model)->DecoderStep(pool, prefix, 3, true, &one, all.data()).ok());
  EXPECT_LE(testing::MaxAbsDiff(logits.data(), all.data() + 2 * V, V), 1e-4);
  EXPECT_LE(testing::MaxAbsDiff(logits.data() + V, all.data() + 2 * V, V), 1e-4);
}

TEST(T5ModelTest, LoadErrorsNameTheProblem) {
  EXPECT_FALSE(T5Model::Load("/nonexistent/t5").ok());
  T5Config bad = SmallConfig();
  bad.relative_attention_max_distance = 8;  // must exceed num_buckets / 2
  EXPECT_EQ(T5Model::CreateRandom(bad, 1).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace memoria
