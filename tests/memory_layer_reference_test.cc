// Product-key memory layers on seeded random weights against the independent PyTorch reference in
// tests/reference/memory_layer_reference.py: every memory layer's output within 1e-4, for
// Memory+ (shared table, swilu, gate), a plain lookup, a value projection with per-layer tables,
// and a default-like shape (heads 4, knn 32) with many tokens.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "engine/llama_model.h"
#include "engine/memory_layer.h"
#include "tests/test_helpers.h"

namespace memoria {
namespace {

struct RefCase {
  std::string name;
  std::string flags;  // memory_layer_reference.py options
};

std::ostream& operator<<(std::ostream& os, const RefCase& c) { return os << c.name; }

class MemoryLayerReferenceTest : public ::testing::TestWithParam<RefCase> {};

TEST_P(MemoryLayerReferenceTest, LayerOutputMatchesPyTorch) {
  const std::string dir = testing::MakeTempDir("memoria-memory-ref");
  const std::string cmd = testing::Python() + " " + testing::SourceDir() +
                          "/tests/reference/memory_layer_reference.py --out " + dir + " " +
                          GetParam().flags;
  ASSERT_EQ(testing::RunCommand(cmd), 0) << cmd;

  auto model_dir = ModelDir::Open(dir);
  ASSERT_TRUE(model_dir.ok()) << model_dir.status().ToString();
  auto config = ParseMemoryConfig((*model_dir)->config());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ASSERT_TRUE(config->enabled());
  std::shared_ptr<const SharedValues> shared;
  if (config->share_values) {
    auto values = SharedValues::Load(**model_dir, *config);
    ASSERT_TRUE(values.ok()) << values.status().ToString();
    shared = *values;
  }
  const testing::NpyArray x = testing::ReadNpyFloat32(dir + "/x.npy");
  ASSERT_EQ(x.shape.size(), 2u);
  ASSERT_EQ(x.shape[1], config->d);
  const int64_t tokens = x.shape[0];

  ThreadPool pool(2);
  MemoryLayer::Scratch scratch;
  for (int block : config->layers) {
    auto layer = MemoryLayer::Load(**model_dir, block, *config, shared);
    ASSERT_TRUE(layer.ok()) << layer.status().ToString();
    const testing::NpyArray want =
        testing::ReadNpyFloat32(dir + "/out_" + std::to_string(block) + ".npy");
    ASSERT_EQ(want.data.size(), x.data.size());
    std::vector<float> out(x.data.size());
    (*layer)->Forward(pool, x.data.data(), tokens, out.data(), &scratch);
    EXPECT_LE(testing::MaxAbsDiff(out.data(), want.data.data(), out.size()), 1e-4f)
        << "block " << block;
    // Decode path (one token per call, column-split value reads) gives the same rows.
    for (int64_t t = 0; t < tokens; t += 5) {
      std::vector<float> row(config->d);
      (*layer)->Forward(pool, x.data.data() + t * config->d, 1, row.data(), &scratch);
      EXPECT_LE(testing::MaxAbsDiff(row.data(), want.data.data() + t * config->d, config->d), 1e-4f)
          << "block " << block << " token " << t;
    }
  }
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, MemoryLayerReferenceTest,
    ::testing::Values(
        RefCase{"MemoryPlusSharedGated", "--layers 1,3 --gated --seed 1"},
        RefCase{"PlainLookup", "--layers 0 --no-swilu --no-query-bias --n-keys 24 --knn 6 --seed 2"},
        RefCase{"ValueProjOwnTables",
                "--layers 0,2 --no-swilu --v-dim 40 --no-share-values --no-proj-bias --heads 3 "
                "--seed 3"},
        RefCase{"DefaultLikeShape",
                "--layers 2 --hidden 128 --n-keys 64 --heads 4 --knn 32 --k-dim 64 --tokens 200 "
                "--gated --seed 4"}),
    [](const ::testing::TestParamInfo<RefCase>& info) { return info.param.name; });

// Whole-model logits of a tiny LLaMA whose blocks 1 and 3 are memory layers, in prefill and in
// token-by-token decode.
TEST(MemoryLlamaReferenceTest, LogitsMatchPyTorch) {
  const std::string dir = testing::MakeTempDir("memoria-memory-llama-ref");
  const std::string cmd = testing::Python() + " " + testing::SourceDir() +
                          "/tests/reference/memory_layer_reference.py --out " + dir +
                          " --full-model --layers 1,3 --gated --prompt-len 24 --seed 5";
  ASSERT_EQ(testing::RunCommand(cmd), 0) << cmd;
  auto prompt = testing::ReadJsonFile(dir + "/prompt_ids.json").get<std::vector<int>>();
  const testing::NpyArray expected = testing::ReadNpyFloat32(dir + "/logits.npy");
  ASSERT_EQ(expected.shape.size(), 2u);
  const int64_t n = expected.shape[0], vocab = expected.shape[1];

  auto model = LlamaModel::Load(dir);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ThreadPool pool(2);
  LlamaSession session(*model, &pool);
  std::vector<float> logits(n * vocab);
  ASSERT_TRUE(session.Forward(prompt, n, logits.data()).ok());
  EXPECT_LE(testing::MaxAbsDiff(logits.data(), expected.data.data(), logits.size()), 1e-4f);

  // Decode one token at a time from the middle of the prompt: same logits.
  LlamaSession inc(*model, &pool);
  std::vector<float> row(vocab);
  ASSERT_TRUE(inc.Forward(prompt.data(), n / 2, 1, row.data()).ok());
  for (int64_t p = n / 2; p < n; ++p) {
    ASSERT_TRUE(inc.Forward(&prompt[p], 1, 1, row.data()).ok());
    EXPECT_LE(testing::MaxAbsDiff(row.data(), &expected.data[p * vocab], vocab), 1e-4f)
        << "position " << p;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace memoria
