// IceFormer cross-attention in the T5 decoder (T5IceformerSettings), driven through LUMEN over a
// memory of many passages: exactness when k covers every key, accuracy at the default k, and one
// index build per decoder layer per request.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "base/testing.h"
#include "engine/lumen.h"
#include "engine/t5_model.h"

namespace memoria {
namespace {

constexpr int kVocab = 300;
constexpr int kPassages = 16, kPassageTokens = 64, kQuestionTokens = 8;
constexpr int64_t kKeys = kPassages * (kQuestionTokens + kPassageTokens);  // 1152 cross keys

T5Config TestConfig() {
  T5Config c;
  c.vocab_size = kVocab;
  c.d_model = 32;
  c.d_kv = 64;
  c.num_heads = 2;
  c.d_ff = 48;
  c.num_layers = 3;  // alpha 1/3 -> 2 memory + 1 live layer
  c.num_decoder_layers = 2;
  c.relative_attention_max_distance = 32;
  c.gated_ffn = true;
  c.ffn_activation = Activation::kGeluTanh;
  c.tie_word_embeddings = false;
  return c;
}

std::vector<int> RandomIds(std::mt19937* rng, int n, int eos) {
  std::uniform_int_distribution<int> dist(2, kVocab - 1);
  std::vector<int> ids(n);
  for (auto& id : ids) id = dist(*rng);
  ids.back() = eos;
  return ids;
}

// IceFormer on for memories of >= 512 keys, searching (not exact) above 256 keys, so the test's
// 1152-key memory goes through the index at a small size.
T5IceformerSettings Ice() {
  T5IceformerSettings s;
  s.enabled = true;
  s.min_keys = 512;
  s.options.exact_up_to = 256;
  return s;
}

// One request: a question and its passages, memory-encoded once; Answer runs the live encoder
// and the decoder, LiveEncode gives the cross-attention memory for teacher forcing.
struct Request {
  std::vector<int> question;
  std::vector<std::vector<float>> memory;
  std::vector<MemoryVectors> views;
  LiveEncoding enc;
};

class T5IceformerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = T5Model::CreateRandom(TestConfig(), 17);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    auto lumen = LumenModel::Create(*model, LumenOptions{});
    ASSERT_TRUE(lumen.ok()) << lumen.status().ToString();
    lumen_ = std::move(*lumen);
  }

  Request MakeRequest(uint32_t seed) {
    Request r;
    std::mt19937 rng(seed);
    r.question = RandomIds(&rng, kQuestionTokens, kVocab - 1);  // no EOS in the question part
    std::vector<std::vector<int>> passages;
    for (int i = 0; i < kPassages; ++i) passages.push_back(RandomIds(&rng, kPassageTokens, 1));
    EXPECT_TRUE(lumen_->MemoryEncode(pool_, passages, &r.memory).ok());
    for (const auto& m : r.memory) {
      r.views.push_back({DType::kF32, m.data(), kPassageTokens, TestConfig().d_model});
    }
    EXPECT_TRUE(lumen_->LiveEncode(pool_, r.question, r.views, &r.enc).ok());
    EXPECT_EQ(r.enc.offsets.back(), kKeys);
    return r;
  }

  // Teacher-forced logits [dec.size(), vocab] over the request's memory.
  std::vector<float> Logits(const Request& r, const std::vector<int>& dec,
                            const T5IceformerSettings& ice) {
    const T5Model& m = lumen_->model();
    const int64_t n = dec.size();
    T5DecoderState state;
    EXPECT_TRUE(m.StartDecoder(pool_, r.enc.h.data(), kKeys, 1, n, n, &state, ice).ok());
    EXPECT_EQ(state.cross_iceformer(), ice.enabled);
    std::vector<float> logits(n * m.config().vocab_size);
    EXPECT_TRUE(m.DecoderStep(pool_, dec.data(), n, true, &state, logits.data()).ok());
    return logits;
  }

  GenerationResult Answer(const Request& r, int beams, const T5IceformerSettings& ice) {
    T5GenerationOptions o;
    o.max_new_tokens = 8;
    o.num_beams = beams;
    o.stop_at_eos = beams > 1;  // greedy: always 8 tokens, so every answer compares 8 ids
    o.iceformer = ice;
    auto result = lumen_->Answer(pool_, r.question, r.views, o);
    EXPECT_TRUE(result.ok()) << result.status().ToString();
    return result.ok() ? *result : GenerationResult{};
  }

  std::unique_ptr<LumenModel> lumen_;
  ThreadPool pool_{2};
};

// With k >= the number of keys nothing is dropped: greedy and beam answers and the logits equal
// the exact path.
TEST_F(T5IceformerTest, TopKCoveringAllKeysEqualsExact) {
  const Request r = MakeRequest(1);
  T5IceformerSettings all = Ice();
  all.options.top_k = static_cast<int>(kKeys);
  for (int beams : {1, 3}) {
    const GenerationResult exact = Answer(r, beams, T5IceformerSettings());
    const GenerationResult ice = Answer(r, beams, all);
    EXPECT_EQ(ice.tokens, exact.tokens) << beams << " beams";
    EXPECT_NEAR(ice.score, exact.score, 1e-5) << beams << " beams";
  }
  std::vector<int> dec = {0};
  const GenerationResult exact = Answer(r, 1, T5IceformerSettings());
  dec.insert(dec.end(), exact.tokens.begin(), exact.tokens.end());
  const auto want = Logits(r, dec, T5IceformerSettings());
  const auto got = Logits(r, dec, all);
  EXPECT_LE(testing::MaxAbsDiff(got.data(), want.data(), static_cast<long>(want.size())), 1e-5);
}

