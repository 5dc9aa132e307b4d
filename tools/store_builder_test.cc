// BuildStore end to end on a small random-weight T5 dir, the real LLaMA-2 SentencePiece
// vocabulary and the first SQuAD dev paragraphs: the store holds every passage with its text and
// FiD token ids, its identity is the model dir's fingerprint + layer split + codec, and its memory
// decodes to what the memory encoder produces for those ids.
#include "tools/store_builder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "base/testing.h"
#include "engine/t5_model.h"
#include "engine/tokenizer.h"
#include "engine/weights.h"
#include "tools/random_t5_dir.h"

namespace memoria {
namespace {

namespace fs = std::filesystem;

T5Config SmallConfig() { return TinyTestT5Config(3, 1); }

class StoreBuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::SharedDirAvailable()) return;
    root_ = testing::MakeTempDir("store-builder");
    ASSERT_TRUE(WriteRandomT5ModelDir(SmallConfig(), 5, root_ + "/model").ok());
    options_.corpus_path = testing::SharedPath("data/qa/squad-v1.1-dev-part1.json");
    options_.limit = 9;
    options_.model_dir = root_ + "/model";
    options_.tokenizer_path = testing::SharedPath("models/llama2-tokenizer/tokenizer.model");
    options_.store_dir = root_ + "/store";
    options_.batch_passages = 4;  // 3 batches: the last one partial
    options_.max_passage_tokens = 120;
    options_.threads = 2;
    options_.sync = false;
    options_.train.pq.iterations = 5;
  }
  void TearDown() override {
    if (!root_.empty()) fs::remove_all(root_);
  }

  // Memory the encoder gives for passage `id` when encoded alone, straight from the model dir.
  std::vector<float> DirectMemory(const std::vector<int32_t>& ids) {
    auto model = T5Model::Load(options_.model_dir);
    EXPECT_TRUE(model.ok());
    auto lumen = LumenModel::Create(*model, LumenOptions{options_.alpha});
    std::vector<std::vector<float>> out;
    EXPECT_TRUE((*lumen)->MemoryEncode(ThreadPool(2), {std::vector<int>(ids.begin(), ids.end())}, &out).ok());
    return out.at(0);
  }

  std::string root_;
  StoreBuildOptions options_;
};

TEST_F(StoreBuilderTest, BuildsAPqStoreFromSquadThatDecodesToTheEncoderMemory) {
  MEMORIA_REQUIRE_SHARED();
  options_.codec = "pq:g=8,bits=8";
  std::vector<StoreBuildProgress> seen;
  StoreBuildReport report;
  Status s = BuildStore(options_, [&](const StoreBuildProgress& p) { seen.push_back(p); }, &report);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(report.passages, 9);
  EXPECT_GT(report.truncated_passages, 0);  // SQuAD paragraphs run past 120 ids
  EXPECT_GE(report.training_vectors, 256);  // C = 256 codes need at least that many
  EXPECT_EQ(report.distortion.size(), 6u);  // init + 5 iterations
  EXPECT_LT(report.distortion.back(), report.distortion.front());
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().stage, "ingest");
  EXPECT_EQ(seen.back().done, 9);
  EXPECT_EQ(seen.back().total, 9);
  EXPECT_EQ(seen.back().tokens, report.tokens);
  int ingest_lines = 0;
  for (const auto& p : seen) ingest_lines += p.stage == "ingest";
  EXPECT_EQ(ingest_lines, 3);

  // Identity: fingerprint of the model dir, 2 memory layers of 3, the codec asked for.
  auto dir = ModelDir::Open(options_.model_dir);
  ASSERT_TRUE(dir.ok());
  StoreIdentity expected;
  expected.model_fingerprint = (*dir)->Fingerprint();
  expected.layer_split = 2;
  expected.codec = *CodecSpec::Parse("pq:g=8,bits=8", 32);
  std::unique_ptr<PassageStore> store;
  PassageStoreOptions so;
  so.read_only = true;
  s = PassageStore::Open(so, options_.store_dir, &expected, &store);
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto stats = store->Scan(/*verify=*/true);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->passages, 9);
  EXPECT_EQ(stats->memories, 9);
  EXPECT_EQ(stats->tokens, report.tokens);
  EXPECT_EQ(stats->corrupt, 0);

  // Text and ids: the FiD passage part of the SQuAD paragraph, truncated with EOS kept last.
  auto tok = Tokenizer::Open(options_.tokenizer_path);
  ASSERT_TRUE(tok.ok());
  auto text = store->GetText({"Super_Bowl_50/0"});
  ASSERT_TRUE(text[0].ok()) << text[0].status().ToString();
  EXPECT_EQ(text[0]->title, "Super Bowl 50");
  auto want = FidPassageIds(**tok, FidTemplate{}, text[0]->title, text[0]->text, 2);
  ASSERT_GT(want.size(), 120u);
  want.resize(120);
  want.back() = 2;
  EXPECT_EQ(std::vector<int>(text[0]->token_ids.begin(), text[0]->token_ids.end()), want);

  // Memory: decoded PQ codes close to the encoder's own memory for those ids.
  auto memory = store->GetMemory(ThreadPool(2), {"Super_Bowl_50/0"});
  ASSERT_TRUE(memory[0].ok()) << memory[0].status().ToString();
  EXPECT_EQ(memory[0]->num_tokens, 120);
  const auto direct = DirectMemory(text[0]->token_ids);
  ASSERT_EQ(direct.size(), memory[0]->vectors.size());
  const double nmse = testing::Nmse(memory[0]->vectors.data(), direct.data(), long(direct.size()));
  EXPECT_LT(nmse, 0.3);
  std::printf("pq:g=8,bits=8 on %lld training vectors: relative MSE %.4f\n",
              static_cast<long long>(report.training_vectors), nmse);
}

