// `memoria build-store` then `memoria inspect-store` on what it built: the corpus -> store tool
// through the real command line (a random-weight T5 dir, the LLaMA-2 SentencePiece vocabulary,
// the first SQuAD dev paragraphs).
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "base/testing.h"
#include "tools/random_t5_dir.h"

namespace memoria {
namespace {

using testing::RunShell;

TEST(BuildStoreCliTest, BuildsASquadStoreThatInspectStoreVerifies) {
  MEMORIA_REQUIRE_SHARED();
  const std::string memoria = testing::BuildDir() + "/tools/memoria";
  ASSERT_TRUE(std::filesystem::exists(memoria)) << "no " << memoria;
  const std::string root = testing::MakeTempDir("build-store-cli");
  T5Config c;
  c.vocab_size = 32000;
  c.d_model = 64;
  c.d_kv = 16;
  c.num_heads = 4;
  c.d_ff = 96;
  c.num_layers = 3;
  c.num_decoder_layers = 1;
  c.eos_token_id = 2;
  ASSERT_TRUE(WriteRandomT5ModelDir(c, 9, root + "/model").ok());

  const std::string build =
      memoria + " build-store --corpus " + testing::SharedPath("data/qa/squad-v1.1-dev-part1.json") +
      " --limit 6 --model " + root + "/model --tokenizer " +
      testing::SharedPath("models/llama2-tokenizer/tokenizer.model") + " --store " + root +
      "/store --codec pq:g=16,bits=8 --alpha 0.34 --batch 4 --max-tokens 100 --pq-iterations 4" +
      " --threads 2 --no-sync";
  auto [rc, out] = RunShell(build);
  ASSERT_EQ(rc, 0) << build << "\n" << out;
  std::printf("%s", out.c_str());
  EXPECT_NE(out.find("[build-store] sample 6/6 passages"), std::string::npos) << out;
  EXPECT_NE(out.find("[build-store] ingest 4/6 passages"), std::string::npos) << out;
  EXPECT_NE(out.find("[build-store] ingest 6/6 passages"), std::string::npos) << out;
  EXPECT_NE(out.find("layer split 2"), std::string::npos) << out;  // 3 layers, 1 live
  EXPECT_NE(out.find("pq distortion:"), std::string::npos) << out;

  auto [rc2, inspect] = RunShell(memoria + " inspect-store --store " + root + "/store --verify");
  ASSERT_EQ(rc2, 0) << inspect;
  std::printf("%s", inspect.c_str());
  EXPECT_NE(inspect.find("passages:           6 (memory records 6)"), std::string::npos) << inspect;
  EXPECT_NE(inspect.find("bytes per token:    16"), std::string::npos) << inspect;  // g = 16 ids of 8 bits
  EXPECT_NE(inspect.find("16.00x vs fp32"), std::string::npos) << inspect;        // 256 / 16
  EXPECT_NE(inspect.find("verify:             OK"), std::string::npos) << inspect;

  // Building into an existing store is refused, exit 1 with the reason.
  auto [rc3, again] = RunShell(build);
  EXPECT_EQ(rc3, 1) << again;
  EXPECT_NE(again.find("error:"), std::string::npos) << again;
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace memoria
