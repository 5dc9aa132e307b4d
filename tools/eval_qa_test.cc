// eval-qa on a small random-weight T5, the LLaMA-2 SentencePiece vocabulary and stores built
// from the first SQuAD dev paragraphs: QA file reading and the paragraph -> passage id mapping,
// FiD = LUMEN at alpha 1 with codec none, scores recomputed from the predictions file, and the
// errors (missing passages, another model's or alpha's store, bad flags).
#include "tools/eval_qa.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/testing.h"
#include "tools/corpus_reader.h"
#include "tools/qa_metrics.h"
#include "tools/random_t5_dir.h"
#include "tools/store_builder.h"

namespace memoria {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

T5Config SmallConfig() { return TinyTestT5Config(3, 1); }

std::string Squad() { return testing::SharedPath("data/qa/squad-v1.1-dev-part1.json"); }
std::string Tok() { return testing::SharedPath("models/llama2-tokenizer/tokenizer.model"); }

// Two stores of the first 3 paragraphs (Super_Bowl_50/0..2; the first 30 questions are on /0):
// alpha 1 + codec none, and alpha 1/3 + pq (with btr as an extra codec).
class EvalQaTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::SharedDirAvailable()) return;
    root_ = new std::string(testing::MakeTempDir("eval-qa"));
    ASSERT_TRUE(WriteRandomT5ModelDir(SmallConfig(), 5, Root() + "/model").ok());
    ASSERT_TRUE(WriteRandomT5ModelDir(SmallConfig(), 6, Root() + "/other_model").ok());
    auto corpus = ReadCorpus(Squad(), CorpusFormat::kSquad, 3);
    ASSERT_TRUE(corpus.ok());
    std::string jsonl;
    for (const CorpusPassage& p : *corpus) {
      jsonl += json{{"id", p.id}, {"title", p.title}, {"text", p.text}}.dump() + "\n";
    }
    testing::WriteFile(Root() + "/corpus.jsonl", jsonl);
    for (const auto& [name, codec, alpha] :
         {std::tuple<std::string, std::string, double>{"none_a1", "none", 1.0},
          {"pq", "pq:g=8,bits=8", 1.0 / 3.0}}) {
      StoreBuildOptions o;
      o.corpus_path = Squad();
      o.limit = 3;
      o.model_dir = Root() + "/model";
      o.tokenizer_path = Tok();
      o.store_dir = Root() + "/" + name;
      o.codec = codec;
      if (name == "pq") o.extra_codecs = {"btr"};
      o.alpha = alpha;
      o.max_passage_tokens = 120;
      o.threads = 1;
      o.sync = false;
      o.train.pq.iterations = 3;
      Status s = BuildStore(o, nullptr, nullptr);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
  }
  static void TearDownTestSuite() {
    if (root_ != nullptr) fs::remove_all(*root_);
    delete root_;
    root_ = nullptr;
  }
  static const std::string& Root() { return *root_; }

  EvalQaOptions Options(const std::string& store, bool fid, double alpha) {
    EvalQaOptions o;
    o.model_dir = Root() + "/model";
    o.tokenizer_path = Tok();
    o.qa_path = Squad();
    o.store_dir = store.empty() ? "" : Root() + "/" + store;
    o.fid = fid;
    o.alpha = alpha;
    o.limit = 5;
    o.max_passage_tokens = 120;
    o.generation.max_new_tokens = 6;
    o.threads = 1;
    return o;
  }

  static std::string* root_;
};
std::string* EvalQaTest::root_ = nullptr;

TEST(EvalQaReadTest, SquadQuestionsMapToBuildStoreParagraphIds) {
  MEMORIA_REQUIRE_SHARED();
  auto qa = ReadQaFile(Squad(), 31);
  ASSERT_TRUE(qa.ok()) << qa.status().ToString();
  ASSERT_EQ(qa->size(), 31u);
  const QaExample& first = qa->front();
  EXPECT_EQ(first.id, "56be4db0acb8001400a502ec");
  EXPECT_EQ(first.question, "Which NFL team represented the AFC at Super Bowl 50?");
  EXPECT_EQ(first.answers, std::vector<std::string>(3, "Denver Broncos"));
  // The ids are the ones build-store (ReadCorpus) gives the paragraphs.
  auto corpus = ReadCorpus(Squad(), CorpusFormat::kSquad, 2);
  ASSERT_TRUE(corpus.ok());
  EXPECT_EQ(first.passage_ids, std::vector<std::string>{(*corpus)[0].id});
  EXPECT_EQ(qa->back().passage_ids, std::vector<std::string>{(*corpus)[1].id});  // question 31
  EXPECT_EQ((*corpus)[1].id, "Super_Bowl_50/1");
}

