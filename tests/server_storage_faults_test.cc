// Storage faults under a T5 server (a tiny random-weight model, codec "none", loopback gRPC):
//   - on-disk corruption: a byte flipped inside the SST data block that holds one passage's
//     memory. The server starts and serves the other passages; a request reading the damaged
//     passage gets DATA_LOSS naming it (RocksDB's block checksum catches the flip), counted in
//     memoria_data_loss_total, every time it is asked for; the passage's text record (another
//     column family) is still served.
//   - a byte flipped inside the text records' SST: the real binary refuses to start (exit 1)
//     naming the damage (see the test for why that, and not serving, is right).
//   - a store built with another codec: the real memoria-server binary refuses to start (exit 1)
//     naming both codecs.
//   - I/O errors: the store opened on a FaultInjectionFileSystem (storage/) behind the real
//     MemoriaService. The request whose store read fails gets UNAVAILABLE -- an I/O error says
//     nothing about the data (the bytes may be fine), so the client may retry, unlike DATA_LOSS --
//     and the next request succeeds with the same answer; a failed WAL write fails that Ingest
//     with UNAVAILABLE, acknowledges none of its passages, reads go on being served, and the next
//     Ingest reopens the store's database and succeeds (no restart).
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>
#include <rocksdb/options.h>
#include <rocksdb/sst_file_reader.h>
#include <rocksdb/table_properties.h>

#include <filesystem>

#include "base/testing.h"
#include "memoria.grpc.pb.h"
#include "server/config.h"
#include "server/lumen_loader.h"
#include "server/memoria_service.h"
#include "server/metrics.h"
#include "server/server.h"
#include "storage/fault_injection_file_system.h"
#include "storage/passage_store.h"
#include "tests/server_process.h"
#include "tests/tiny_t5_server.h"
#include "tools/random_t5_dir.h"

namespace memoria {
namespace {

namespace fs = std::filesystem;

class ServerStorageFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MEMORIA_REQUIRE_SHARED();
    root_ = testing::MakeTempDir("memoria-storage-faults");
    model_dir_ = root_ + "/model";
    ASSERT_TRUE(WriteRandomT5ModelDir(testing::TinyT5Config(), 13, model_dir_).ok());
    tokenizer_ = testing::SharedPath("models/llama2-tokenizer/tokenizer.model");
    store_dir_ = root_ + "/store";
    // 60 words: ~80 tokens x 128 bytes of f32 memory per passage, more than RocksDB's 4 KiB block
    // size, so every memory value sits in a data block of its own.
    for (int i = 0; i < 6; ++i)
      passages_.push_back(testing::MakePassage("p" + std::to_string(i), 60, i));
  }
  void TearDown() override {
    server_.reset();
    if (!root_.empty()) fs::remove_all(root_);
  }

  v1::ServerConfig Config(const std::string& store_dir) const {
    v1::ServerConfig config;
    config.set_listen_address("127.0.0.1:0");
    config.set_http_port(0);
    config.set_model_dir(model_dir_);
    config.set_tokenizer_path(tokenizer_);
    config.set_store_dir(store_dir);
    config.set_threads(1);
    config.set_workers(1);
    config.set_queue_capacity(4);
    config.set_log_level("warning");
    EXPECT_TRUE(ApplyDefaultsAndValidate(&config).ok());
    return config;
  }

  void Start() {
    Status started = testing::StartInProcessServer(Config(store_dir_), &server_);
    ASSERT_TRUE(started.ok()) << started.ToString();
    stub_ = testing::LoopbackStub(server_->grpc_port());
  }
  void Stop() {
    server_->Drain();
    server_.reset();
  }
  // Starts a server on a new store, ingests passages_, stops it.
  void BuildStore() {
    Start();
    v1::IngestReply reply;
    grpc::Status status = testing::IngestStream(stub_.get(), passages_, &reply);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(reply.ingested(), static_cast<int>(passages_.size()));
    Stop();
  }
  double Metric(const std::string& series) const {
    return testing::MetricValue(testing::HttpGet(server_->http_port(), "/metrics").body, series);
  }

