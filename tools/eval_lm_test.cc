// eval-lm on a seeded random-weight LLaMA written by the independent PyTorch reference
// (tests/reference/llama_reference.py): the exact perplexity equals the one computed from the
// reference's own logits; IceFormer keeping every key equals exact (agreement 1, KL ~ 0); a tiny
// k moves the distributions (KL > 0); windows, score_from and the errors; the command line.
#include "tools/eval_lm.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "base/testing.h"
#include "tests/test_helpers.h"

namespace memoria {
namespace {

constexpr int kVocab = 200;
constexpr int kPromptLen = 256;

class EvalLmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::MakeTempDir("memoria-eval-lm"));
    const std::string cmd = testing::Python() + " " + testing::SourceDir() +
                            "/tests/reference/llama_reference.py --out " + *dir_ +
                            " --layers 2 --hidden 64 --heads 4 --kv-heads 2 --ff 128 --vocab " +
                            std::to_string(kVocab) + " --prompt-len " + std::to_string(kPromptLen) +
                            " --seed 5 --tied";
    status_ = testing::RunCommand(cmd);
  }
  static void TearDownTestSuite() { delete dir_; }

  void SetUp() override {
    ASSERT_EQ(status_, 0) << "llama_reference.py failed";
    ids_ = testing::ReadJsonFile(*dir_ + "/prompt_ids.json").get<std::vector<int>>();
    ASSERT_EQ(static_cast<int>(ids_.size()), kPromptLen);
  }

  EvalLmOptions Options() const {
    EvalLmOptions o;
    o.model_dir = *dir_;
    o.ids = ids_;
    o.context = kPromptLen;
    o.windows = 1;
    o.threads = 2;
    return o;
  }

  static LmAttentionSetting Iceformer(int top_k, int64_t exact_up_to) {
    LmAttentionSetting s;
    s.name = "iceformer k=" + std::to_string(top_k);
    s.iceformer.enabled = true;
    s.iceformer.min_kv_len = 0;
    s.iceformer.attention.top_k = top_k;
    s.iceformer.attention.exact_up_to = exact_up_to;
    return s;
  }

  // Mean next-token NLL over positions [from, n - 1) from the reference's logits.
  double ReferenceNll(int64_t from) const {
    const auto logits = testing::ReadNpyFloat32(*dir_ + "/logits.npy");
    double sum = 0;
    for (int64_t t = from; t < kPromptLen - 1; ++t) {
      const float* row = &logits.data[t * kVocab];
      double m = row[0], z = 0;
      for (int v = 0; v < kVocab; ++v) m = std::max(m, double{row[v]});
      for (int v = 0; v < kVocab; ++v) z += std::exp(double{row[v]} - m);
      sum -= double{row[ids_[t + 1]]} - m - std::log(z);
    }
    return sum / double(kPromptLen - 1 - from);
  }

  static std::string* dir_;
  static int status_;
  std::vector<int> ids_;
};
std::string* EvalLmTest::dir_ = nullptr;
int EvalLmTest::status_ = -1;

TEST_F(EvalLmTest, ExactPerplexityEqualsReferenceLogits) {
  for (int64_t from : {0, 100}) {
    EvalLmOptions o = Options();
    o.score_from = from;
    EvalLmReport r;
    ASSERT_TRUE(EvaluateLanguageModel(o, &r).ok());
    ASSERT_EQ(r.results.size(), 1u);
    EXPECT_EQ(r.scored_positions, kPromptLen - 1 - from);
    EXPECT_NEAR(r.results[0].nll, ReferenceNll(from), 1e-4) << "score_from " << from;
    EXPECT_NEAR(r.results[0].perplexity, std::exp(r.results[0].nll), 1e-9);
    EXPECT_EQ(r.results[0].agreement, 1.0);
    EXPECT_EQ(r.results[0].kl, 0.0);
    EXPECT_GT(r.results[0].attention_seconds, 0.0);
  }
}

