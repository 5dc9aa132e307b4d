// The T5/LUMEN path of the server through real gRPC: an in-process MemoriaServer on loopback with
// a random-weight T5 model dir (tools/random_t5_dir.h, d 32, the LLaMA-2 SentencePiece
// vocabulary) and a RocksDB store it creates itself (codec "none"). Real SQuAD dev passages are
// ingested through the client-streaming Ingest; questions are asked with passage ids and through
// the BM25 retriever, greedy and beam; every answer must equal, token for token, what the
// engine's LumenModel::Answer gives in-process on the store's decoded memory. Also: NOT_FOUND
// naming unknown ids, DATA_LOSS for a corrupted memory value (counted in /metrics) while other
// passages are still served, deletion reaching the retriever, and the real memoria-server binary
// refusing (exit 1) a store built for another layer split. With a slower random model (d 256):
// a deadline or a client cancel stops the work inside the live encoder / decoder and frees the
// worker at once, and greedy tokens are streamed as they are generated. The store checksum
// verification at start (full / sample / off) counts a corrupt record in /metrics before any
// request; the store gauges follow Ingest and DeletePassages; the Python grpcio client's T5 path.
#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/testing.h"
#include "engine/lumen.h"
#include "engine/span_constraint.h"
#include "memoria.grpc.pb.h"
#include "server/config.h"
#include "server/server.h"
#include "storage/passage_store.h"
#include "tests/server_process.h"
#include "tests/test_helpers.h"
#include "tests/tiny_t5_server.h"
#include "tools/random_t5_dir.h"
#include "tools/store_builder.h"

namespace memoria {
namespace {

namespace fs = std::filesystem;

T5Config SmallConfig() { return TinyTestT5Config(3, 2); }

struct SquadPassage : testing::TestPassage {
  std::string question;
};

// The first paragraph of each of the first n articles of the SQuAD dev part, with its first
// question: different articles, so each question's words point at one passage.
std::vector<SquadPassage> ReadSquad(int n) {
  std::ifstream in(testing::SharedPath("data/qa/squad-v1.1-dev-part1.json"));
  const auto data = nlohmann::json::parse(in)["data"];
  std::vector<SquadPassage> out;
  for (int i = 0; i < n; ++i) {
    const auto& paragraph = data[i]["paragraphs"][0];
    out.push_back({{"squad-" + std::to_string(i), data[i]["title"].get<std::string>(),
                    paragraph["context"].get<std::string>()},
                   paragraph["qas"][0]["question"].get<std::string>()});
  }
  return out;
}

class LumenServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MEMORIA_REQUIRE_SHARED();
    root_ = testing::MakeTempDir("memoria-lumen-server");
    model_dir_ = root_ + "/model";
    ASSERT_TRUE(WriteRandomT5ModelDir(SmallConfig(), 5, model_dir_).ok());
    tokenizer_ = testing::SharedPath("models/llama2-tokenizer/tokenizer.model");
    store_dir_ = root_ + "/store";
    passages_ = ReadSquad(4);
  }
  void TearDown() override {
    server_.reset();
    if (!root_.empty()) fs::remove_all(root_);
  }

  v1::ServerConfig Config() const {
    v1::ServerConfig config;
    config.set_listen_address("127.0.0.1:0");
    config.set_http_port(0);
    config.set_model_dir(model_dir_);
    config.set_tokenizer_path(tokenizer_);
    config.set_store_dir(store_dir_);
    config.set_threads(1);  // the in-process reference runs on 1 thread too: identical sums
    config.set_workers(1);
    config.set_queue_capacity(4);
    config.set_log_level("warning");
    return config;
  }

  // edit (optional) changes the config before it is validated.
  void Start(const std::function<void(v1::ServerConfig*)>& edit = {}) {
    v1::ServerConfig config = Config();
    if (edit) edit(&config);
    ASSERT_TRUE(ApplyDefaultsAndValidate(&config).ok());
    ASSERT_EQ(config.model_kind(), "t5");  // detected from config.json's model_type
    Status started = testing::StartInProcessServer(config, &server_);
    ASSERT_TRUE(started.ok()) << started.ToString();
    stub_ = testing::LoopbackStub(server_->grpc_port());
  }
  void Stop() {
    server_->Drain();
    server_.reset();
  }

  grpc::Status Ingest(const std::vector<SquadPassage>& passages, v1::IngestReply* reply) {
    return testing::IngestStream(
        stub_.get(), std::vector<testing::TestPassage>(passages.begin(), passages.end()), reply);
  }

  grpc::Status Ask(const std::string& question, const std::vector<std::string>& ids, int top_k,
                   int beams, v1::GenerateReply* reply, const std::string& codec = "",
                   bool extractive = false) {
    grpc::ClientContext context;
    v1::GenerateRequest request;
    request.set_question(question);
    request.mutable_params()->set_extractive(extractive);
    request.set_codec(codec);
    for (const auto& id : ids) request.add_passage_ids(id);
    request.set_retrieve_top_k(top_k);
    request.mutable_params()->set_max_new_tokens(6);
    request.mutable_params()->set_num_beams(beams);
    return stub_->Generate(&context, request, reply);
  }

