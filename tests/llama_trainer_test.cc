// tools/train/train_llama.py selfcheck trains a tiny LLaMA for a few seconds on a repetitive token
// stream (asserting that its loss falls), exports it, and records the PyTorch perplexity of fixed
// held-out windows; the engine, through `memoria eval-lm`'s library, must compute the same
// perplexity on the same windows: the exported weights mean in the engine what they meant in
// training. MEMORIA_LLAMA_CHECK_DIRS (colon-separated export dirs with pytorch_perplexity.json)
// checks real exports the same way.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "base/testing.h"
#include "tests/test_helpers.h"
#include "tools/eval_lm.h"

namespace memoria {
namespace {

void CheckExport(const std::string& dir) {
  SCOPED_TRACE(dir);
  const auto expected = testing::ReadJsonFile(dir + "/pytorch_perplexity.json");
  EvalLmOptions o;
  o.model_dir = dir;
  o.ids = testing::ReadJsonFile(dir + "/heldout_ids.json").get<std::vector<int>>();
  o.context = expected["context"].get<int64_t>();
  o.windows = expected["windows"].get<int64_t>();
  o.threads = 2;
  EvalLmReport r;
  const Status st = EvaluateLanguageModel(o, &r);
  ASSERT_TRUE(st.ok()) << st.ToString();
  const double want = expected["perplexity"].get<double>();
  EXPECT_NEAR(r.results[0].perplexity, want, 1e-4 * want);
}

TEST(LlamaTrainerTest, EngineComputesTheTrainedModelsPerplexity) {
  const std::string dir = testing::MakeTempDir("memoria-llama-trainer");
  const std::string script = testing::SourceDir() + "/tools/train/train_llama.py";
  const auto [rc, output] = testing::RunShell(testing::Python() + " " + script + " selfcheck --out " + dir + " 2>&1");
  ASSERT_EQ(rc, 0) << output;
  CheckExport(dir + "/model");
  if (const char* extra = std::getenv("MEMORIA_LLAMA_CHECK_DIRS")) {
    std::stringstream ss(extra);
    for (std::string item; std::getline(ss, item, ':');) {
      if (!item.empty()) CheckExport(item);
    }
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace memoria