TEST_F(EvalLmTest, IceformerKeepingEveryKeyEqualsExactAndSmallKDiffers) {
  EvalLmOptions o = Options();
  o.settings = {Iceformer(kPromptLen, 0), Iceformer(2, 8)};
  EvalLmReport r;
  ASSERT_TRUE(EvaluateLanguageModel(o, &r).ok());
  ASSERT_EQ(r.results.size(), 3u);
  EXPECT_EQ(r.results[1].top_k, kPromptLen);
  EXPECT_EQ(r.results[1].layers, (std::vector<int>{1}));  // the upper half of 2 layers
  EXPECT_EQ(r.results[1].agreement, 1.0);
  EXPECT_LT(r.results[1].kl, 1e-8);
  EXPECT_NEAR(r.results[1].nll, r.results[0].nll, 1e-5);
  EXPECT_EQ(r.results[2].top_k, 2);
  EXPECT_GT(r.results[2].kl, 1e-6);
  EXPECT_NE(r.results[2].nll, r.results[0].nll);
}

TEST_F(EvalLmTest, WindowsCoverTheStreamAndPrefillChunksDoNotChangeExact) {
  EvalLmOptions one = Options();
  one.context = 64;
  one.windows = 3;
  EvalLmReport a, b;
  ASSERT_TRUE(EvaluateLanguageModel(one, &a).ok());
  EXPECT_EQ(a.scored_positions, 3 * 63);
  one.prefill_chunk = 16;
  ASSERT_TRUE(EvaluateLanguageModel(one, &b).ok());
  EXPECT_NEAR(a.results[0].nll, b.results[0].nll, 1e-5);
}

TEST_F(EvalLmTest, Errors) {
  EvalLmReport r;
  EvalLmOptions o = Options();
  o.context = kPromptLen + 1;
  Status st = EvaluateLanguageModel(o, &r);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("256 tokens, fewer than one window of 257"), std::string::npos) << st.ToString();
  o = Options();
  o.score_from = kPromptLen - 1;
  st = EvaluateLanguageModel(o, &r);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("[0, 255), got 255"), std::string::npos) << st.ToString();
  o = Options();
  o.ids[10] = kVocab;
  st = EvaluateLanguageModel(o, &r);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  o = Options();
  o.model_dir = *dir_ + "/missing";
  EXPECT_FALSE(EvaluateLanguageModel(o, &r).ok());
}

TEST_F(EvalLmTest, CommandLineWritesTheReport) {
  const std::string report = *dir_ + "/report.json";
  const std::string memoria = testing::BuildDir() + "/tools/memoria";
  auto [code, out] = testing::RunShell(memoria + " eval-lm --model " + *dir_ + " --ids " + *dir_ +
                                       "/prompt_ids.json --context 128 --windows 2 --threads 2"
                                       " --iceformer-k 4,0 --iceformer-exact-up-to 16 --report " +
                                       report + " 2>&1");
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("iceformer k=4"), std::string::npos) << out;
  EXPECT_NE(out.find("iceformer k(n)"), std::string::npos) << out;
  const auto j = testing::ReadJsonFile(report);
  ASSERT_EQ(j["results"].size(), 3u);
  EXPECT_EQ(j["scored_positions"], 2 * 127);
  EXPECT_EQ(j["results"][1]["top_k"], 4);
  EXPECT_GT(j["results"][1]["kl"].get<double>(), 0.0);

  const std::string all_report = *dir_ + "/report_all.json";
  auto [all_code, all_out] = testing::RunShell(memoria + " eval-lm --model " + *dir_ + " --ids " + *dir_ +
                                               "/prompt_ids.json --context 64 --windows 1 --threads 2"
                                               " --iceformer-k 4 --iceformer-layers all --report " +
                                               all_report + " 2>&1");
  ASSERT_EQ(all_code, 0) << all_out;
  EXPECT_EQ(testing::ReadJsonFile(all_report)["results"][1]["layers"], nlohmann::json::array({0, 1}));

  auto [bad, msg] = testing::RunShell(memoria + " eval-lm --model " + *dir_ + " --ids " + *dir_ +
                                      "/prompt_ids.json --iceformer-layers 1 2>&1");
  EXPECT_NE(bad, 0);
  EXPECT_NE(msg.find("need --iceformer-k"), std::string::npos) << msg;
}

}  // namespace
}  // namespace memoria
