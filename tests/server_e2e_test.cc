// End-to-end tests of the real memoria-server binary on 127.0.0.1 with free ports, driven by real
// gRPC clients (C++ here, Python grpcio in ServerPython*): completions of the real stories260K
// model (greedy output equals the known story), streaming, ServerInfo, the standard health
// service, the HTTP probes and metrics, every request error path, deadlines and cancellation,
// overload shedding and a graceful SIGTERM drain. The slow-path tests use a random-weight model
// built by the test (tests/server_process.h) whose generations take seconds.
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/testing.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "memoria.grpc.pb.h"
#include "tests/server_process.h"
#include "tests/test_helpers.h"

namespace memoria {
namespace {

using Clock = std::chrono::steady_clock;
using testing::HttpGet;
using testing::MetricValue;
using testing::ServerProcess;

constexpr char kKnownStory[] = "Once upon a time, there was a little girl named Lily.";

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::unique_ptr<v1::Memoria::Stub> Connect(const ServerProcess& server) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(64 << 20);  // so oversized requests reach the server's limit
  return v1::Memoria::NewStub(
      grpc::CreateCustomChannel(server.target(), grpc::InsecureChannelCredentials(), args));
}

void SetDeadline(grpc::ClientContext* context, double seconds) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(
                            std::chrono::duration<double>(seconds)));
}

v1::GenerateRequest Prompt(const std::string& prompt, int max_new_tokens) {
  v1::GenerateRequest request;
  request.set_prompt(prompt);
  request.mutable_params()->set_max_new_tokens(max_new_tokens);
  return request;
}

double Metric(const ServerProcess& server, const std::string& series) {
  return MetricValue(HttpGet(server.http_port(), "/metrics").body, series);
}

// Polls /metrics until `series` equals `value` (metrics are recorded just after the reply is
// sent) or 5 s pass; returns the last value.
double AwaitMetric(const ServerProcess& server, const std::string& series, double value) {
  const auto start = Clock::now();
  double v = Metric(server, series);
  while (v != value && Since(start) < 5) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    v = Metric(server, series);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// The real stories260K model.

class ServerStoriesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::SharedDirAvailable()) return;
    model_ = new std::string(testing::ConvertStories260K());
    if (model_->empty()) return;
    server_ = new ServerProcess(
        "model_dir: \"" + *model_ +
        "\"\nthreads: 2\nworkers: 2\nqueue_capacity: 4\nmax_prompt_tokens: 64\n"
        "max_new_tokens: 256\nmax_receive_message_bytes: 1048576\nlog_level: \"warning\"\n");
    ready_ = server_->WaitReady();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    if (model_ && !model_->empty()) std::filesystem::remove_all(*model_);
    delete model_;
    model_ = nullptr;
  }
  void SetUp() override {
    MEMORIA_REQUIRE_SHARED();
    ASSERT_FALSE(model_->empty()) << "memoria convert-llama2c failed";
    ASSERT_TRUE(ready_) << "server did not become ready; its log:\n" << server_->Log();
    stub_ = Connect(*server_);
  }

  static std::string* model_;
  static ServerProcess* server_;
  static bool ready_;
  std::unique_ptr<v1::Memoria::Stub> stub_;
};
std::string* ServerStoriesTest::model_ = nullptr;
ServerProcess* ServerStoriesTest::server_ = nullptr;
bool ServerStoriesTest::ready_ = false;

TEST_F(ServerStoriesTest, GreedyGenerateReproducesTheKnownStory) {
  grpc::ClientContext context;
  SetDeadline(&context, 30);
  v1::GenerateReply reply;
  grpc::Status status = stub_->Generate(&context, Prompt("Once upon a time", 20), &reply);
  ASSERT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  const std::string full = "Once upon a time" + reply.text();
  EXPECT_EQ(full.rfind(kKnownStory, 0), 0u) << full;
  EXPECT_EQ(reply.stop_reason(), v1::STOP_REASON_MAX_TOKENS);
  EXPECT_EQ(reply.completion_tokens(), 20);
  EXPECT_EQ(reply.token_ids_size(), 20);
  EXPECT_GE(reply.prompt_tokens(), 2);  // BOS + the prompt's pieces
  EXPECT_GT(reply.timings().total_seconds(), 0);
  EXPECT_GE(reply.timings().total_seconds(), reply.timings().prefill_seconds());

  // A stop string cuts the text before it.
  grpc::ClientContext context2;
  SetDeadline(&context2, 30);
  v1::GenerateRequest request = Prompt("Once upon a time", 100);
  request.mutable_params()->add_stop("Lily");
  ASSERT_TRUE(stub_->Generate(&context2, request, &reply).ok());
  EXPECT_EQ(reply.text(), ", there was a little girl named ");
  EXPECT_EQ(reply.stop_reason(), v1::STOP_REASON_STOP_STRING);
}

