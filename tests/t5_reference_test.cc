// The T5 engine against an independent PyTorch implementation (tests/reference/t5_reference.py)
// on seeded random weights, for both families: original T5 (ReLU FFN, tied head with the
// d_model^-0.5 rescale) and T5 v1.1 (gated-GELU, untied head). Checks encoder output, teacher-
// forced logits, greedy ids and beam search (ids and scores) with max abs tolerance 1e-3.
//
// Needs Debian's python3-torch at /usr/bin/python3; skipped when it is missing (unless CI=true).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/testing.h"
#include "engine/t5_model.h"

namespace memoria {
namespace {

constexpr char kPython[] = "/usr/bin/python3";

std::string ScriptPath() {
  // From the source dir setting, as every other test: __FILE__ is whatever path the compiler was
  // given (ccache's base_dir, for one, makes it relative to the build directory).
  return testing::SourceDir() + "/tests/reference/t5_reference.py";
}

bool TorchAvailable() {
  const std::string cmd = std::string(kPython) + " -c 'import torch, numpy' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

class T5ReferenceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(T5ReferenceTest, MatchesPyTorch) {
  if (!TorchAvailable()) {
    if (testing::InCi()) GTEST_FAIL() << kPython << " with torch and numpy is required";
    GTEST_SKIP() << kPython << " with torch and numpy not available";
  }
  const std::string family = GetParam();
  const std::string dir = testing::MakeTempDir("memoria-t5-ref-" + family);
  const std::string cmd =
      std::string(kPython) + " " + ScriptPath() + " --out " + dir + " --family " + family;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  auto model = T5Model::Load(dir);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const T5Config& c = (*model)->config();
  EXPECT_EQ(c.tie_word_embeddings, family == "orig");
  EXPECT_EQ(c.gated_ffn, family == "v11");
  std::ifstream f(dir + "/cases.json");
  const nlohmann::json cases = nlohmann::json::parse(f);
  ThreadPool pool(2);

  const auto enc_ids = cases["encoder_input_ids"].get<std::vector<int>>();
  auto enc = (*model)->Encode(pool, enc_ids);
  ASSERT_TRUE(enc.ok());
  auto ref_enc = testing::ReadNpyFloat32(dir + "/encoder_output.npy");
  ASSERT_EQ(ref_enc.data.size(), enc->size());
  const float enc_diff = testing::MaxAbsDiff(enc->data(), ref_enc.data.data(), enc->size());
  EXPECT_LE(enc_diff, 1e-3);
  const int64_t enc_len = static_cast<int64_t>(enc_ids.size());

  const auto dec_ids = cases["decoder_input_ids"].get<std::vector<int>>();
  const int64_t n = static_cast<int64_t>(dec_ids.size()), V = c.vocab_size;
  T5DecoderState state;
  ASSERT_TRUE((*model)->StartDecoder(pool, enc->data(), enc_len, 1, n, n, &state).ok());
  std::vector<float> logits(n * V);
  ASSERT_TRUE((*model)->DecoderStep(pool, dec_ids.data(), n, true, &state, logits.data()).ok());
  auto ref_logits = testing::ReadNpyFloat32(dir + "/decoder_logits.npy");
  ASSERT_EQ(ref_logits.data.size(), logits.size());
  const float logit_diff =
      testing::MaxAbsDiff(logits.data(), ref_logits.data.data(), logits.size());
  EXPECT_LE(logit_diff, 1e-3);
  std::printf("%s: encoder max abs diff %.3g, decoder logits %.3g\n", family.c_str(), enc_diff,
              logit_diff);

  T5GenerationOptions greedy;
  greedy.max_new_tokens = static_cast<int>(cases["greedy_ids"].size());
  greedy.stop_at_eos = false;  // the reference generates a fixed number of tokens
  auto g = T5Generate(**model, pool, enc->data(), enc_len, greedy, &state);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->tokens, cases["greedy_ids"].get<std::vector<int>>());

  for (const auto& b : cases["beams"]) {
    T5GenerationOptions o;
    o.num_beams = b["num_beams"];
    o.length_penalty = b["length_penalty"];
    o.max_new_tokens = b["max_new_tokens"];
    auto r = T5Generate(**model, pool, enc->data(), enc_len, o, &state);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->tokens, b["ids"].get<std::vector<int>>()) << b.dump();
    EXPECT_NEAR(r->score, b["score"].get<double>(), 1e-3) << b.dump();
  }
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Families, T5ReferenceTest, ::testing::Values("orig", "v11"));

}  // namespace
}  // namespace memoria