// At the default k (30 of 1152 keys) the decoder keeps the top of each cross-attention
// distribution only. Three search budgets: exhaustive (every key a candidate: the true top-30, so
// the error is the dropped attention mass alone), the default one (5 k = 150 candidates per
// query, tuned on structured keys) and 20 k = 600 candidates (the walk's former default). The
// keys of this random-weight model have none of the cluster structure of trained models' keys
// (on which the kernel's tests measure recall >= 0.99), so a random-projection search misses
// part of the top-30 here, the more the smaller its budget.
// Measured over 4 requests (greedy, 8 tokens each, teacher-forced on the exact path's answer):
//   exhaustive: answers equal on 4 of 4; logits' relative L2 error 0.002 .. 0.024
//   default:    answers equal on 0 of 4; logits' relative L2 error 0.48 .. 0.72
//   20 k:       answers equal on 0 of 4; logits' relative L2 error 0.27 .. 0.42
// Asserted: exhaustive at least 3 of 4 answers equal and every error < 0.1; default every error
// < 0.85; 20 k every error < 0.6.
TEST_F(T5IceformerTest, DefaultTopKStaysCloseToExact) {
  const int kRequests = 4;
  std::vector<Request> requests;
  std::vector<GenerationResult> exact;
  for (int i = 0; i < kRequests; ++i) {
    requests.push_back(MakeRequest(100 + i));
    exact.push_back(Answer(requests.back(), 1, T5IceformerSettings()));
  }
  struct Budget {
    const char* name;
    int candidates_per_k;
    double max_error;
  };
  const Budget budgets[] = {{"exhaustive", 1 << 20, 0.1},
                            {"default", IceformerOptions().candidates_per_k, 0.85},
                            {"20 k", 20, 0.6}};
  for (const Budget& budget : budgets) {
    T5IceformerSettings ice = Ice();
    ice.options.candidates_per_k = budget.candidates_per_k;
    EXPECT_EQ(IceformerTopK(ice.options, kKeys), 30);
    int equal = 0;
    double worst = 0.0;
    for (int i = 0; i < kRequests; ++i) {
      const Request& r = requests[i];
      const GenerationResult approx = Answer(r, 1, ice);
      equal += approx.tokens == exact[i].tokens;
      std::vector<int> dec = {0};
      dec.insert(dec.end(), exact[i].tokens.begin(), exact[i].tokens.end());
      const auto want_logits = Logits(r, dec, T5IceformerSettings());
      const auto got = Logits(r, dec, ice);
      const double rel = std::sqrt(
          testing::Nmse(got.data(), want_logits.data(), static_cast<long>(want_logits.size())));
      std::printf("[ t5 iceformer ] %s budget, request %d: answers %s, logits relative L2 %.4f\n",
                  budget.name, i, approx.tokens == exact[i].tokens ? "equal" : "differ", rel);
      worst = std::max(worst, rel);
      EXPECT_LT(rel, budget.max_error) << "request " << i << ", " << budget.name << " budget";
    }
    std::printf("[ t5 iceformer ] %s budget: %d of %d answers equal, max relative L2 %.4f\n",
                budget.name, equal, kRequests, worst);
    if (budget.candidates_per_k == 1 << 20) {
      EXPECT_GE(equal, kRequests - 1);
    }
  }
}

// The indices are built in StartDecoder, one per decoder layer, and reused by every step and
// every beam; no index below min_keys or when disabled.
TEST_F(T5IceformerTest, IndexBuiltOncePerRequestPerLayer) {
  const Request r = MakeRequest(2);
  const T5Model& m = lumen_->model();
  const int layers = m.config().num_decoder_layers;
  T5DecoderState state;
  T5GenerationOptions o;
  o.max_new_tokens = 6;
  o.num_beams = 3;
  o.stop_at_eos = false;
  o.iceformer = Ice();
  for (int request = 0; request < 2; ++request) {
    auto result = T5Generate(m, pool_, r.enc.h.data(), kKeys, o, &state);
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    EXPECT_TRUE(state.cross_iceformer());
    EXPECT_EQ(state.length(), 6);  // 6 steps (start token + 5 generated) ran on one build each
    EXPECT_EQ(state.cross_index_builds(), layers) << "request " << request;
  }
  // Teacher-forced steps one token at a time: still the builds of StartDecoder only.
  ASSERT_TRUE(m.StartDecoder(pool_, r.enc.h.data(), kKeys, 2, 5, 1, &state, Ice()).ok());
  std::vector<float> logits(2 * m.config().vocab_size);
  for (int step = 0; step < 5; ++step) {
    const int tokens[2] = {step + 2, step + 3};
    ASSERT_TRUE(m.DecoderStep(pool_, tokens, 1, false, &state, logits.data()).ok());
    m.ReorderCache({1, 0}, &state);
  }
  EXPECT_EQ(state.cross_index_builds(), layers);

  T5IceformerSettings high = Ice();
  high.min_keys = kKeys + 1;
  ASSERT_TRUE(m.StartDecoder(pool_, r.enc.h.data(), kKeys, 1, 4, 1, &state, high).ok());
  EXPECT_FALSE(state.cross_iceformer());
  EXPECT_EQ(state.cross_index_builds(), 0);
  ASSERT_TRUE(m.StartDecoder(pool_, r.enc.h.data(), kKeys, 1, 4, 1, &state).ok());
  EXPECT_FALSE(state.cross_iceformer());
  EXPECT_EQ(state.cross_index_builds(), 0);
}

}  // namespace
}  // namespace memoria