  // What the engine's LUMEN API answers in-process for the same question and passages, on the
  // store's decoded memory in codec `codec_index` (the server must be stopped: RocksDB allows one
  // opener). extractive: LiveEncode + T5Generate with the span constraint of the stored ids.
  std::vector<int> Reference(const std::string& question, const std::vector<std::string>& ids,
                             int beams, int codec_index = 0, bool extractive = false) {
    auto model = T5Model::Load(model_dir_);
    EXPECT_TRUE(model.ok());
    auto lumen = LumenModel::Create(*model, LumenOptions{});
    auto tokenizer = Tokenizer::Open(tokenizer_);
    std::unique_ptr<PassageStore> store;
    EXPECT_TRUE(PassageStore::Open(PassageStoreOptions{}, store_dir_, nullptr, &store).ok());
    ThreadPool pool(1);
    auto memory = store->GetMemory(pool, ids, codec_index);
    std::vector<MemoryVectors> views;
    for (auto& m : memory) {
      EXPECT_TRUE(m.ok()) << m.status().ToString();
      views.push_back({DType::kF32, m->vectors.data(), m->num_tokens, SmallConfig().d_model});
    }
    T5GenerationOptions options;
    options.max_new_tokens = 6;
    options.num_beams = beams;
    options.extractive = extractive;
    const std::vector<int> question_ids = FidQuestionIds(**tokenizer, FidTemplate(), question);
    StatusOr<GenerationResult> result = InternalError("not run");
    if (!extractive) {
      result = (*lumen)->Answer(pool, question_ids, views, options);
    } else {
      std::vector<std::vector<int>> passages;
      for (auto& text : store->GetText(ids)) {
        EXPECT_TRUE(text.ok());
        passages.emplace_back(text->token_ids.begin(), text->token_ids.end());
      }
      PassageSpanConstraint spans(passages, PieceKinds(**tokenizer), SmallConfig().eos_token_id);
      LiveEncoding enc;
      EXPECT_TRUE((*lumen)->LiveEncode(pool, question_ids, views, &enc).ok());
      T5DecoderState state;
      result = T5Generate((*lumen)->model(), pool, enc.h.data(), enc.offsets.back(), options,
                          &state, nullptr, &spans);
    }
    EXPECT_TRUE(result.ok()) << result.status().ToString();
    std::vector<int> tokens = result->tokens;
    if (!tokens.empty() && tokens.back() == SmallConfig().eos_token_id) tokens.pop_back();
    return tokens;
  }

  static std::vector<int> Ids(const v1::GenerateReply& reply) {
    return {reply.token_ids().begin(), reply.token_ids().end()};
  }

  std::string root_, model_dir_, tokenizer_, store_dir_;
  std::vector<SquadPassage> passages_;
  std::unique_ptr<MemoriaServer> server_;
  std::unique_ptr<v1::Memoria::Stub> stub_;
};