TEST_F(ServerStoriesTest, StreamedTokensConcatenateToTheUnaryReply) {
  grpc::ClientContext unary_context;
  SetDeadline(&unary_context, 30);
  v1::GenerateReply unary;
  ASSERT_TRUE(stub_->Generate(&unary_context, Prompt("Once upon a time", 40), &unary).ok());

  grpc::ClientContext context;
  SetDeadline(&context, 30);
  auto reader = stub_->GenerateStream(&context, Prompt("Once upon a time", 40));
  v1::GenerateStreamReply message;
  std::string text;
  std::vector<int> ids;
  int summaries = 0;
  v1::GenerateReply done;
  while (reader->Read(&message)) {
    if (message.has_done()) {
      ++summaries;
      done = message.done();
      continue;
    }
    EXPECT_EQ(summaries, 0) << "token after the summary";
    text += message.text();
    ids.push_back(message.token_id());
  }
  grpc::Status status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(summaries, 1);
  EXPECT_EQ(text, unary.text());
  EXPECT_EQ(done.text(), unary.text());
  EXPECT_EQ(std::vector<int>(unary.token_ids().begin(), unary.token_ids().end()), ids);
  EXPECT_EQ(done.completion_tokens(), 40);
}

TEST_F(ServerStoriesTest, ServerInfoDescribesTheModelAndLimits) {
  grpc::ClientContext context;
  v1::ServerInfoReply info;
  ASSERT_TRUE(stub_->ServerInfo(&context, v1::ServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.model_type(), "llama");
  EXPECT_EQ(info.model_dir(), *model_);
  EXPECT_EQ(info.vocab_size(), 512);
  EXPECT_EQ(info.num_layers(), 5);
  EXPECT_EQ(info.hidden_size(), 64);
  EXPECT_EQ(info.max_sequence_length(), 512);
  EXPECT_EQ(info.max_prompt_tokens(), 64);
  EXPECT_EQ(info.max_new_tokens(), 256);
  EXPECT_EQ(info.workers(), 2);
  EXPECT_EQ(info.queue_capacity(), 4);
  EXPECT_EQ(info.threads_per_worker(), 1);
  EXPECT_FALSE(info.store_configured());
  EXPECT_FALSE(info.version().empty());
}

TEST_F(ServerStoriesTest, StandardHealthServiceSaysServing) {
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials()));
  for (const std::string service : {"", "memoria.v1.Memoria"}) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(&context, request, &response).ok()) << "service '" << service << "'";
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING)
        << "service '" << service << "'";
  }
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("no.such.Service");
  grpc::health::v1::HealthCheckResponse response;
  EXPECT_EQ(health->Check(&context, request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServerStoriesTest, HttpProbesAndPrometheusMetrics) {
  testing::HttpResult live = HttpGet(server_->http_port(), "/healthz");
  EXPECT_EQ(live.status, 200);
  EXPECT_NE(live.body.find("alive"), std::string::npos) << live.body;
  testing::HttpResult ready = HttpGet(server_->http_port(), "/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_NE(ready.body.find("\"ready\""), std::string::npos) << ready.body;
  EXPECT_EQ(HttpGet(server_->http_port(), "/no-such-page").status, 404);

  const std::string ok_series = "memoria_requests_total{method=\"Generate\",code=\"OK\"}";
  const double before = std::max(0.0, Metric(*server_, ok_series));
  const double generated_before = Metric(*server_, "memoria_generated_tokens_total");
  grpc::ClientContext context;
  v1::GenerateReply reply;
  ASSERT_TRUE(stub_->Generate(&context, Prompt("Once upon a time", 7), &reply).ok());
  EXPECT_EQ(AwaitMetric(*server_, ok_series, before + 1), before + 1);

  const std::string metrics = HttpGet(server_->http_port(), "/metrics").body;
  EXPECT_EQ(MetricValue(metrics, "memoria_generated_tokens_total"), generated_before + 7)
      << metrics;
  EXPECT_GE(MetricValue(metrics, "memoria_prompt_tokens_total"), reply.prompt_tokens());
  EXPECT_EQ(MetricValue(metrics, "memoria_request_duration_seconds_count{method=\"Generate\"}"),
            before + 1);
  EXPECT_GE(MetricValue(metrics, "memoria_queue_wait_seconds_count"), 1);
  EXPECT_EQ(MetricValue(metrics, "memoria_queue_wait_seconds_bucket{le=\"+Inf\"}"),
            MetricValue(metrics, "memoria_queue_wait_seconds_count"));
  EXPECT_EQ(MetricValue(metrics, "memoria_queue_size"), 0);
  EXPECT_EQ(MetricValue(metrics, "memoria_ready"), 1);
  // The generation's attention time (the warm-up's is counted too).
  EXPECT_GE(MetricValue(metrics, "memoria_attention_seconds_count"), 1);
  EXPECT_GT(MetricValue(metrics, "memoria_attention_seconds_sum"), 0);
  for (const char* reason :
       {"invalid", "overloaded", "deadline", "cancelled", "internal", "storage"}) {
    EXPECT_GE(MetricValue(metrics,
                          std::string("memoria_request_failures_total{reason=\"") + reason + "\"}"),
              0)
        << reason;
  }
  EXPECT_NE(metrics.find("# TYPE memoria_request_duration_seconds histogram"), std::string::npos);
}