  std::string root_, model_dir_, tokenizer_, store_dir_;
  std::vector<testing::TestPassage> passages_;
  std::unique_ptr<MemoriaServer> server_;
  std::unique_ptr<v1::Memoria::Stub> stub_;
};

TEST_F(ServerStorageFaultsTest, FlippedByteInAnSstIsDataLossForItsPassageOthersServed) {
  BuildStore();
  const std::string victim = "p3";
  {
    // Move everything into SST files and find the victim's memory value in one of them: the
    // memory column family is stored uncompressed, so the value's bytes appear verbatim.
    std::unique_ptr<PassageStore> store;
    ASSERT_TRUE(PassageStore::Open(PassageStoreOptions{}, store_dir_, nullptr, &store).ok());
    ASSERT_TRUE(store->Flush().ok());
    auto raw = store->GetRawMemoryValueForTest(victim);
    ASSERT_TRUE(raw.ok()) << raw.status().ToString();
    ASSERT_GT(raw->size(), 4096u);  // a data block of its own (see SetUp)
    store.reset();
    int found = 0;
    for (const auto& entry : fs::directory_iterator(store_dir_)) {
      if (entry.path().extension() != ".sst") continue;
      std::string bytes = testing::ReadFile(entry.path().string());
      const size_t at = bytes.find(*raw);
      if (at == std::string::npos) continue;
      ++found;
      bytes[at + raw->size() / 2] ^= 0x10;
      testing::WriteFile(entry.path().string(), bytes);
    }
    ASSERT_EQ(found, 1);
  }

  Start();  // RocksDB opens the store: the damage is inside a data block, read only on demand
  const double data_loss_at_start = Metric("memoria_data_loss_total");
  ASSERT_GE(data_loss_at_start, 0);
  for (int attempt = 1; attempt <= 2; ++attempt) {
    v1::GenerateReply reply;
    grpc::Status status = testing::AskWithPassages(stub_.get(), "what?", {"p0", victim}, &reply);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
    EXPECT_NE(status.error_message().find("passage '" + victim + "'"), std::string::npos)
        << status.error_message();
    EXPECT_NE(status.error_message().find("Corruption"), std::string::npos)  // RocksDB's checksum
        << status.error_message();
    EXPECT_EQ(Metric("memoria_data_loss_total"), data_loss_at_start + attempt);
  }
  // Every other passage is served, the victim's text record too.
  for (const auto& p : passages_) {
    v1::Passage got;
    grpc::Status status = testing::GetPassage(stub_.get(), p.id, &got);
    ASSERT_TRUE(status.ok()) << p.id << ": " << status.error_message();
    EXPECT_EQ(got.text(), p.text);
    if (p.id == victim) continue;
    v1::GenerateReply reply;
    status = testing::AskWithPassages(stub_.get(), "what?", {p.id}, &reply);
    EXPECT_TRUE(status.ok()) << p.id << ": " << status.error_message();
  }
  EXPECT_EQ(Metric("memoria_data_loss_total"), data_loss_at_start + 2);
  EXPECT_EQ(Metric("memoria_request_failures_total{reason=\"storage\"}"), 2);
  EXPECT_EQ(testing::HttpGet(server_->http_port(), "/readyz").status, 200);
  Stop();
}