TEST_F(LumenServerTest, IngestAndAnswerEqualTheEngineInProcess) {
  Start();
  v1::IngestReply ingest;
  grpc::Status status = Ingest(passages_, &ingest);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(ingest.ingested(), 4);
  EXPECT_GT(ingest.tokens(), 4 * 50);
  EXPECT_EQ(ingest.code_bytes(), ingest.tokens() * 4 * 32);  // codec none, f32, d 32

  {
    grpc::ClientContext context;
    v1::ServerInfoReply info;
    ASSERT_TRUE(stub_->ServerInfo(&context, v1::ServerInfoRequest(), &info).ok());
    EXPECT_EQ(info.model_type(), "t5");
    EXPECT_EQ(info.store_passages(), 4);
    EXPECT_EQ(info.memory_layers(), 2);
    EXPECT_NEAR(info.alpha(), 1.0 / 3.0, 1e-9);
    EXPECT_EQ(info.bytes_per_token(), 128);
    EXPECT_DOUBLE_EQ(info.compression_ratio(), 1.0);
    EXPECT_NE(info.codec().find("none"), std::string::npos) << info.codec();
    // On disk: at least the f32 memory (in the WAL until a flush), plus texts and framing.
    EXPECT_EQ(info.store_tokens(), ingest.tokens());
    EXPECT_GT(info.store_bytes(), ingest.code_bytes());
    EXPECT_NEAR(info.store_bytes_per_token(), double(info.store_bytes()) / ingest.tokens(), 1e-9);
  }
  {
    const std::string metrics = testing::HttpGet(server_->http_port(), "/metrics").body;
    EXPECT_EQ(testing::MetricValue(metrics, "memoria_store_tokens"), ingest.tokens()) << metrics;
    const double bytes = testing::MetricValue(metrics, "memoria_store_bytes");
    EXPECT_GT(bytes, ingest.code_bytes());
    EXPECT_NEAR(testing::MetricValue(metrics, "memoria_store_bytes_per_token"),
                bytes / ingest.tokens(), 1e-6 * bytes);
    // codec "none" stores f32: with texts and framing on top, the ratio is just below 1.
    const double ratio = testing::MetricValue(metrics, "memoria_store_compression_ratio");
    EXPECT_GT(ratio, 0.5);
    EXPECT_LT(ratio, 1.0);
  }

  // The stored token ids are the FiD passage part, as `memoria build-store` writes them.
  {
    grpc::ClientContext context;
    v1::GetPassageRequest request;
    request.set_id("squad-2");
    v1::Passage passage;
    ASSERT_TRUE(stub_->GetPassage(&context, request, &passage).ok());
    auto tokenizer = Tokenizer::Open(tokenizer_);
    const std::vector<int> expected =
        FidPassageIds(**tokenizer, FidTemplate(), passages_[2].title, passages_[2].text, 2);
    EXPECT_EQ(std::vector<int>(passage.token_ids().begin(), passage.token_ids().end()), expected);
  }

  const std::string question = passages_[1].question;
  const std::vector<std::string> given = {"squad-1", "squad-3"};
  v1::GenerateReply greedy, again, beam, retrieved;
  status = Ask(question, given, 0, 0, &greedy);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_TRUE(Ask(question, given, 0, 0, &again).ok());
  EXPECT_EQ(Ids(greedy), Ids(again));  // deterministic
  EXPECT_GT(greedy.completion_tokens(), 0);
  EXPECT_EQ(greedy.passage_ids_size(), 2);
  EXPECT_EQ(greedy.retrieval_scores_size(), 0);
  EXPECT_GT(greedy.passage_tokens(), 100);
  EXPECT_EQ(greedy.prompt_tokens(), greedy.passage_tokens() + 2 * greedy.question_tokens());
  EXPECT_GT(greedy.timings().live_encoder_seconds(), 0);
  EXPECT_GT(greedy.timings().decoder_seconds(), 0);
  EXPECT_GT(greedy.timings().store_read_seconds(), 0);
  status = Ask(question, given, 0, 3, &beam);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // The answer depends on the passages (the equality checks below would be hollow otherwise).
  v1::GenerateReply other;
  ASSERT_TRUE(Ask(question, {"squad-0", "squad-2"}, 0, 0, &other).ok());
  EXPECT_NE(Ids(other), Ids(greedy));

  // The retriever: the question's passage first (its words: "Maria Curie", ...).
  status = Ask(question, {}, 2, 0, &retrieved);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(retrieved.passage_ids_size(), 2);
  EXPECT_EQ(retrieved.passage_ids(0), "squad-1") << question;
  ASSERT_EQ(retrieved.retrieval_scores_size(), 2);
  EXPECT_GE(retrieved.retrieval_scores(0), retrieved.retrieval_scores(1));
  for (int i = 0; i < 4; ++i) {
    v1::GenerateReply r;
    ASSERT_TRUE(Ask(passages_[i].question, {}, 1, 0, &r).ok());
    EXPECT_EQ(r.passage_ids(0), passages_[i].id) << passages_[i].question;
  }

  // Streaming carries the same tokens, then the summary.
  {
    grpc::ClientContext context;
    v1::GenerateRequest request;
    request.set_question(question);
    for (const auto& id : given) request.add_passage_ids(id);
    request.mutable_params()->set_max_new_tokens(6);
    auto reader = stub_->GenerateStream(&context, request);
    v1::GenerateStreamReply message;
    std::vector<int> streamed;
    v1::GenerateReply done;
    while (reader->Read(&message)) {
      if (message.has_done())
        done = message.done();
      else
        streamed.push_back(message.token_id());
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(streamed, Ids(greedy));
    EXPECT_EQ(Ids(done), Ids(greedy));
  }
  // Beam answers are streamed once the search is done: the same tokens as the unary reply.
  {
    grpc::ClientContext context;
    v1::GenerateRequest request;
    request.set_question(question);
    for (const auto& id : given) request.add_passage_ids(id);
    request.mutable_params()->set_max_new_tokens(6);
    request.mutable_params()->set_num_beams(3);
    auto reader = stub_->GenerateStream(&context, request);
    v1::GenerateStreamReply message;
    std::vector<int> streamed;
    while (reader->Read(&message)) {
      if (!message.has_done()) streamed.push_back(message.token_id());
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(streamed, Ids(beam));
  }
  {
    const std::string metrics = testing::HttpGet(server_->http_port(), "/metrics").body;
    const double answers = testing::MetricValue(metrics, "memoria_decoder_seconds_count");
    EXPECT_GT(answers, 0) << metrics;
    EXPECT_EQ(testing::MetricValue(metrics, "memoria_attention_seconds_count"), answers);
    EXPECT_GT(testing::MetricValue(metrics, "memoria_attention_seconds_sum"), 0);
    EXPECT_LT(testing::MetricValue(metrics, "memoria_attention_seconds_sum"),
              testing::MetricValue(metrics, "memoria_decoder_seconds_sum"));
  }

  // Unknown ids: NOT_FOUND naming each.
  v1::GenerateReply missing;
  status = Ask(question, {"squad-0", "nope-1", "nope-2"}, 0, 0, &missing);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(status.error_message().find("'nope-1', 'nope-2'"), std::string::npos)
      << status.error_message();
  // Wrong path and bad parameters.
  {
    grpc::ClientContext context;
    v1::GenerateRequest request;
    request.set_prompt("Once upon a time");
    v1::GenerateReply reply;
    EXPECT_EQ(stub_->Generate(&context, request, &reply).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  EXPECT_EQ(Ask(question, {}, 0, 0, &missing).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Ask(question, {"squad-0"}, 2, 0, &missing).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Ask(question, {"squad-0", "squad-0"}, 0, 0, &missing).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Ask(question, {"squad-0"}, 0, 99, &missing).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  Stop();
  EXPECT_EQ(Ids(greedy), Reference(question, given, 1));
  EXPECT_EQ(Ids(beam), Reference(question, given, 3));
  EXPECT_EQ(Ids(retrieved),
            Reference(question, {retrieved.passage_ids(0), retrieved.passage_ids(1)}, 1));
}

// Extractive answers (params.extractive): greedy and beam answers are runs of a passage's stored
// ids that begin a word, equal to the engine's in-process constrained search; the free answers of
// this random-weight reader are not.
TEST_F(LumenServerTest, ExtractiveAnswersAreSpansOfThePassagesRead) {
  Start();
  v1::IngestReply ingest;
  ASSERT_TRUE(Ingest(passages_, &ingest).ok());
  auto tokenizer = Tokenizer::Open(tokenizer_);
  ASSERT_TRUE(tokenizer.ok());
  const std::vector<uint8_t> piece_kinds = PieceKinds(**tokenizer);
  const std::vector<std::string> given = {"squad-1", "squad-3"};
  std::vector<std::vector<int>> read;
  for (int i : {1, 3}) {
    read.push_back(FidPassageIds(**tokenizer, FidTemplate(), passages_[i].title,
                                 passages_[i].text, SmallConfig().eos_token_id));
  }
  // Whole words of one passage (EOS excluded): from a word start to before a piece that does not
  // continue the last word.
  auto is_span = [&](const std::vector<int>& a) {
    if (a.empty() || piece_kinds[a[0]] != kBeginsWord) return false;
    for (const auto& p : read) {
      const auto text_end = p.end() - 1;  // the passage's EOS
      for (auto at = std::search(p.begin(), text_end, a.begin(), a.end()); at != text_end;
           at = std::search(at + 1, text_end, a.begin(), a.end())) {
        const auto after = at + static_cast<std::ptrdiff_t>(a.size());
        if (after == text_end || piece_kinds[*after] != kContinuesWord) return true;
      }
    }
    return false;
  };
  const std::string question = passages_[1].question;
  v1::GenerateReply free_answer, greedy, beam;
  ASSERT_TRUE(Ask(question, given, 0, 0, &free_answer).ok());
  grpc::Status status = Ask(question, given, 0, 0, &greedy, "", /*extractive=*/true);
  ASSERT_TRUE(status.ok()) << status.error_message();
  status = Ask(question, given, 0, 3, &beam, "", /*extractive=*/true);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(is_span(Ids(free_answer)));
  EXPECT_TRUE(is_span(Ids(greedy))) << greedy.text();
  EXPECT_TRUE(is_span(Ids(beam))) << beam.text();
  EXPECT_EQ(greedy.passage_ids_size(), 2);

  // A span ends at EOS: ignore_eos with extractive is refused, with the reason.
  {
    grpc::ClientContext context;
    v1::GenerateRequest request;
    request.set_question(question);
    for (const auto& id : given) request.add_passage_ids(id);
    request.mutable_params()->set_extractive(true);
    request.mutable_params()->set_ignore_eos(true);
    v1::GenerateReply reply;
    status = stub_->Generate(&context, request, &reply);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(status.error_message().find("extractive"), std::string::npos)
        << status.error_message();
  }
  Stop();
  EXPECT_EQ(Ids(greedy), Reference(question, given, 1, 0, true));
  EXPECT_EQ(Ids(beam), Reference(question, given, 3, 0, true));
}

TEST_F(LumenServerTest, CorruptPassageIsDataLossOthersServedDeleteReachesRetriever) {
  Start();
  v1::IngestReply ingest;
  ASSERT_TRUE(Ingest(passages_, &ingest).ok());
  Stop();
  {
    // Flip one byte of squad-3's stored memory value (its checksum then fails).
    std::unique_ptr<PassageStore> store;
    ASSERT_TRUE(PassageStore::Open(PassageStoreOptions{}, store_dir_, nullptr, &store).ok());
    auto raw = store->GetRawMemoryValueForTest("squad-3");
    ASSERT_TRUE(raw.ok());
    std::string value = *raw;
    value[value.size() / 2] ^= 0x40;
    ASSERT_TRUE(store->PutRawMemoryValueForTest("squad-3", value).ok());
  }
  // The checksum verification at start finds the corrupt record before any request (each mode
  // that reads squad-3's memory: "full" by default for a small store, "sample" of all 4; "off"
  // reads none), and the server still turns ready.
  for (const char* mode : {"off", "sample"}) {
    Start([&](v1::ServerConfig* c) {
      c->mutable_t5()->set_store_verify_at_start(mode);
      c->mutable_t5()->set_store_verify_sample_passages(4);
    });
    EXPECT_EQ(testing::HttpGet(server_->http_port(), "/readyz").status, 200);
    EXPECT_EQ(testing::MetricValue(testing::HttpGet(server_->http_port(), "/metrics").body,
                                   "memoria_data_loss_total"),
              std::string(mode) == "off" ? 0 : 1)
        << mode;
    Stop();
  }
  Start();  // the BM25 index is rebuilt from the store's 4 passages
  {
    const std::string metrics = testing::HttpGet(server_->http_port(), "/metrics").body;
    EXPECT_EQ(testing::MetricValue(metrics, "memoria_data_loss_total"), 1) << metrics;
    EXPECT_EQ(testing::MetricValue(metrics, "memoria_store_tokens"), ingest.tokens());
  }
  v1::GenerateReply reply;
  grpc::Status status = Ask(passages_[3].question, {"squad-0", "squad-3"}, 0, 0, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_NE(status.error_message().find("squad-3"), std::string::npos) << status.error_message();
  status = Ask(passages_[0].question, {"squad-0", "squad-2"}, 0, 0, &reply);
  EXPECT_TRUE(status.ok()) << status.error_message();
  const std::string metrics = testing::HttpGet(server_->http_port(), "/metrics").body;
  EXPECT_EQ(testing::MetricValue(metrics, "memoria_data_loss_total"), 2) << metrics;  // + the read
  EXPECT_EQ(testing::MetricValue(metrics, "memoria_store_passages"), 4);
  EXPECT_EQ(testing::MetricValue(metrics, "memoria_decoder_seconds_count"), 1);
  int64_t deleted_tokens = 0;
  for (const char* id : {"squad-1", "squad-3"}) {
    grpc::ClientContext context;
    v1::GetPassageRequest request;
    request.set_id(id);
    v1::Passage passage;
    ASSERT_TRUE(stub_->GetPassage(&context, request, &passage).ok());
    deleted_tokens += passage.token_ids_size();
  }

  ASSERT_TRUE(Ask(passages_[1].question, {}, 1, 0, &reply).ok());
  EXPECT_EQ(reply.passage_ids(0), "squad-1");
  {
    grpc::ClientContext context;
    v1::DeletePassagesRequest request;
    request.add_ids("squad-1");
    request.add_ids("squad-3");  // the corrupt one: the retriever must not pick it either
    v1::DeletePassagesReply deleted;
    ASSERT_TRUE(stub_->DeletePassages(&context, request, &deleted).ok());
    EXPECT_EQ(deleted.deleted(), 2);
  }
  status = Ask(passages_[1].question, {}, 4, 0, &reply);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_GE(reply.passage_ids_size(), 1);
  for (const auto& id : reply.passage_ids()) {
    EXPECT_NE(id, "squad-1");
    EXPECT_NE(id, "squad-3");
  }
  const std::string after = testing::HttpGet(server_->http_port(), "/metrics").body;
  EXPECT_EQ(testing::MetricValue(after, "memoria_store_passages"), 2);
  EXPECT_EQ(testing::MetricValue(after, "memoria_store_tokens"), ingest.tokens() - deleted_tokens);
  Stop();
}

TEST_F(LumenServerTest, UnknownStoreVerifyModeIsAConfigError) {
  v1::ServerConfig config = Config();
  config.mutable_t5()->set_store_verify_at_start("fast");
  Status status = ApplyDefaultsAndValidate(&config);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("t5.store_verify_at_start"), std::string::npos) << status.ToString();
  EXPECT_NE(status.message().find("\"fast\""), std::string::npos) << status.ToString();
}

TEST_F(LumenServerTest, PqStoreWithoutCodebooksRefusesIngestWithBuildStoreHint) {
  v1::ServerConfig config = Config();
  config.set_store_codec("pq:g=8,bits=8");
  ASSERT_TRUE(ApplyDefaultsAndValidate(&config).ok());
  Status started = testing::StartInProcessServer(config, &server_);
  ASSERT_TRUE(started.ok()) << started.ToString();
  stub_ = testing::LoopbackStub(server_->grpc_port());
  v1::IngestReply ingest;
  grpc::Status status = Ingest({passages_[0]}, &ingest);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("memoria build-store"), std::string::npos)
      << status.error_message();
  EXPECT_FALSE(fs::exists(store_dir_ + "/CURRENT"));  // nothing half-made on disk
  Stop();
}

// A PQ store made by `memoria build-store`'s library (k-means codebooks on its passages): the
// server accepts it, ingests more passages with its codebooks, and answers from PQ-decoded memory
// exactly as the engine does on PassageStore::GetMemory; a config asking another codec is refused.
TEST_F(LumenServerTest, PqStoreFromBuildStoreIngestsAndAnswersLikeTheEngine) {
  const std::string corpus = root_ + "/oxygen.jsonl";
  {
    std::ifstream in(testing::SharedPath("data/qa/squad-v1.1-dev-part1.json"));
    const auto article = nlohmann::json::parse(in)["data"][4];  // "Oxygen"
    std::ofstream out(corpus);
    for (int i = 0; i < 20; ++i) {
      out << nlohmann::json{{"id", "oxygen-" + std::to_string(i)},
                            {"title", "Oxygen"},
                            {"text", article["paragraphs"][i]["context"]}}
                 .dump()
          << "\n";
    }
  }
  StoreBuildOptions build;
  build.corpus_path = corpus;
  build.model_dir = model_dir_;
  build.tokenizer_path = tokenizer_;
  build.store_dir = store_dir_;
  build.codec = "pq:g=8,bits=8";
  build.extra_codecs = {"btr", "none"};  // every passage also as 1-bit BTR and as f32 rows
  build.train_tokens = 1024;
  build.threads = 1;
  build.sync = false;
  StoreBuildReport report;
  Status built = BuildStore(build, nullptr, &report);
  ASSERT_TRUE(built.ok()) << built.ToString();

  {
    v1::ServerConfig config = Config();
    config.set_store_codec("none");  // the store holds pq: refused, naming both
    ASSERT_TRUE(ApplyDefaultsAndValidate(&config).ok());
    MemoriaServer server(config);
    ASSERT_TRUE(server.Listen().ok());
    Status loaded = server.LoadAndServe();
    EXPECT_EQ(loaded.code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(loaded.message().find("pq(d=32, g=8, C=256)"), std::string::npos)
        << loaded.ToString();
    EXPECT_NE(loaded.message().find("none(d=32"), std::string::npos) << loaded.ToString();
  }

  Start();
  v1::IngestReply ingest;
  grpc::Status status = Ingest(passages_, &ingest);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(ingest.ingested(), 4);
  // Per token: pq g = 8 one-byte ids + btr 32 / 8 sign bytes and a bf16 scale + none 4 * 32.
  EXPECT_EQ(ingest.code_bytes(), ingest.tokens() * (8 + 6 + 128));
  {
    grpc::ClientContext context;
    v1::ServerInfoReply info;
    ASSERT_TRUE(stub_->ServerInfo(&context, v1::ServerInfoRequest(), &info).ok());
    EXPECT_EQ(info.store_passages(), 24);
    EXPECT_EQ(info.bytes_per_token(), 8);
    EXPECT_DOUBLE_EQ(info.compression_ratio(), 16.0);  // 4 * 32 f32 bytes / 8
    ASSERT_EQ(info.store_codecs_size(), 3);
    EXPECT_EQ(info.store_codecs(0).codec(), "pq:g=8,bits=8");
    EXPECT_TRUE(info.store_codecs(0).primary());
    EXPECT_EQ(info.store_codecs(1).codec(), "btr");
    EXPECT_EQ(info.store_codecs(1).description(), "btr(d=32, scale=bf16)");
    EXPECT_EQ(info.store_codecs(1).bytes_per_token(), 6);
    EXPECT_FALSE(info.store_codecs(1).primary());
    EXPECT_EQ(info.store_codecs(2).codec(), "none");
    EXPECT_DOUBLE_EQ(info.store_codecs(2).compression_ratio(), 1.0);
  }
  const std::string question = passages_[2].question;
  const std::vector<std::string> given = {"squad-2", "oxygen-3", "squad-0"};
  v1::GenerateReply greedy, beam;
  status = Ask(question, given, 0, 0, &greedy);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_TRUE(Ask(question, given, 0, 2, &beam).ok());
  EXPECT_GT(greedy.timings().decompress_seconds(), 0);
  v1::GenerateReply oxygen;
  ASSERT_TRUE(Ask("What is the atomic number of oxygen?", {}, 3, 0, &oxygen).ok());
  EXPECT_EQ(oxygen.passage_ids(0).rfind("oxygen-", 0), 0u) << oxygen.passage_ids(0);
  EXPECT_EQ(greedy.codec(), "pq:g=8,bits=8");
  // The same question read from the other codecs' memory, chosen per request.
  v1::GenerateReply from_btr, from_f32, refused;
  ASSERT_TRUE(Ask(question, given, 0, 0, &from_btr, "btr").ok());
  EXPECT_EQ(from_btr.codec(), "btr");
  ASSERT_TRUE(Ask(question, given, 0, 2, &from_f32, "none").ok());
  EXPECT_EQ(from_f32.codec(), "none");
  for (const char* missing : {"btr:scale=f32", "pq:g=4", "zip"}) {
    status = Ask(question, given, 0, 0, &refused, missing);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << missing;
    EXPECT_NE(status.error_message().find("holds pq:g=8,bits=8, btr, none"), std::string::npos)
        << status.error_message();
  }
  Stop();
  EXPECT_EQ(Ids(greedy), Reference(question, given, 1));
  EXPECT_EQ(Ids(beam), Reference(question, given, 2));
  EXPECT_EQ(Ids(from_btr), Reference(question, given, 1, /*codec_index=*/1));
  EXPECT_EQ(Ids(from_f32), Reference(question, given, 2, /*codec_index=*/2));
}

// The real memoria-server binary serving the T5 model: ingest, ServerInfo, an answer by ids and
// one by retrieval, equal to the engine in-process; SIGTERM then drains and exits 0.
TEST_F(LumenServerTest, RealBinaryIngestsAndAnswersLikeTheEngine) {
  testing::ServerProcess process("model_dir: \"" + model_dir_ + "\"\ntokenizer_path: \"" +
                                 tokenizer_ + "\"\nstore_dir: \"" + store_dir_ +
                                 "\"\nthreads: 1\nworkers: 1\n");
  ASSERT_TRUE(process.WaitReady(120)) << process.Log();
  stub_ = v1::Memoria::NewStub(
      grpc::CreateChannel(process.target(), grpc::InsecureChannelCredentials()));
  v1::IngestReply ingest;
  grpc::Status status = Ingest(passages_, &ingest);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(ingest.ingested(), 4);
  {
    grpc::ClientContext context;
    v1::ServerInfoReply info;
    ASSERT_TRUE(stub_->ServerInfo(&context, v1::ServerInfoRequest(), &info).ok());
    EXPECT_EQ(info.model_type(), "t5");
    EXPECT_EQ(info.store_passages(), 4);
  }
  const std::string question = passages_[0].question;
  v1::GenerateReply by_ids, retrieved;
  status = Ask(question, {"squad-0", "squad-2"}, 0, 0, &by_ids);
  ASSERT_TRUE(status.ok()) << status.error_message();
  status = Ask(question, {}, 1, 0, &retrieved);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(retrieved.passage_ids(0), "squad-0");
  // `memoria ask`, the command-line client: the same answer, and with --verbose the passage it
  // was read from, its BM25 score and its stored text.
  const std::string ask = testing::BuildDir() + "/tools/memoria ask --server " + process.target() +
                          " --max-new-tokens 6 --question '" + question + "'";
  auto [rc, asked] = testing::RunShell(ask);
  EXPECT_EQ(rc, 0) << asked;
  EXPECT_EQ(asked, retrieved.text() + "\n");
  auto [rc_verbose, verbose] = testing::RunShell(ask + " --verbose");
  EXPECT_EQ(rc_verbose, 0) << verbose;
  EXPECT_NE(verbose.find("passage squad-0 (bm25 "), std::string::npos) << verbose;
  EXPECT_NE(verbose.find(passages_[0].text.substr(0, 40)), std::string::npos) << verbose;
  // --extractive --beams 2 asks for the beam-searched passage span.
  v1::GenerateReply span;
  status = Ask(question, {}, 1, 2, &span, "", /*extractive=*/true);
  ASSERT_TRUE(status.ok()) << status.error_message();
  auto [rc_span, asked_span] = testing::RunShell(ask + " --extractive --beams 2");
  EXPECT_EQ(rc_span, 0) << asked_span;
  EXPECT_EQ(asked_span, span.text() + "\n");
  EXPECT_NE(passages_[0].text.find(span.text()), std::string::npos) << span.text();
  // A prompt is the LLaMA path: this T5 server says so, and the client exits 1.
  auto [rc_prompt, prompt] = testing::RunShell(testing::BuildDir() + "/tools/memoria ask --server " +
                                               process.target() + " --prompt 'Once upon'");
  EXPECT_EQ(rc_prompt, 1) << prompt;
  EXPECT_NE(prompt.find("UNIMPLEMENTED"), std::string::npos) << prompt;
  const std::string metrics = testing::HttpGet(process.http_port(), "/metrics").body;
  EXPECT_EQ(testing::MetricValue(metrics, "memoria_live_encoder_seconds_count"), 6) << metrics;
  EXPECT_EQ(testing::MetricValue(metrics, "memoria_ingested_passages_total"), 4);
  process.Signal(SIGTERM);
  EXPECT_EQ(process.WaitExit(60), 0) << process.Log();
  EXPECT_EQ(Ids(by_ids), Reference(question, {"squad-0", "squad-2"}, 1));
  EXPECT_EQ(Ids(retrieved), Reference(question, {"squad-0"}, 1));
}

TEST_F(LumenServerTest, RealBinaryRefusesAStoreOfAnotherLayerSplit) {
  Start();  // creates the store for alpha 1/3 (2 memory layers)
  v1::IngestReply ingest;
  ASSERT_TRUE(Ingest({passages_[0]}, &ingest).ok());
  Stop();
  // alpha 1 = FiD: 0 memory layers, so the stored memory (after 2 layers) does not fit.
  testing::ServerProcess process("model_dir: \"" + model_dir_ + "\"\ntokenizer_path: \"" +
                                 tokenizer_ + "\"\nstore_dir: \"" + store_dir_ +
                                 "\"\nthreads: 1\nt5 { alpha: 1 }\n");
  EXPECT_EQ(process.WaitExit(60), 1) << process.Log();
  const std::string log = process.Log();
  EXPECT_NE(log.find("layer split 2"), std::string::npos) << log;  // the store's
  EXPECT_NE(log.find("layer split 0"), std::string::npos) << log;  // the server's
  EXPECT_NE(log.find(store_dir_), std::string::npos) << log;
}

// The Python grpcio client's T5 path (tests/server_client.py --model t5) against this server:
// Ingest, Generate by ids and by retrieval, GenerateStream, ServerInfo, health, NOT_FOUND.
TEST_F(LumenServerTest, PythonGrpcioClientT5Path) {
  Start();
  const std::string command = testing::Python() + " " + testing::SourceDir() +
                              "/tests/server_client.py --model t5 --target 127.0.0.1:" +
                              std::to_string(server_->grpc_port()) + " --proto-dir " +
                              testing::SourceDir() + "/proto";
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  Stop();
}

// A T5 model slow enough (d 128, 6 + 6 layers, vocabulary 32000, 3 passages, 500 greedy tokens)
// that a request takes about a second on one thread, served by one worker with no queue: deadlines
// and cancellation must land inside the live encoder / decoder, free the worker within one layer or
// token, and let the next request in at once. Greedy tokens are streamed as they are generated.
class LumenSlowServerTest : public LumenServerTest {
 protected:
  void SetUp() override {
    LumenServerTest::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    T5Config c = SmallConfig();
    c.d_model = 128;
    c.d_kv = 16;
    c.num_heads = 8;
    c.d_ff = 512;
    c.num_layers = 6;
    c.num_decoder_layers = 6;
    ASSERT_TRUE(WriteRandomT5ModelDir(c, 7, model_dir_).ok());
    passages_ = ReadSquad(3);
  }

  v1::GenerateRequest LongRequest(int max_new_tokens) const {
    v1::GenerateRequest request;
    request.set_question(passages_[0].question);
    for (const auto& p : passages_) request.add_passage_ids(p.id);
    request.mutable_params()->set_max_new_tokens(max_new_tokens);
    request.mutable_params()->set_ignore_eos(true);
    return request;
  }
  double Metric(const std::string& series) const {
    return testing::MetricValue(testing::HttpGet(server_->http_port(), "/metrics").body, series);
  }
  // Seconds until `series` reaches `value` (polled every ms), or -1 after 5 s.
  double SecondsUntil(const std::string& series, double value) const {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 5000; ++i) {
      if (Metric(series) == value)
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return -1;
  }
};

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

TEST_F(LumenSlowServerTest, DeadlineAndCancelStopComputeAndFreeTheWorker) {
  Start([](v1::ServerConfig* c) {
    c->set_workers(1);
    c->set_queue_capacity(0);
  });
  v1::IngestReply ingest;
  grpc::Status status = Ingest(passages_, &ingest);
  ASSERT_TRUE(status.ok()) << status.error_message();

  // Unhindered, the long request takes well over the 100 ms deadline used below.
  v1::GenerateReply full;
  auto t0 = Clock::now();
  {
    grpc::ClientContext context;
    status = stub_->Generate(&context, LongRequest(500), &full);
  }
  const double full_seconds = Since(t0);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(full.completion_tokens(), 500);
  ASSERT_GT(full_seconds, 0.4) << "the model is too fast for this test";
  ASSERT_GT(full.timings().live_encoder_seconds(), 0.001);

  // A 100 ms deadline: DEADLINE_EXCEEDED, and the server stops computing within one encoder layer
  // or decoder token (its request is recorded as finished) well before the full time.
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
    v1::GenerateReply reply;
    t0 = Clock::now();
    status = stub_->Generate(&context, LongRequest(500), &reply);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    const double waited =
        SecondsUntil("memoria_requests_total{method=\"Generate\",code=\"DEADLINE_EXCEEDED\"}", 1);
    ASSERT_GE(waited, 0) << "the server never finished the request";
    // The deadline plus one encoder layer or decoder step (tens of ms, more on a loaded machine).
    EXPECT_LT(Since(t0), 0.2) << "server stopped " << Since(t0) << " s after the start";
    EXPECT_EQ(Metric("memoria_request_failures_total{reason=\"deadline\"}"), 1);
    EXPECT_GE(SecondsUntil("memoria_workers_busy", 0), 0);
  }
  // The next request is served (one worker, no queue: it would be RESOURCE_EXHAUSTED if busy).
  {
    grpc::ClientContext context;
    v1::GenerateReply reply;
    status = stub_->Generate(&context, LongRequest(4), &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(std::vector<int>(reply.token_ids().begin(), reply.token_ids().end()),
              std::vector<int>(full.token_ids().begin(), full.token_ids().begin() + 4));
  }

  // A stream the client cancels after two tokens frees the worker at once.
  {
    grpc::ClientContext context;
    auto reader = stub_->GenerateStream(&context, LongRequest(500));
    v1::GenerateStreamReply message;
    std::vector<int> first;
    while (first.size() < 2 && reader->Read(&message)) {
      ASSERT_FALSE(message.has_done());
      first.push_back(message.token_id());
    }
    ASSERT_EQ(first, std::vector<int>(full.token_ids().begin(), full.token_ids().begin() + 2));
    t0 = Clock::now();
    context.TryCancel();
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
    const double freed = SecondsUntil("memoria_workers_busy", 0);
    ASSERT_GE(freed, 0);
    EXPECT_LT(Since(t0), 0.15) << "worker freed " << Since(t0) << " s after the cancel";
    grpc::ClientContext next_context;
    v1::GenerateReply reply;
    status = stub_->Generate(&next_context, LongRequest(2), &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_GE(SecondsUntil("memoria_request_failures_total{reason=\"cancelled\"}", 1), 0);
  }

  // Streaming: one message per token, sent as generated (the first arrives long before the
  // summary), the same tokens and text as the unary reply, the summary last.
  {
    grpc::ClientContext context;
    t0 = Clock::now();
    auto reader = stub_->GenerateStream(&context, LongRequest(200));
    v1::GenerateStreamReply message;
    std::vector<int> streamed;
    std::string text;
    double first_at = -1, done_at = -1;
    v1::GenerateReply done;
    while (reader->Read(&message)) {
      ASSERT_LT(done_at, 0) << "a message after the summary";
      if (message.has_done()) {
        done_at = Since(t0);
        done = message.done();
      } else {
        if (first_at < 0) first_at = Since(t0);
        streamed.push_back(message.token_id());
        text += message.text();
      }
    }
    ASSERT_TRUE(reader->Finish().ok());
    // Greedy with ignore_eos: the first 200 tokens of the unary 500-token reply.
    EXPECT_EQ(streamed, std::vector<int>(full.token_ids().begin(), full.token_ids().begin() + 200));
    EXPECT_EQ(std::vector<int>(done.token_ids().begin(), done.token_ids().end()), streamed);
    EXPECT_EQ(text, done.text());
    EXPECT_EQ(full.text().rfind(text, 0), 0u);  // a prefix of the unary text
    ASSERT_GT(done_at, 0);
    // Generated at the end, all tokens would arrive just before the summary.
    EXPECT_GT(done_at - first_at, 0.5 * done_at) << "first " << first_at << " s, done " << done_at;
  }
  Stop();
}

}  // namespace
}  // namespace memoria