TEST_F(ServerStoriesTest, EveryErrorPathHasItsCodeAndMessage) {
  struct Case {
    const char* name;
    std::function<void(v1::GenerateRequest*)> edit;
    grpc::StatusCode code;
    std::string message;
  };
  std::string long_prompt;
  for (int i = 0; i < 100; ++i) long_prompt += "the cat sat on the mat ";
  const std::vector<Case> cases = {
      {"empty prompt", [](auto* r) { r->set_prompt(""); }, grpc::StatusCode::INVALID_ARGUMENT,
       "prompt is empty"},
      {"prompt too long", [&](auto* r) { r->set_prompt(long_prompt); },
       grpc::StatusCode::INVALID_ARGUMENT, "tokens, more than the limit of 64"},
      {"negative temperature", [](auto* r) { r->mutable_params()->set_temperature(-1); },
       grpc::StatusCode::INVALID_ARGUMENT, "temperature must be a finite number >= 0, got -1"},
      {"top_p above 1", [](auto* r) { r->mutable_params()->set_top_p(1.5f); },
       grpc::StatusCode::INVALID_ARGUMENT, "top_p must be in (0, 1], got 1.5"},
      {"negative top_k", [](auto* r) { r->mutable_params()->set_top_k(-3); },
       grpc::StatusCode::INVALID_ARGUMENT, "top_k must be >= 0, got -3"},
      {"too many new tokens", [](auto* r) { r->mutable_params()->set_max_new_tokens(100000); },
       grpc::StatusCode::INVALID_ARGUMENT,
       "max_new_tokens must be in [0, 256] (0 = default 128), got 100000"},
      {"negative new tokens", [](auto* r) { r->mutable_params()->set_max_new_tokens(-1); },
       grpc::StatusCode::INVALID_ARGUMENT, "got -1"},
      {"empty stop string", [](auto* r) { r->mutable_params()->add_stop(""); },
       grpc::StatusCode::INVALID_ARGUMENT, "stop string 0 is empty"},
      {"too many stop strings",
       [](auto* r) {
         for (int i = 0; i < 17; ++i) r->mutable_params()->add_stop("x");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "at most 16 stop strings, got 17"},
      {"LUMEN question", [](auto* r) { r->set_question("who?"); }, grpc::StatusCode::UNIMPLEMENTED,
       "T5/LUMEN path"},
      {"LUMEN passage ids", [](auto* r) { r->add_passage_ids("p1"); },
       grpc::StatusCode::UNIMPLEMENTED, "T5/LUMEN path"},
      {"LUMEN store codec",
       [](auto* r) {
         r->set_prompt("Once");
         r->set_codec("btr");
       },
       grpc::StatusCode::UNIMPLEMENTED,
       "(question, passage_ids, retrieve_top_k, codec, extractive, num_beams, length_penalty)"},
      {"LUMEN beam search",
       [](auto* r) {
         r->set_prompt("Once");
         r->mutable_params()->set_num_beams(4);
       },
       grpc::StatusCode::UNIMPLEMENTED, "needs a server of a T5 model"},
      {"LUMEN extractive answer",
       [](auto* r) {
         r->set_prompt("Once");
         r->mutable_params()->set_extractive(true);
       },
       grpc::StatusCode::UNIMPLEMENTED, "needs a server of a T5 model"},
      {"message over max receive size", [](auto* r) { r->set_prompt(std::string(2 << 20, 'a')); },
       grpc::StatusCode::RESOURCE_EXHAUSTED, "larger than max"},
  };
  const std::string invalid = "memoria_request_failures_total{reason=\"invalid\"}";
  const double invalid_before = Metric(*server_, invalid);
  int invalid_cases = 0;
  for (const Case& c : cases) {
    v1::GenerateRequest request = Prompt("Once upon a time", 4);
    c.edit(&request);
    for (bool stream : {false, true}) {
      grpc::ClientContext context;
      SetDeadline(&context, 30);
      grpc::Status status;
      if (stream) {
        auto reader = stub_->GenerateStream(&context, request);
        v1::GenerateStreamReply message;
        int messages = 0;
        while (reader->Read(&message)) ++messages;
        status = reader->Finish();
        EXPECT_EQ(messages, 0) << c.name;
      } else {
        v1::GenerateReply reply;
        status = stub_->Generate(&context, request, &reply);
      }
      EXPECT_EQ(status.error_code(), c.code)
          << c.name << (stream ? " (stream)" : "") << ": " << status.error_message();
      EXPECT_NE(status.error_message().find(c.message), std::string::npos)
          << c.name << (stream ? " (stream)" : "") << ": '" << status.error_message() << "' lacks '"
          << c.message << "'";
      if (c.code == grpc::StatusCode::INVALID_ARGUMENT) ++invalid_cases;
    }
  }
  EXPECT_EQ(AwaitMetric(*server_, invalid, invalid_before + invalid_cases),
            invalid_before + invalid_cases);

  // Passage calls on a server without a store.
  {
    grpc::ClientContext context;
    v1::GetPassageRequest request;
    request.set_id("p1");
    v1::Passage passage;
    grpc::Status status = stub_->GetPassage(&context, request, &passage);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_NE(status.error_message().find("no passage store is configured"), std::string::npos)
        << status.error_message();
  }
  {
    grpc::ClientContext context;
    v1::DeletePassagesRequest request;
    request.add_ids("p1");
    v1::DeletePassagesReply reply;
    grpc::Status status = stub_->DeletePassages(&context, request, &reply);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_NE(status.error_message().find("no passage store is configured"), std::string::npos)
        << status.error_message();
  }
  // Reflection is off by default: its method does not exist.
  {
    grpc::GenericStub generic(
        grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    SetDeadline(&context, 10);
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1), response;
    std::promise<grpc::Status> done;
    generic.UnaryCall(&context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                      grpc::StubOptions(), &request, &response,
                      [&](grpc::Status status) { done.set_value(status); });
    EXPECT_EQ(done.get_future().get().error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
}

TEST_F(ServerStoriesTest, PythonGrpcioClient) {
  // Debian's python3-grpcio (scripts/setup.sh installs it); message classes generated here by
  // protoc, so the client needs no generated files in the repository.
  const std::string command = testing::Python() + " " + testing::SourceDir() +
                              "/tests/server_client.py --target " + server_->target() +
                              " --proto-dir " + testing::SourceDir() + "/proto";
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
}

TEST_F(ServerStoriesTest, ReflectionServesOnlyWhenEnabled) {
  // This suite's server has it off (the default); the Python client checks UNIMPLEMENTED there
  // (PythonGrpcioClient) and the listing here.
  ServerProcess server("model_dir: \"" + *model_ +
                       "\"\nthreads: 1\nenable_reflection: true\nlog_level: \"warning\"\n");
  ASSERT_TRUE(server.WaitReady()) << server.Log();
  const std::string command =
      testing::Python() + " " + testing::SourceDir() + "/tests/server_client.py --target " +
      server.target() + " --proto-dir " + testing::SourceDir() + "/proto --expect-reflection on";
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
}

// ---------------------------------------------------------------------------------------------
// A slow model: deadlines, cancellation, overload, drain.

class ServerSlowTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::SharedDirAvailable()) return;
    model_ = new std::string(testing::MakeSlowModel());
  }
  static void TearDownTestSuite() {
    if (model_ && !model_->empty())
      std::filesystem::remove_all(std::filesystem::path(*model_).parent_path());
    delete model_;
    model_ = nullptr;
  }
  void SetUp() override {
    MEMORIA_REQUIRE_SHARED();
    ASSERT_FALSE(model_->empty()) << "building the slow model failed";
  }
  // workers x 1 thread each.
  std::unique_ptr<ServerProcess> Start(int workers, int queue_capacity, double drain_seconds = 30) {
    auto server = std::make_unique<ServerProcess>(
        "model_dir: \"" + *model_ + "\"\nthreads: " + std::to_string(workers) + "\nworkers: " +
        std::to_string(workers) + "\nqueue_capacity: " + std::to_string(queue_capacity) +
        "\ndrain_timeout_seconds: " + std::to_string(drain_seconds) + "\nlog_level: \"info\"\n");
    EXPECT_TRUE(server->WaitReady()) << server->Log();
    return server;
  }
  // A request that takes seconds: EOS ignored, so it runs to max_new_tokens.
  static v1::GenerateRequest Long(int tokens) {
    v1::GenerateRequest request = Prompt("Once upon a time", tokens);
    request.mutable_params()->set_ignore_eos(true);
    return request;
  }
  static std::string* model_;
};
std::string* ServerSlowTest::model_ = nullptr;