TEST(EvalQaReadTest, JsonlAndItsErrors) {
  const std::string dir = testing::MakeTempDir("eval-qa-jsonl");
  testing::WriteFile(dir + "/qa.jsonl",
                     "{\"question\": \"q1\", \"answer\": [\"a\", \"b\"]}\n\n"
                     "{\"id\": 7, \"question\": \"q2\", \"answers\": \"c\", \"passage_ids\": [\"x/0\"]}\n");
  auto qa = ReadQaFile(dir + "/qa.jsonl", 0);
  ASSERT_TRUE(qa.ok()) << qa.status().ToString();
  ASSERT_EQ(qa->size(), 2u);
  EXPECT_EQ((*qa)[0].id, "1");  // line number
  EXPECT_EQ((*qa)[0].answers, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE((*qa)[0].passage_ids.empty());
  EXPECT_EQ((*qa)[1].id, "7");
  EXPECT_EQ((*qa)[1].answers, std::vector<std::string>{"c"});
  EXPECT_EQ((*qa)[1].passage_ids, std::vector<std::string>{"x/0"});

  testing::WriteFile(dir + "/bad.jsonl", "{\"question\": \"q\", \"answers\": []}\n");
  auto bad = ReadQaFile(dir + "/bad.jsonl", 0);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("bad.jsonl:1"), std::string::npos) << bad.status().ToString();
  EXPECT_EQ(ReadQaFile(dir + "/none.jsonl", 0).status().code(), StatusCode::kNotFound);
  fs::remove_all(dir);
}

