// LLaMA (4 layers, d 256, 8 heads, 2 KV heads, tied head) on seeded random weights against the
// independent PyTorch reference in tests/reference/llama_reference.py: logits at every position of
// a 2,048-token prompt within 1e-3; incremental decode equals full recompute.
#include <gtest/gtest.h>

#include "engine/llama_model.h"
#include "tests/test_helpers.h"

namespace memoria {
namespace {

TEST(LlamaReferenceTest, LongPromptLogitsMatchPyTorch) {
  const std::string dir = testing::MakeTempDir("memoria-llama-ref");
  const std::string cmd = testing::Python() + " " + testing::SourceDir() +
                          "/tests/reference/llama_reference.py --out " + dir +
                          " --layers 4 --hidden 256 --heads 8 --kv-heads 2 --ff 688 --vocab 1000"
                          " --prompt-len 2048 --seed 3 --tied";
  ASSERT_EQ(testing::RunCommand(cmd), 0) << cmd;
  auto prompt = testing::ReadJsonFile(dir + "/prompt_ids.json").get<std::vector<int>>();
  auto expected = testing::ReadNpyFloat32(dir + "/logits.npy");
  ASSERT_EQ(expected.shape, (std::vector<long>{2048, 1000}));

  auto model = LlamaModel::Load(dir);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ThreadPool pool(2);
  LlamaSession session(*model, &pool);
  std::vector<float> logits(2048 * 1000);
  ASSERT_TRUE(session.Forward(prompt, 2048, logits.data()).ok());
  float worst = 0;
  int worst_row = 0;
  for (int r = 0; r < 2048; ++r) {
    float diff = testing::MaxAbsDiff(&logits[r * 1000], &expected.data[r * 1000], 1000);
    if (diff > worst) worst = diff, worst_row = r;
  }
  EXPECT_LE(worst, 1e-3f) << "worst row " << worst_row;

  // Incremental decode of the last 16 positions equals the full pass.
  LlamaSession inc(*model, &pool);
  std::vector<float> row(1000);
  ASSERT_TRUE(inc.Forward(prompt.data(), 2032, 1, row.data()).ok());
  for (int p = 2032; p < 2048; ++p) {
    ASSERT_TRUE(inc.Forward(&prompt[p], 1, 1, row.data()).ok());
    EXPECT_LE(testing::MaxAbsDiff(row.data(), &logits[p * 1000], 1000), 1e-4f) << "position " << p;
  }
}

}  // namespace
}  // namespace memoria