TEST_F(ServerSlowTest, DeadlineStopsTheWorkAndTheNextRequestIsServed) {
  auto server = Start(/*workers=*/1, /*queue_capacity=*/0);
  auto stub = Connect(*server);
  // How long the long request would take: time a short one.
  {
    grpc::ClientContext context;
    v1::GenerateReply reply;
    ASSERT_TRUE(stub->Generate(&context, Long(100), &reply).ok());
    const double per_token = reply.timings().decode_seconds() / 99;
    ASSERT_GT(per_token * 2000, 1.0)
        << "the slow model is not slow here: " << per_token * 1e3 << " ms/token";
  }
  grpc::ClientContext context;
  SetDeadline(&context, 0.1);
  v1::GenerateReply reply;
  const auto start = Clock::now();
  grpc::Status status = stub->Generate(&context, Long(2000), &reply);
  const double wall = Since(start);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_LT(wall, 0.15);
  // With one worker and no queue, the next request is admitted only if the worker was freed.
  const auto next_start = Clock::now();
  grpc::Status next;
  for (int attempt = 0; attempt < 50; ++attempt) {
    grpc::ClientContext c;
    SetDeadline(&c, 10);
    next = stub->Generate(&c, Long(5), &reply);
    if (next.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(next.ok()) << next.error_message();
  EXPECT_LT(Since(next_start), 1.0) << "the worker was not freed promptly";
  EXPECT_EQ(AwaitMetric(*server, "memoria_request_failures_total{reason=\"deadline\"}", 1), 1);
  EXPECT_EQ(Metric(*server, "memoria_workers_busy"), 0);
}

TEST_F(ServerSlowTest, CancelledStreamFreesItsWorker) {
  auto server = Start(/*workers=*/1, /*queue_capacity=*/0);
  auto stub = Connect(*server);
  grpc::ClientContext context;
  auto reader = stub->GenerateStream(&context, Long(2000));
  v1::GenerateStreamReply message;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(reader->Read(&message));
  const auto cancel_time = Clock::now();
  context.TryCancel();
  while (reader->Read(&message)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The worker must be free long before the 2000 tokens would have been generated.
  EXPECT_EQ(AwaitMetric(*server, "memoria_request_failures_total{reason=\"cancelled\"}", 1), 1)
      << server->Log();
  EXPECT_EQ(AwaitMetric(*server, "memoria_workers_busy", 0), 0);
  EXPECT_LT(Since(cancel_time), 1.0);
  grpc::ClientContext next_context;
  SetDeadline(&next_context, 10);
  v1::GenerateReply reply;
  EXPECT_TRUE(stub->Generate(&next_context, Long(5), &reply).ok());
}

TEST_F(ServerSlowTest, OverloadIsShedWithResourceExhausted) {
  const int workers = 1, queue_capacity = 1, clients = 4 * (workers + queue_capacity);
  auto server = Start(workers, queue_capacity);
  const std::string overloaded = "memoria_request_failures_total{reason=\"overloaded\"}";
  ASSERT_EQ(Metric(*server, overloaded), 0);
  struct Result {
    grpc::Status status;
    double seconds = 0;
  };
  std::vector<Result> results(clients);
  std::vector<std::thread> threads;
  std::atomic<int> arrived{0};
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      auto stub = Connect(*server);
      grpc::ClientContext context;
      SetDeadline(&context, 120);
      v1::GenerateReply reply;
      // Start together so that all arrive while the first ones still run.
      arrived.fetch_add(1);
      while (arrived.load() < clients) std::this_thread::yield();
      const auto start = Clock::now();
      results[i].status = stub->Generate(&context, Long(300), &reply);
      results[i].seconds = Since(start);
    });
  }
  for (auto& t : threads) t.join();
  int ok = 0, exhausted = 0;
  for (const Result& r : results) {
    if (r.status.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << r.status.error_message();
      EXPECT_NE(r.status.error_message().find("queue capacity 1"), std::string::npos)
          << r.status.error_message();
      EXPECT_LT(r.seconds, 1.0) << "a refusal must come at once";
      ++exhausted;
    }
  }
  EXPECT_EQ(ok + exhausted, clients);
  EXPECT_GE(ok, workers + queue_capacity);
  EXPECT_GE(exhausted, clients / 2) << "ok " << ok;
  EXPECT_EQ(AwaitMetric(*server, overloaded, exhausted), exhausted);
  EXPECT_EQ(
      Metric(*server, "memoria_requests_total{method=\"Generate\",code=\"RESOURCE_EXHAUSTED\"}"),
      exhausted);
}

