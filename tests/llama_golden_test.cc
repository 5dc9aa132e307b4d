// LLaMA with grouped-query attention against the golden outputs in
// ../shared/golden/llama-gqa-tiny (computed by llama.cpp, cross-checked with PyTorch): logits of
// the last 5 prompt positions and of 9 greedy steps within 1e-4, identical greedy ids.
#include <gtest/gtest.h>

#include "engine/llama_generator.h"
#include "engine/llama_model.h"
#include "tests/test_helpers.h"

namespace memoria {
namespace {

class LlamaGoldenTest : public ::testing::TestWithParam<int> {};

TEST_P(LlamaGoldenTest, LogitsAndGreedyIdsMatch) {
  MEMORIA_REQUIRE_SHARED();
  const int prefill_chunk = GetParam();
  const std::string dir = testing::SharedPath("golden/llama-gqa-tiny");
  auto cases = testing::ReadJsonFile(dir + "/cases.json");
  std::vector<int> prompt = cases["prompt_ids"].get<std::vector<int>>();
  std::vector<int> greedy = cases["greedy_ids"].get<std::vector<int>>();
  auto last5 = testing::ReadNpyFloat32(dir + "/last5_logits.npy");
  auto steps = testing::ReadNpyFloat32(dir + "/greedy_step_logits.npy");
  ASSERT_EQ(last5.shape, (std::vector<long>{5, 32000}));
  ASSERT_EQ(steps.shape, (std::vector<long>{9, 32000}));

  auto model = LlamaModel::Load(dir);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const int64_t V = (*model)->config().vocab_size;
  ThreadPool pool(2);
  LlamaSession session(*model, &pool, prefill_chunk);

  std::vector<float> logits(5 * V);
  ASSERT_TRUE(session.Forward(prompt, 5, logits.data()).ok());
  EXPECT_LE(testing::MaxAbsDiff(logits.data(), last5.data.data(), 5 * V), 1e-4f);

  std::vector<int> ours = {Argmax(&logits[4 * V], V)};
  std::vector<float> row(V);
  for (int step = 0; step < 9; ++step) {
    const int id = ours.back();
    ASSERT_TRUE(session.Forward(&id, 1, 1, row.data()).ok());
    EXPECT_LE(testing::MaxAbsDiff(row.data(), &steps.data[step * V], V), 1e-4f) << "greedy step " << step;
    ours.push_back(Argmax(row.data(), V));
  }
  EXPECT_EQ(ours, greedy);

  // The same through the generator.
  LlamaSession fresh(*model, &pool, prefill_chunk);
  CompletionOptions opt;
  opt.max_new_tokens = 10;
  opt.stop_at_eos = false;
  auto result = Generate(fresh, nullptr, prompt, opt);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->output_ids, greedy);
}

// Whole prompt in one step, and in chunks of 37 tokens (as llama.cpp's own cross-check).
INSTANTIATE_TEST_SUITE_P(PrefillChunks, LlamaGoldenTest, ::testing::Values(512, 37));

}  // namespace
}  // namespace memoria
