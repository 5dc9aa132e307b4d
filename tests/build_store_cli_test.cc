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

  // Extra codecs: every passage also stored as BTR bits and bf16 rows, fitted on the same sample.
  std::string multi = build + " --extra-codecs 'btr;none:bf16'";
  multi.replace(multi.find(root + "/store"), root.size() + 6, root + "/multi");
  auto [rc4, built] = RunShell(multi);
  ASSERT_EQ(rc4, 0) << multi << "\n" << built;
  EXPECT_NE(built.find("codec pq(d=64, g=16, C=256) (also btr(d=64"), std::string::npos) << built;
  auto [rc5, multi_inspect] = RunShell(memoria + " inspect-store --store " + root + "/multi --verify");
  ASSERT_EQ(rc5, 0) << multi_inspect;
  std::printf("%s", multi_inspect.c_str());
  // BTR: d / 8 sign bytes + a bf16 scale = 10 bytes; bf16 rows: 2 d = 128 bytes.
  EXPECT_NE(multi_inspect.find("extra codec 1:      btr(d=64"), std::string::npos) << multi_inspect;
  EXPECT_NE(multi_inspect.find("10 bytes per token (ceil(d / 8) + scale bytes = 8 + 2), 25.60x vs fp32"),
            std::string::npos) << multi_inspect;
  EXPECT_NE(multi_inspect.find("extra codec 2:      none(d=64, bf16), 128 bytes per token"), std::string::npos)
      << multi_inspect;
  EXPECT_NE(multi_inspect.find("verify:             OK"), std::string::npos) << multi_inspect;

  // BTR with offline token merging: a fifth of each passage's tokens merged, the matching stored;
  // the ratio is measured and beats plain BTR's 25.6x.
  std::string merged = build;
  merged.replace(merged.find("pq:g=16,bits=8"), 14, "btr:merge=0.2");
  merged.replace(merged.find(root + "/store"), root.size() + 6, root + "/merged");
  auto [rc6, merged_built] = RunShell(merged);
  ASSERT_EQ(rc6, 0) << merged << "\n" << merged_built;
  auto [rc7, merged_inspect] = RunShell(memoria + " inspect-store --store " + root + "/merged --verify");
  ASSERT_EQ(rc7, 0) << merged_inspect;
  std::printf("%s", merged_inspect.c_str());
  EXPECT_NE(merged_inspect.find("codec:              btr(d=64, scale=bf16, merge=0.2)"), std::string::npos)
      << merged_inspect;
  const size_t at = merged_inspect.find("measured:           ");
  ASSERT_NE(at, std::string::npos) << merged_inspect;
  const double measured = std::stod(merged_inspect.substr(at + 20));
  EXPECT_GT(measured, 8.0) << merged_inspect;   // 4/5 of the tokens at 10 bytes, plus the matching
  EXPECT_LT(measured, 10.0) << merged_inspect;  // below plain BTR's 10 bytes per token
  EXPECT_NE(merged_inspect.find("x vs bf16 (128 B/token), measured"), std::string::npos) << merged_inspect;
  EXPECT_NE(merged_inspect.find("verify:             OK"), std::string::npos) << merged_inspect;
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace memoria