TEST_F(ServerSlowTest, SigtermDrainsInFlightRequestsAndExitsZero) {
  auto server = Start(/*workers=*/1, /*queue_capacity=*/0);
  auto stub = Connect(*server);
  std::promise<std::pair<grpc::Status, v1::GenerateReply>> in_flight;
  std::thread client([&] {
    grpc::ClientContext context;
    SetDeadline(&context, 120);
    v1::GenerateReply reply;
    grpc::Status status = stub->Generate(&context, Long(1200), &reply);
    in_flight.set_value({status, reply});
  });
  // Wait until the request is running on the worker.
  EXPECT_EQ(AwaitMetric(*server, "memoria_workers_busy", 1), 1);
  const auto signal_time = Clock::now();
  server->Signal(SIGTERM);
  // Readiness goes false at once while the request still runs.
  int ready_status = 200;
  while (ready_status == 200 && Since(signal_time) < 1.0) {
    ready_status = HttpGet(server->http_port(), "/readyz").status;
  }
  EXPECT_EQ(ready_status, 503);
  // New calls are refused while draining.
  {
    auto fresh = Connect(*server);
    grpc::ClientContext context;
    SetDeadline(&context, 5);
    v1::GenerateReply reply;
    grpc::Status status = fresh->Generate(&context, Long(5), &reply);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    EXPECT_EQ(status.error_message(), "the server is shutting down");
  }
  auto result = in_flight.get_future().get();
  client.join();
  EXPECT_TRUE(result.first.ok()) << result.first.error_code() << " "
                                 << result.first.error_message();
  EXPECT_EQ(result.second.completion_tokens(), 1200);
  EXPECT_EQ(server->WaitExit(30), 0) << server->Log();
}