// Damage in the text records is different: the server walks all of them at start (the store's
// token count, the sample it verifies), and a RocksDB iterator cannot step over a block that fails
// its checksum, so the passages behind it are unknown. Serving then would silently answer from an
// unknown part of the store; the server refuses to start instead (exit 1), naming the store, the
// damaged file and offset, so that the operator restores the store (or rebuilds it with
// `memoria build-store`).
TEST_F(ServerStorageFaultsTest, FlippedByteInTheTextRecordsMakesTheRealBinaryExit1NamingIt) {
  BuildStore();
  {
    std::unique_ptr<PassageStore> store;
    ASSERT_TRUE(PassageStore::Open(PassageStoreOptions{}, store_dir_, nullptr, &store).ok());
    ASSERT_TRUE(store->Flush().ok());
  }
  int damaged = 0;
  for (const auto& entry : fs::directory_iterator(store_dir_)) {
    if (entry.path().extension() != ".sst") continue;
    // The SST's table properties name its column family (passage_store.h: "passages").
    rocksdb::SstFileReader reader{rocksdb::Options()};
    ASSERT_TRUE(reader.Open(entry.path().string()).ok());
    if (reader.GetTableProperties()->column_family_name != "passages") continue;
    std::string bytes = testing::ReadFile(entry.path().string());
    ASSERT_GT(bytes.size(), 200u);
    bytes[100] ^= 0x10;  // data blocks come first in a block-based table
    testing::WriteFile(entry.path().string(), bytes);
    ++damaged;
  }
  ASSERT_EQ(damaged, 1);
  testing::ServerProcess process("model_dir: \"" + model_dir_ + "\"\ntokenizer_path: \"" +
                                 tokenizer_ + "\"\nstore_dir: \"" + store_dir_ +
                                 "\"\nthreads: 1\n");
  EXPECT_EQ(process.WaitExit(60), 1) << process.Log();
  const std::string log = process.Log();
  EXPECT_NE(log.find("walking the passages of"), std::string::npos) << log;
  EXPECT_NE(log.find("Corruption: block checksum mismatch"), std::string::npos) << log;
  EXPECT_NE(log.find(store_dir_), std::string::npos) << log;
}

TEST_F(ServerStorageFaultsTest, RealBinaryRefusesAStoreOfAnotherCodecNamingBoth) {
  BuildStore();  // codec "none": f32 rows
  testing::ServerProcess process("model_dir: \"" + model_dir_ + "\"\ntokenizer_path: \"" +
                                 tokenizer_ + "\"\nstore_dir: \"" + store_dir_ +
                                 "\"\nstore_codec: \"none:bf16\"\nthreads: 1\n");
  EXPECT_EQ(process.WaitExit(60), 1) << process.Log();
  const std::string log = process.Log();
  EXPECT_NE(log.find("none(d=32, f32)"), std::string::npos) << log;   // the store's
  EXPECT_NE(log.find("none(d=32, bf16)"), std::string::npos) << log;  // the configured one
  EXPECT_NE(log.find(store_dir_), std::string::npos) << log;
}

// The real service and request path (MemoriaService -> LumenRunner -> PassageStore) over
// loopback gRPC, with the store opened on a FaultInjectionFileSystem: the wiring of
// LoadLumenServing, done here so that the store can be given that file system.
class FaultyStoreServer {
 public:
  FaultyStoreServer(const v1::ServerConfig& config, const std::string& store_dir,
                    std::shared_ptr<FaultInjectionFileSystem> faulty) {
    v1::ServerConfig no_store = config;
    no_store.set_store_dir("");
    auto serving = std::make_unique<ServingModel>();
    std::unique_ptr<PassageStore> unused;
    auto lumen = LoadLumenServing(no_store, 1, &metrics_, &unused);
    EXPECT_TRUE(lumen.ok()) << lumen.status().ToString();
    if (!lumen.ok()) return;
    serving->lumen = std::move(*lumen);
    LumenServing& l = *serving->lumen;

    PassageStoreOptions options;
    options.file_system = std::move(faulty);
    options.block_cache_bytes = 0;  // every request's read reaches the file system
    StoreIdentity expected;
    expected.model_fingerprint = l.fingerprint;
    expected.layer_split = l.lumen->memory_layers();
    expected.codec = *CodecSpec::Parse("none", l.lumen->model().config().d_model);
    Status opened = PassageStore::Open(options, store_dir, &expected, &serving->store);
    EXPECT_TRUE(opened.ok()) << opened.ToString();
    if (!opened.ok()) return;
    EXPECT_TRUE(serving->store->Flush().ok());  // reads come from SST files, not the memtable
    l.store = serving->store.get();
    l.no_store_reason.clear();
    l.runner = std::make_unique<LumenRunner>(l.lumen, l.store, 1, 4, 1, &metrics_);
    serving->limits.max_new_tokens = 512;  // as MemoriaServer::LoadAndServeT5
    serving->limits.default_new_tokens = 32;
    serving->limits.max_prompt_tokens = l.settings.max_question_tokens();

    service_ = std::make_unique<MemoriaService>(config, &metrics_);
    service_->StartServing(std::move(serving));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    EXPECT_GT(port, 0);
    stub_ = testing::LoopbackStub(port);
  }
  ~FaultyStoreServer() {
    if (server_) server_->Shutdown();
  }
  v1::Memoria::Stub* stub() const { return stub_.get(); }
  double Metric(const std::string& series) const {
    return testing::MetricValue(metrics_.RenderPrometheus(), series);
  }

