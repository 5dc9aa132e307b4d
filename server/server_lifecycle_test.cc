// The states an in-process MemoriaServer shows the outside: listening but loading (health
// NOT_SERVING, /readyz 503 "loading model", calls UNAVAILABLE), ready (SERVING, 200), draining;
// and a T5 server still not ready while it verifies its passage store.
#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "base/testing.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "memoria.grpc.pb.h"
#include "server/config.h"
#include "server/server.h"
#include "tests/server_process.h"
#include "tests/tiny_t5_server.h"

namespace memoria {
namespace {

grpc::health::v1::HealthCheckResponse::ServingStatus Health(const std::string& target) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, grpc::health::v1::HealthCheckRequest(), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.status();
}

TEST(ServerLifecycleTest, NotReadyWhileLoadingReadyAfterWarmUpNotReadyWhenDraining) {
  MEMORIA_REQUIRE_SHARED();
  const std::string model = testing::ConvertStories260K();
  ASSERT_FALSE(model.empty()) << "memoria convert-llama2c failed";
  v1::ServerConfig config;
  config.set_listen_address("127.0.0.1:0");
  config.set_http_port(0);
  config.set_model_dir(model);
  config.set_threads(1);
  ASSERT_TRUE(ApplyDefaultsAndValidate(&config).ok());
  MemoriaServer server(config);
  ASSERT_TRUE(server.Listen().ok());
  const std::string target = "127.0.0.1:" + std::to_string(server.grpc_port());
  auto stub = v1::Memoria::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));

  // Listening, model not loaded yet.
  EXPECT_EQ(Health(target), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  testing::HttpResult ready = testing::HttpGet(server.http_port(), "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_NE(ready.body.find("loading model"), std::string::npos) << ready.body;
  EXPECT_EQ(testing::HttpGet(server.http_port(), "/healthz").status, 200);
  {
    grpc::ClientContext context;
    v1::GenerateRequest request;
    request.set_prompt("Once");
    v1::GenerateReply reply;
    grpc::Status status = stub->Generate(&context, request, &reply);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(status.error_message(), "the model is loading");
  }

  ASSERT_TRUE(server.LoadAndServe().ok());
  EXPECT_EQ(Health(target), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(testing::HttpGet(server.http_port(), "/readyz").status, 200);
  EXPECT_EQ(
      testing::MetricValue(testing::HttpGet(server.http_port(), "/metrics").body, "memoria_ready"),
      1);

  server.Drain();
  // Both servers are closed after the drain.
  EXPECT_EQ(testing::HttpGet(server.http_port(), "/healthz").status, 0);
  std::filesystem::remove_all(model);
}

// The start-up store check runs before the server turns ready: while it runs, /readyz is 503
// naming it, health is NOT_SERVING and calls are refused. The observer runs on the loading thread
// at the start of each phase, so the probes below happen during the check, not around it.
TEST(ServerLifecycleTest, T5ServerIsNotReadyWhileItVerifiesItsStore) {
  MEMORIA_REQUIRE_SHARED();
  const std::string root = testing::MakeTempDir("memoria-lifecycle-t5");
  ASSERT_TRUE(WriteRandomT5ModelDir(testing::TinyT5Config(), 5, root + "/model").ok());
  v1::ServerConfig config;
  config.set_listen_address("127.0.0.1:0");
  config.set_http_port(0);
  config.set_model_dir(root + "/model");
  config.set_tokenizer_path(testing::SharedPath("models/llama2-tokenizer/tokenizer.model"));
  config.set_store_dir(root + "/store");
  config.set_threads(1);
  config.set_log_level("warning");
  ASSERT_TRUE(ApplyDefaultsAndValidate(&config).ok());
  {  // a store with passages to verify
    std::unique_ptr<MemoriaServer> first;
    const Status started = testing::StartInProcessServer(config, &first);
    ASSERT_TRUE(started.ok()) << started.ToString();
    auto stub = testing::LoopbackStub(first->grpc_port());
    v1::IngestReply reply;
    std::vector<testing::TestPassage> passages;
    for (int i = 0; i < 3; ++i) passages.push_back(testing::MakePassage("p" + std::to_string(i), 10, i));
    const grpc::Status ingested = testing::IngestStream(stub.get(), passages, &reply);
    ASSERT_TRUE(ingested.ok()) << ingested.error_message();
    first->Drain();
  }

  MemoriaServer server(config);
  ASSERT_TRUE(server.Listen().ok());
  const std::string target = "127.0.0.1:" + std::to_string(server.grpc_port());
  std::vector<std::string> phases;
  int probed = 0;
  server.SetStartupObserverForTest([&](const std::string& phase) {
    phases.push_back(phase);
    if (phase.rfind("verifying passage store", 0) != 0) return;
    ++probed;
    const testing::HttpResult ready = testing::HttpGet(server.http_port(), "/readyz");
    EXPECT_EQ(ready.status, 503);
    EXPECT_NE(ready.body.find("\"reason\":\"verifying passage store (full)\""), std::string::npos)
        << ready.body;
    EXPECT_EQ(Health(target), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
    auto stub = testing::LoopbackStub(server.grpc_port());
    v1::GenerateReply reply;
    const grpc::Status status = testing::AskWithPassages(stub.get(), "what?", {"p0"}, &reply);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  });
  const Status loaded = server.LoadAndServe();
  ASSERT_TRUE(loaded.ok()) << loaded.ToString();
  EXPECT_EQ(probed, 1);
  EXPECT_EQ(phases, (std::vector<std::string>{"loading model", "verifying passage store (full)"}));
  EXPECT_EQ(testing::HttpGet(server.http_port(), "/readyz").status, 200);
  EXPECT_EQ(Health(target), grpc::health::v1::HealthCheckResponse::SERVING);
  server.Drain();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace memoria