TEST_F(ServerSlowTest, SecondSigtermExitsAtOnce) {
  auto server = Start(/*workers=*/1, /*queue_capacity=*/0, /*drain_seconds=*/600);
  auto stub = Connect(*server);
  std::thread client([&] {
    grpc::ClientContext context;
    SetDeadline(&context, 120);
    v1::GenerateReply reply;
    (void)stub->Generate(&context, Long(2000), &reply);
  });
  EXPECT_EQ(AwaitMetric(*server, "memoria_workers_busy", 1), 1);
  server->Signal(SIGTERM);
  // The first signal starts a drain that would wait for the 2000-token request...
  EXPECT_EQ(server->WaitExit(0.3), -1);
  // ...the second one ends the process at once, with a non-zero code (work was abandoned).
  const auto start = Clock::now();
  server->Signal(SIGTERM);
  EXPECT_EQ(server->WaitExit(5), 1) << server->Log();
  EXPECT_LT(Since(start), 1.0);
  client.join();
}

TEST(ServerStartupTest, UnusableModelDirExitsWithAClearMessage) {
  ServerProcess server("model_dir: \"/nonexistent/model\"\nlog_level: \"info\"\n");
  EXPECT_FALSE(server.WaitReady(20));
  EXPECT_EQ(server.WaitExit(20), 1);
  EXPECT_NE(server.Log().find("/nonexistent/model"), std::string::npos) << server.Log();
}

}  // namespace
}  // namespace memoria