 private:
  Metrics metrics_;
  std::unique_ptr<MemoriaService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Memoria::Stub> stub_;
};

TEST_F(ServerStorageFaultsTest, FailedStoreIoIsUnavailableForThatRequestAndTheServerGoesOn) {
  BuildStore();
  auto faulty = std::make_shared<FaultInjectionFileSystem>();
  FaultyStoreServer server(Config(store_dir_), store_dir_, faulty);
  ASSERT_NE(server.stub(), nullptr);
  using Op = FaultInjectionFileSystem::Op;

  const std::vector<std::string> ids = {"p1", "p4"};
  v1::GenerateReply before, failed, after;
  grpc::Status status = testing::AskWithPassages(server.stub(), "what?", ids, &before);
  ASSERT_TRUE(status.ok()) << status.error_message();

  // Request k = the next Generate: its first store read fails.
  faulty->FailNth(Op::kRead, 1);
  status = testing::AskWithPassages(server.stub(), "what?", ids, &failed);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_NE(status.error_message().find("injected fault: read"), std::string::npos)
      << status.error_message();
  EXPECT_EQ(faulty->injected(Op::kRead), 1);
  // The next one succeeds, with the same answer.
  status = testing::AskWithPassages(server.stub(), "what?", ids, &after);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(std::vector<int>(after.token_ids().begin(), after.token_ids().end()),
            std::vector<int>(before.token_ids().begin(), before.token_ids().end()));

  // The same for a passage's text record.
  faulty->FailNth(Op::kRead, 1);
  v1::Passage passage;
  status = testing::GetPassage(server.stub(), "p2", &passage);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  status = testing::GetPassage(server.stub(), "p2", &passage);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(passage.text(), passages_[2].text);

  // A failed WAL write: that Ingest fails UNAVAILABLE and acknowledges nothing, reads go on, and
  // the next Ingest reopens the store's database and succeeds (passage_store.h, Errors): no
  // restart needed.
  faulty->FailNth(Op::kWrite, 1);
  v1::IngestReply ingest;
  status = testing::IngestStream(server.stub(), {testing::MakePassage("new-0", 8, 100)}, &ingest);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_NE(status.error_message().find("injected fault: write"), std::string::npos)
      << status.error_message();
  status = testing::GetPassage(server.stub(), "new-0", &passage);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
  status = testing::AskWithPassages(server.stub(), "what?", ids, &after);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(server.Metric("memoria_store_reopens_total"), 0);
  status = testing::IngestStream(server.stub(), {testing::MakePassage("new-1", 8, 101)}, &ingest);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(server.Metric("memoria_store_reopens_total"), 1);
  status = testing::GetPassage(server.stub(), "new-1", &passage);
  EXPECT_TRUE(status.ok()) << status.error_message();
  status = testing::GetPassage(server.stub(), "new-0", &passage);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
  status = testing::AskWithPassages(server.stub(), "what?", ids, &after);
  EXPECT_TRUE(status.ok()) << status.error_message();

  // I/O errors are not data loss.
  EXPECT_EQ(server.Metric("memoria_data_loss_total"), 0);
  EXPECT_EQ(server.Metric("memoria_request_failures_total{reason=\"unavailable\"}"), 3);
}

}  // namespace
}  // namespace memoria
