// The states an in-process MemoriaServer shows the outside: listening but loading (health
// NOT_SERVING, /readyz 503 "loading model", calls UNAVAILABLE), ready (SERVING, 200), draining.
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

}  // namespace
}  // namespace memoria
