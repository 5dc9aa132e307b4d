// `memoria inspect-store` on a real store: bytes per token, compression ratios, verification.
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

#include "base/testing.h"
#include "storage/bm25_postings.h"
#include "storage/passage_store.h"

namespace memoria {
namespace {

using testing::RunShell;

std::string MemoriaBinary() { return testing::BuildDir() + "/tools/memoria"; }

TEST(InspectStoreTest, PrintsBytesPerTokenAndRatiosAndFindsCorruption) {
  ASSERT_TRUE(std::filesystem::exists(MemoriaBinary())) << "no " << MemoriaBinary();
  const std::string dir = testing::MakeTempDir("inspect-store");
  const int64_t d = 64;
  StoreIdentity id;
  id.model_fingerprint = 0xabcdef;
  id.layer_split = 2;
  id.codec = *CodecSpec::Parse("pq:g=8,bits=8", d);
  std::mt19937_64 rng(1);
  std::normal_distribution<float> g;
  std::vector<float> x(400 * d);
  for (auto& v : x) v = g(rng);
  ThreadPool pool(2);
  {
    auto codec = std::move(CreateCodec(id.codec)).value();
    CodecTrainOptions opt;
    opt.pq.iterations = 2;
    ASSERT_TRUE(codec->Train(pool, 400, x.data(), d, opt, nullptr).ok());
    std::unique_ptr<PassageStore> store;
    ASSERT_TRUE(PassageStore::Create({}, dir, id, *codec, &store).ok());
    std::vector<PassageInput> batch;
    for (int i = 0; i < 4; ++i) {
      PassageInput p;
      p.id = "p" + std::to_string(i);
      p.num_tokens = 100;
      p.memory = x.data() + i * 100 * d;
      batch.push_back(p);
    }
    ASSERT_TRUE(store->Ingest(pool, batch).ok());
  }
  auto [code, out] = RunShell(MemoriaBinary() + " inspect-store --store " + dir + " --verify");
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("pq(d=64, g=8, C=256)"), std::string::npos) << out;
  EXPECT_NE(out.find("tokens:             400"), std::string::npos) << out;
  // g * ceil(log2 C) / 8 = 8 bytes per token: 32x smaller than fp32 (256 B), 16x than bf16.
  EXPECT_NE(out.find("bytes per token:    8 "), std::string::npos) << out;
  EXPECT_NE(out.find("32.00x vs fp32 (256 B/token), 16.00x vs bf16 (128 B/token)"), std::string::npos) << out;
  EXPECT_NE(out.find("verify:             OK"), std::string::npos) << out;
  // 4 term records (no words: these passages have no text) and the totals.
  EXPECT_NE(out.find("retrieval index:    bm25, 4 passages, 5 records"), std::string::npos) << out;

  {
    std::unique_ptr<PassageStore> store;
    ASSERT_TRUE(PassageStore::Open({}, dir, &id, &store).ok());
    std::string v = *store->GetRawMemoryValueForTest("p2");
    v[40] ^= 1;
    ASSERT_TRUE(store->PutRawMemoryValueForTest("p2", v).ok());
    ASSERT_TRUE(store->PutRawIndexValueForTest(Bm25DocKey("p1"), "junk").ok());
  }
  std::tie(code, out) = RunShell(MemoriaBinary() + " inspect-store --store " + dir + " --verify");
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("passage 'p2' memory: checksum mismatch"), std::string::npos) << out;
  EXPECT_NE(out.find("2 corrupt value(s)"), std::string::npos) << out;
  EXPECT_NE(out.find("passage 'p1' retrieval-index terms: value is 4 bytes"), std::string::npos) << out;
  // The index is rebuilt from the text records; the damaged memory value stays damaged.
  std::tie(code, out) =
      RunShell(MemoriaBinary() + " inspect-store --store " + dir + " --rebuild-index --verify");
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("rebuilt the retrieval index: 4 passages indexed, 0 corrupt text records left out"),
            std::string::npos) << out;
  EXPECT_NE(out.find("1 corrupt value(s)"), std::string::npos) << out;
  EXPECT_EQ(out.find("retrieval-index terms"), std::string::npos) << out;

  std::tie(code, out) = RunShell(MemoriaBinary() + " inspect-store --store " + dir + "/missing");
  EXPECT_NE(code, 0) << out;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace memoria
