// The real trained stories260K model (llama2.c checkpoint in ../shared/models), converted to our
// layout by the converter and run by the engine: greedy decoding from BOS reproduces the known
// continuation, and the first step's top-5 ids and logits match within 1e-3
// (../shared/models/README.md). The same through the `memoria` command-line program.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <string>
#include <tuple>

#include "engine/llama_generator.h"
#include "engine/llama_model.h"
#include "engine/tokenizer.h"
#include "tests/test_helpers.h"
#include "tools/llama2c_converter.h"

namespace memoria {
namespace {

constexpr char kKnownContinuation[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, r";

class Stories260KTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::SharedDirAvailable()) return;
    dir_ = new std::string(testing::MakeTempDir("memoria-stories260k"));
    convert_status_ = new Status(ConvertLlama2c(testing::SharedPath("models/stories260K/stories260K.bin"),
                                                testing::SharedPath("models/stories260K/tok512.bin"), *dir_));
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete convert_status_;
  }
  static std::string* dir_;
  static Status* convert_status_;
};
std::string* Stories260KTest::dir_ = nullptr;
Status* Stories260KTest::convert_status_ = nullptr;

TEST_F(Stories260KTest, GreedyFromBosReproducesTheKnownStory) {
  MEMORIA_REQUIRE_SHARED();
  ASSERT_TRUE(convert_status_->ok()) << convert_status_->ToString();
  auto model = LlamaModel::Load(*dir_);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto tokenizer = Tokenizer::Open(*dir_ + "/tokenizer.model");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  ASSERT_EQ((*tokenizer)->vocab_size(), 512);

  ThreadPool pool(2);
  LlamaSession session(*model, &pool);
  std::vector<float> logits(512);
  ASSERT_TRUE(session.Forward(std::vector<int>{1}, 1, logits.data()).ok());
  std::vector<int> order(512);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + 5, order.end(),
                    [&](int a, int b) { return logits[a] > logits[b]; });
  const std::vector<int> top5_ids = {403, 385, 410, 317, 407};
  const std::vector<float> top5_logits = {17.0235f, 15.4062f, 13.1083f, 12.7692f, 12.4181f};
  EXPECT_EQ(std::vector<int>(order.begin(), order.begin() + 5), top5_ids);
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(logits[top5_ids[i]], top5_logits[i], 1e-3) << "rank " << i;

  LlamaSession fresh(*model, &pool);
  CompletionOptions opt;
  opt.max_new_tokens = 40;
  auto result = Generate(fresh, tokenizer->get(), {1}, opt);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  std::string text = result->text;
  text.erase(0, text.find_first_not_of(' '));
  EXPECT_EQ(text.substr(0, sizeof(kKnownContinuation) - 1), kKnownContinuation) << text;
}

TEST_F(Stories260KTest, StopStringCutsTheOutput) {
  MEMORIA_REQUIRE_SHARED();
  ASSERT_TRUE(convert_status_->ok()) << convert_status_->ToString();
  auto model = LlamaModel::Load(*dir_);
  auto tokenizer = Tokenizer::Open(*dir_ + "/tokenizer.model");
  ASSERT_TRUE(model.ok() && tokenizer.ok());
  ThreadPool pool(2);
  LlamaSession session(*model, &pool);
  CompletionOptions opt;
  opt.max_new_tokens = 100;
  opt.stop_strings = {"Lily"};
  auto result = Generate(session, tokenizer->get(), {1}, opt);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->stop_reason, StopReason::kStopString);
  std::string text = result->text;
  text.erase(0, text.find_first_not_of(' '));
  EXPECT_EQ(text, "Once upon a time, there was a little girl named ");
}

TEST_F(Stories260KTest, CommandLineConvertsAndCompletesAPrompt) {
  MEMORIA_REQUIRE_SHARED();
  const std::string memoria = testing::BuildDir() + "/tools/memoria";
  const std::string out_dir = testing::MakeTempDir("memoria-cli");
  auto [status, out] = testing::RunShell(memoria + " convert-llama2c --checkpoint " +
                                         testing::SharedPath("models/stories260K/stories260K.bin") +
                                         " --tokenizer " + testing::SharedPath("models/stories260K/tok512.bin") +
                                         " --out " + out_dir);
  ASSERT_EQ(status, 0) << out;
  std::tie(status, out) = testing::RunShell(memoria + " generate --model " + out_dir +
                                            " --prompt 'Once upon a time' --max-new-tokens 20 --threads 2"
                                            " --log-level error");
  ASSERT_EQ(status, 0) << out;
  EXPECT_EQ(out.rfind("Once upon a time, there was a little girl named Lily.", 0), 0u) << out;

  // Bad input: a clear message and a non-zero exit, no crash.
  std::string err;
  std::tie(status, err) = testing::RunShell(memoria + " generate --model " + out_dir +
                                            " --prompt hi --top-p 3 --log-level error");
  EXPECT_NE(status, 0);
  EXPECT_NE(err.find("top_p must be in (0, 1], got 3"), std::string::npos) << err;
  std::tie(status, err) = testing::RunShell(memoria + " generate --model /nonexistent/dir --prompt hi");
  EXPECT_NE(status, 0);
  EXPECT_NE(err.find("/nonexistent/dir"), std::string::npos) << err;
}

}  // namespace
}  // namespace memoria
