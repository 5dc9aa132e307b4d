#include "server/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "base/testing.h"

namespace memoria {
namespace {

std::string WriteConfig(const std::string& text) {
  const std::string path = testing::MakeTempDir("memoria-config") + "/c.textproto";
  std::ofstream(path) << text;
  return path;
}

TEST(ServerConfigTest, DefaultsFillUnsetFields) {
  auto config = LoadServerConfig(WriteConfig("model_dir: \"m\"\n"), {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->listen_address(), "127.0.0.1:50051");
  EXPECT_EQ(config->tokenizer_path(), "m/tokenizer.model");
  EXPECT_EQ(config->workers(), 1);
  EXPECT_EQ(config->queue_capacity(), 0);
  EXPECT_EQ(config->max_receive_message_bytes(), 4 << 20);
  EXPECT_EQ(config->drain_timeout_seconds(), 30);
  EXPECT_FALSE(config->enable_reflection());
}

TEST(ServerConfigTest, FlagsOverrideTheFile) {
  ConfigOverrides overrides;
  overrides.port = 6000;
  overrides.http_port = 6001;
  overrides.model_dir = "other";
  auto config = LoadServerConfig(
      WriteConfig("listen_address: \"0.0.0.0:50051\"\nmodel_dir: \"m\"\n"), overrides);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->listen_address(), "0.0.0.0:6000");
  EXPECT_EQ(config->http_port(), 6001);
  EXPECT_EQ(config->model_dir(), "other");
}

TEST(ServerConfigTest, ErrorsNameTheProblem) {
  auto parse = LoadServerConfig(WriteConfig("model_dir: \"m\"\nworkers: two\n"), {});
  EXPECT_EQ(parse.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(parse.status().message().find("line 2"), std::string::npos) << parse.status().message();
  auto range = LoadServerConfig(WriteConfig("model_dir: \"m\"\nworkers: -2\n"), {});
  EXPECT_NE(range.status().message().find("workers must be in [1, 256], got -2"), std::string::npos)
      << range.status().message();
  auto missing_model = LoadServerConfig(WriteConfig("workers: 2\n"), {});
  EXPECT_NE(missing_model.status().message().find("model_dir is required"), std::string::npos);
  EXPECT_EQ(LoadServerConfig("/nonexistent/config.textproto", {}).status().code(),
            StatusCode::kNotFound);
}

TEST(ServerConfigTest, ModelKindIsDetectedAndT5SettingsGetDefaults) {
  const std::string dir = testing::MakeTempDir("memoria-config-t5");
  std::ofstream(dir + "/config.json") << "{\"model_type\": \"t5\", \"d_model\": 32}";
  std::ofstream(dir + "/spiece.model") << "x";
  auto config = LoadServerConfig(WriteConfig("model_dir: \"" + dir + "\"\n"), {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->model_kind(), "t5");
  EXPECT_EQ(config->tokenizer_path(), dir + "/spiece.model");
  EXPECT_NEAR(config->t5().alpha(), 1.0 / 3.0, 1e-12);
  EXPECT_EQ(config->t5().question_prefix(), "question: ");
  EXPECT_EQ(config->t5().max_passage_tokens(), 256);
  // alpha 0 (a pure memory model) is a value, not "unset".
  auto zero = LoadServerConfig(WriteConfig("model_dir: \"" + dir + "\"\nt5 { alpha: 0 }\n"), {});
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero->t5().alpha(), 0.0);
  auto bad = LoadServerConfig(WriteConfig("model_dir: \"m\"\nt5 { alpha: 1.5 }\n"), {});
  EXPECT_NE(bad.status().message().find("t5.alpha must be in [0, 1], got 1.5"), std::string::npos)
      << bad.status().message();
  auto kind = LoadServerConfig(WriteConfig("model_dir: \"m\"\nmodel_kind: \"bert\"\n"), {});
  EXPECT_NE(kind.status().message().find("model_kind must be"), std::string::npos);
  // A LLaMA dir (no model_type t5) keeps the LLaMA defaults.
  auto llama = LoadServerConfig(WriteConfig("model_dir: \"m\"\n"), {});
  EXPECT_EQ(llama->model_kind(), "llama");
}

TEST(ServerConfigTest, TheShippedT5ConfigIsValid) {
  auto config = LoadServerConfig(testing::SourceDir() + "/configs/t5_lumen.textproto", {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->model_kind(), "t5");
  EXPECT_FALSE(config->store_dir().empty());
}

TEST(ServerConfigTest, TheShippedDefaultConfigIsValid) {
  auto config = LoadServerConfig(testing::SourceDir() + "/configs/default.textproto", {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->model_dir(), "build/models/stories260K");
  EXPECT_EQ(config->http_port(), 8080);
}

}  // namespace
}  // namespace memoria