TEST_F(StoreBuilderTest, NoneCodecStoresTheEncoderMemoryAndRefusesAnExistingStore) {
  MEMORIA_REQUIRE_SHARED();
  options_.codec = "none";
  options_.limit = 5;
  StoreBuildReport report;
  Status s = BuildStore(options_, nullptr, &report);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(report.training_vectors, 0);
  std::unique_ptr<PassageStore> store;
  ASSERT_TRUE(PassageStore::Open(PassageStoreOptions{}, options_.store_dir, &report.identity, &store).ok());
  auto text = store->GetText({"Super_Bowl_50/3"});
  ASSERT_TRUE(text[0].ok());
  auto memory = store->GetMemory(ThreadPool(2), {"Super_Bowl_50/3"});
  ASSERT_TRUE(memory[0].ok());
  const auto direct = DirectMemory(text[0]->token_ids);
  ASSERT_EQ(direct.size(), memory[0]->vectors.size());
  // f32 storage is exact; the only difference is batching (GEMM blocking over a packed batch).
  EXPECT_LE(testing::MaxAbsDiff(memory[0]->vectors.data(), direct.data(), long(direct.size())), 1e-4);
  store.reset();

  s = BuildStore(options_, nullptr, &report);
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
}

TEST_F(StoreBuilderTest, BtrCalibratesOnTheSampleAndTooFewVectorsForPqIsAClearError) {
  MEMORIA_REQUIRE_SHARED();
  options_.codec = "btr";
  options_.limit = 4;
  StoreBuildReport report;
  Status s = BuildStore(options_, nullptr, &report);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(report.training_vectors, report.tokens);  // corpus smaller than train_tokens
  EXPECT_EQ(report.identity.codec.id, CodecId::kBtr);

  options_.codec = "pq:g=4,bits=16";
  options_.store_dir = root_ + "/store16";
  s = BuildStore(options_, nullptr, &report);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("65536"), std::string::npos) << s.ToString();
  EXPECT_FALSE(fs::exists(options_.store_dir + "/CURRENT"));  // failed before Create
}

TEST_F(StoreBuilderTest, WindowedCorpusStoresOverlappingRunsOfWords) {
  MEMORIA_REQUIRE_SHARED();
  options_.codec = "none:bf16";
  options_.limit = 2;
  options_.window_words = 24;  // default stride 12
  StoreBuildReport report;
  Status s = BuildStore(options_, nullptr, &report);
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto corpus = ReadCorpus(options_.corpus_path, CorpusFormat::kAuto, 2);
  ASSERT_TRUE(corpus.ok());
  auto windows = WindowPassages(*corpus, 24, 12);
  ASSERT_TRUE(windows.ok());
  EXPECT_GT(windows->size(), 4u);  // SQuAD paragraphs run to 100+ words
  EXPECT_EQ(report.passages, static_cast<int64_t>(windows->size()));
  std::unique_ptr<PassageStore> store;
  ASSERT_TRUE(PassageStore::Open(PassageStoreOptions{}, options_.store_dir, &report.identity, &store).ok());
  auto text = store->GetText({"Super_Bowl_50/0#w0", "Super_Bowl_50/0#w12", "Super_Bowl_50/0"});
  ASSERT_TRUE(text[0].ok()) << text[0].status().ToString();
  ASSERT_TRUE(text[1].ok()) << text[1].status().ToString();
  EXPECT_EQ(text[0]->text, (*windows)[0].text);
  EXPECT_EQ(text[1]->text, (*windows)[1].text);
  EXPECT_EQ(text[2].status().code(), StatusCode::kNotFound);  // only the runs are stored
}

TEST_F(StoreBuilderTest, OptionsAreValidated) {
  StoreBuildOptions o;
  EXPECT_EQ(BuildStore(o, nullptr, nullptr).code(), StatusCode::kInvalidArgument);
  // Every path set (validation happens before any file is touched), one bad option at a time.
  o.corpus_path = "/nonexistent/c.jsonl";
  o.model_dir = "/nonexistent/model";
  o.store_dir = "/nonexistent/store";
  o.codec = "btr";
  auto expect_invalid = [&](const StoreBuildOptions& bad, const std::string& word) {
    Status s = BuildStore(bad, nullptr, nullptr);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find(word), std::string::npos) << s.ToString();
  };
  StoreBuildOptions bad = o;
  bad.alpha = 1.5;
  expect_invalid(bad, "alpha");
  bad = o;
  bad.max_passage_tokens = 1;
  expect_invalid(bad, "max passage tokens");
  bad = o;
  bad.batch_passages = 0;
  expect_invalid(bad, "batch");
  bad = o;
  bad.train_tokens = 0;
  expect_invalid(bad, "train tokens");
  bad = o;
  bad.window_words = -1;
  expect_invalid(bad, "window of -1 words");
  bad = o;
  bad.window_stride = 4;  // a stride without a window
  expect_invalid(bad, "stride 4");
  // With valid options the first file access fails instead: the corpus is missing.
  EXPECT_EQ(BuildStore(o, nullptr, nullptr).code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace memoria