TEST(EvalQaReadTest, PassageSelection) {
  auto gold = ParsePassageSelection("gold");
  ASSERT_TRUE(gold.ok());
  EXPECT_EQ(gold->ToString(), "gold");
  auto bm25 = ParsePassageSelection("bm25:5");
  ASSERT_TRUE(bm25.ok());
  EXPECT_FALSE(bm25->gold);
  EXPECT_EQ(bm25->bm25_k, 5);
  auto mixed = ParsePassageSelection("gold+bm25:3");
  ASSERT_TRUE(mixed.ok());
  EXPECT_TRUE(mixed->gold);
  EXPECT_EQ(mixed->ToString(), "gold+bm25:3");
  for (const char* bad : {"bm25:0", "bm25:", "bm25:x", "gold+bm25:1", "dense:3", "Gold"}) {
    EXPECT_EQ(ParsePassageSelection(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST_F(EvalQaTest, FidAndLumenAtAlphaOneWithCodecNonePredictTheSame) {
  MEMORIA_REQUIRE_SHARED();
  for (const std::string passages : {"gold", "gold+bm25:2"}) {
    SCOPED_TRACE(passages);
    EvalQaReport lumen, fid_store, fid_text;
    EvalQaOptions o = Options("none_a1", false, 1.0);
    o.passages = *ParsePassageSelection(passages);
    Status s = EvaluateQa(o, nullptr, &lumen);
    ASSERT_TRUE(s.ok()) << s.ToString();
    o.fid = true;  // the store's token ids, full encoder
    ASSERT_TRUE(EvaluateQa(o, nullptr, &fid_store).ok());
    // The stored paragraphs as a corpus (so BM25 sees the same passages), tokenized as
    // build-store does.
    o.store_dir = "";
    o.corpus_path = Root() + "/corpus.jsonl";
    s = EvaluateQa(o, nullptr, &fid_text);
    ASSERT_TRUE(s.ok()) << s.ToString();

    EXPECT_EQ(lumen.mode, "lumen");
    EXPECT_EQ(lumen.memory_layers, 0);
    EXPECT_EQ(lumen.bytes_per_token, 4 * 32);
    EXPECT_DOUBLE_EQ(lumen.ratio_vs_fp32, 1.0);
    EXPECT_EQ(fid_store.mode, "fid");
    EXPECT_EQ(fid_store.bytes_per_token, 0);
    ASSERT_EQ(lumen.questions, 5);
    ASSERT_EQ(lumen.predictions.size(), 5u);
    ASSERT_EQ(fid_store.predictions.size(), 5u);
    ASSERT_EQ(fid_text.predictions.size(), 5u);
    EXPECT_EQ(lumen.encoder_tokens, fid_store.encoder_tokens);
    EXPECT_EQ(lumen.encoder_tokens, fid_text.encoder_tokens);
    for (size_t i = 0; i < 5; ++i) {
      const EvalQaPrediction& p = lumen.predictions[i];
      EXPECT_EQ(p.passage_ids.front(), "Super_Bowl_50/0");
      EXPECT_EQ(p.passage_ids.size(), passages == "gold" ? 1u : 2u);
      EXPECT_TRUE(p.gold_retrieved);
      EXPECT_GT(p.answer_tokens, 0);
      EXPECT_EQ(p.prediction, fid_store.predictions[i].prediction) << "question " << i;
      EXPECT_EQ(p.answer_tokens, fid_store.predictions[i].answer_tokens);
      EXPECT_EQ(p.passage_ids, fid_store.predictions[i].passage_ids);
      EXPECT_EQ(p.prediction, fid_text.predictions[i].prediction) << "question " << i;
      EXPECT_EQ(p.passage_ids, fid_text.predictions[i].passage_ids);
    }
  }
}

// --extractive: lumen (through the server's runner, span ids from the store's text records) and fid
// (span ids from the passages it encodes) answer with the same passage spans; the random reader's
// free answers are not passage text.
TEST_F(EvalQaTest, ExtractiveAnswersArePassageTextInBothModes) {
  MEMORIA_REQUIRE_SHARED();
  auto corpus = ReadCorpus(Squad(), CorpusFormat::kSquad, 1);
  ASSERT_TRUE(corpus.ok());
  const std::string passage = "title: " + (*corpus)[0].title + " context: " + (*corpus)[0].text;
  for (int beams : {1, 3}) {
    SCOPED_TRACE(beams);
    EvalQaReport free, lumen, fid;
    EvalQaOptions o = Options("none_a1", false, 1.0);
    o.generation.num_beams = beams;
    ASSERT_TRUE(EvaluateQa(o, nullptr, &free).ok());
    o.generation.extractive = true;
    Status s = EvaluateQa(o, nullptr, &lumen);
    ASSERT_TRUE(s.ok()) << s.ToString();
    o.fid = true;
    s = EvaluateQa(o, nullptr, &fid);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_EQ(lumen.predictions.size(), 5u);
    int free_in_passage = 0;
    for (size_t i = 0; i < 5; ++i) {
      const std::string& answer = lumen.predictions[i].prediction;
      EXPECT_FALSE(answer.empty());
      EXPECT_NE(passage.find(answer), std::string::npos) << "question " << i << ": " << answer;
      EXPECT_EQ(answer, fid.predictions[i].prediction) << "question " << i;
      free_in_passage += passage.find(free.predictions[i].prediction) != std::string::npos;
    }
    EXPECT_EQ(free_in_passage, 0);
  }
}

// Runs `memoria eval-qa` and returns (exit code, stdout + stderr).
std::pair<int, std::string> EvalQaCli(const std::string& flags) {
  const std::string memoria = testing::BuildDir() + "/tools/memoria";
  return testing::RunShell(memoria + " eval-qa " + flags + " 2>&1");
}

std::vector<json> ReadJsonLines(const std::string& path) {
  std::vector<json> out;
  std::istringstream in(testing::ReadFile(path));
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}

TEST_F(EvalQaTest, CliScoresAreThoseOfItsPredictionsFile) {
  MEMORIA_REQUIRE_SHARED();
  const std::string dir = Root() + "/cli";
  fs::create_directories(dir);
  const std::string common = "--model " + Root() + "/model --tokenizer " + Tok() + " --store " +
                             Root() + "/pq --threads 1 --max-new-tokens 6 --predictions " + dir +
                             "/p.jsonl --report " + dir + "/r.json";
  auto [rc, out] = EvalQaCli(common + " --qa " + Squad() + " --limit 4 --passages bm25:2");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("codec:              pq(d=32, g=8, C=256)"), std::string::npos) << out;
  EXPECT_NE(out.find("bytes per token:    8"), std::string::npos) << out;  // g = 8 ids of 8 bits
  EXPECT_NE(out.find("16.00x vs fp32"), std::string::npos) << out;         // 128 / 8
  EXPECT_NE(out.find("questions:          4"), std::string::npos) << out;
  EXPECT_NE(out.find("gold retrieved:"), std::string::npos) << out;
  std::vector<json> first = ReadJsonLines(dir + "/p.jsonl");
  ASSERT_EQ(first.size(), 4u);
  // IceFormer cross-attention keeping at least every key computes the exact answer.
  auto [rc_ice, out_ice] = EvalQaCli(common + " --qa " + Squad() +
                                     " --limit 4 --passages bm25:2 --iceformer-min-keys 1"
                                     " --iceformer-top-k 100000");
  ASSERT_EQ(rc_ice, 0) << out_ice;
  std::vector<json> ice = ReadJsonLines(dir + "/p.jsonl");
  ASSERT_EQ(ice.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(ice[i]["prediction"], first[i]["prediction"]) << i;

  // A JSONL file of the same questions whose first gold answer is what the reader said, the
  // others keep SQuAD's answers: the second run predicts the same, so question 1 scores EM 1 and
  // the totals are the predictions' own scores.
  auto squad = ReadQaFile(Squad(), 4);
  ASSERT_TRUE(squad.ok());
  std::string jsonl;
  for (size_t i = 0; i < 4; ++i) {
    json j = {{"id", (*squad)[i].id},
              {"question", (*squad)[i].question},
              {"answers", i == 0 ? std::vector<std::string>{first[0]["prediction"]} : (*squad)[i].answers},
              {"passage_ids", (*squad)[i].passage_ids}};
    jsonl += j.dump() + "\n";
  }
  testing::WriteFile(dir + "/qa.jsonl", jsonl);
  auto [rc2, out2] = EvalQaCli(common + " --qa " + dir + "/qa.jsonl --passages bm25:2");
  ASSERT_EQ(rc2, 0) << out2;
  std::vector<json> second = ReadJsonLines(dir + "/p.jsonl");
  ASSERT_EQ(second.size(), 4u);
  double em = 0, f1 = 0;
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(second[i]["prediction"], first[i]["prediction"]) << i;
    const QaScore s = ScoreSquadAnswer(second[i]["prediction"].get<std::string>(),
                                       second[i]["answers"].get<std::vector<std::string>>());
    EXPECT_EQ(second[i]["em"].get<double>(), s.exact_match) << i;
    EXPECT_EQ(second[i]["f1"].get<double>(), s.f1) << i;
    em += s.exact_match;
    f1 += s.f1;
  }
  EXPECT_EQ(second[0]["em"].get<double>(), 1.0);
  const json report = json::parse(testing::ReadFile(dir + "/r.json"));
  EXPECT_NEAR(report["exact_match"].get<double>(), 100.0 * em / 4, 1e-9);
  EXPECT_NEAR(report["f1"].get<double>(), 100.0 * f1 / 4, 1e-9);
  EXPECT_GE(report["exact_match"].get<double>(), 25.0);
  EXPECT_LE(report["f1"].get<double>(), 100.0);
  char line[64];
  std::snprintf(line, sizeof(line), "exact match:        %.2f\n", 100.0 * em / 4);
  EXPECT_NE(out2.find(line), std::string::npos) << line << out2;
  EXPECT_EQ(report["questions"].get<int64_t>(), 4);
  EXPECT_EQ(report["bytes_per_token"].get<int64_t>(), 8);
}

TEST_F(EvalQaTest, MissingPassagesAreNamedBeforeAnyQuestionRuns) {
  MEMORIA_REQUIRE_SHARED();
  // Questions 1-85 are on paragraphs 0-2; question 86 is on paragraph 3, not in the store.
  EvalQaOptions o = Options("none_a1", false, 1.0);
  o.limit = 86;
  Status s = EvaluateQa(o, nullptr, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
  EXPECT_NE(s.message().find("1 of 4 gold passages"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("'Super_Bowl_50/3'"), std::string::npos) << s.ToString();

  const std::string dir = Root() + "/missing";
  fs::create_directories(dir);
  testing::WriteFile(dir + "/qa.jsonl",
                     "{\"question\": \"Who won?\", \"answers\": [\"Denver\"], \"passage_ids\": "
                     "[\"Super_Bowl_50/0\", \"No_Such_Page/7\"]}\n");
  o.qa_path = dir + "/qa.jsonl";
  s = EvaluateQa(o, nullptr, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
  EXPECT_NE(s.message().find("'No_Such_Page/7'"), std::string::npos) << s.ToString();
  EXPECT_EQ(s.message().find("'Super_Bowl_50/0'"), std::string::npos) << s.ToString();
  // Same in fid mode over the corpus.
  o.fid = true;
  o.store_dir = "";
  o.corpus_path = Squad();
  s = EvaluateQa(o, nullptr, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
  EXPECT_NE(s.message().find("'No_Such_Page/7'"), std::string::npos) << s.ToString();

  // Gold passages for a question that names none.
  testing::WriteFile(dir + "/qa.jsonl", "{\"question\": \"Who won?\", \"answers\": [\"Denver\"]}\n");
  s = EvaluateQa(o, nullptr, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("bm25"), std::string::npos) << s.ToString();
}

// --codec reads one of the store's extra codecs: its bytes per token are reported, and a codec
// the store does not hold is refused naming those it does.
TEST_F(EvalQaTest, CodecChoosesAmongTheStoresCodecs) {
  MEMORIA_REQUIRE_SHARED();
  EvalQaOptions o = Options("pq", false, 1.0 / 3.0);
  EvalQaReport pq, btr;
  ASSERT_TRUE(EvaluateQa(o, nullptr, &pq).ok());
  o.codec = "btr";
  Status s = EvaluateQa(o, nullptr, &btr);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(pq.codec, "pq(d=32, g=8, C=256)");
  EXPECT_EQ(pq.bytes_per_token, 8);
  EXPECT_EQ(btr.codec, "btr(d=32, scale=bf16)");
  EXPECT_EQ(btr.bytes_per_token, 4 + 2);
  EXPECT_EQ(btr.questions, 5);
  o.codec = "none";
  s = EvaluateQa(o, nullptr, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("it holds pq:g=8,bits=8, btr"), std::string::npos) << s.ToString();
}

TEST_F(EvalQaTest, StoreOfAnotherModelOrAlphaIsRefused) {
  MEMORIA_REQUIRE_SHARED();
  EvalQaOptions o = Options("pq", false, 1.0 / 3.0);
  o.model_dir = Root() + "/other_model";
  Status s = EvaluateQa(o, nullptr, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("fingerprint"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("build-store"), std::string::npos) << s.ToString();

  o = Options("pq", false, 1.0);  // the store holds memory after 2 layers; alpha 1 wants 0
  s = EvaluateQa(o, nullptr, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("layer split 2"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("layer split 0"), std::string::npos) << s.ToString();
}

TEST_F(EvalQaTest, BadFlagsExitWithTheReason) {
  MEMORIA_REQUIRE_SHARED();
  const std::string base = "--model " + Root() + "/model --tokenizer " + Tok() + " --qa " + Squad();
  const std::pair<std::string, std::string> cases[] = {
      {base + " --store " + Root() + "/pq --passages bm25:0", "K in 'bm25:0'"},
      {base + " --store " + Root() + "/pq --mode dpr", "--mode must be lumen|fid"},
      {base, "lumen mode reads memory from a passage store"},
      {base + " --store " + Root() + "/pq --beams 0", "--beams must be in [1, 16]"},
      {base + " --store " + Root() + "/pq --limit x", "--limit expects an integer"},
      {base + " --store " + Root() + "/pq --colour red", "unknown flag(s): --colour"},
      {base + " --store " + Root() + "/pq --iceformer-min-keys -5",
       "--iceformer-min-keys must be >= 0"},
      {base + " --store " + Root() + "/nowhere", "nowhere"},
  };
  for (const auto& [flags, expected] : cases) {
    auto [rc, out] = EvalQaCli(flags);
    EXPECT_EQ(rc, 1) << flags << "\n" << out;
    EXPECT_NE(out.find("error:"), std::string::npos) << out;
    EXPECT_NE(out.find(expected), std::string::npos) << flags << "\n" << out;
  }
}

}  // namespace
}  // namespace memoria
