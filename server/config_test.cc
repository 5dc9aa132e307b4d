#include "server/config.h"
#include "server/model_kind.h"

#include <gtest/gtest.h>

#include <fstream>

#include "base/testing.h"
#include "storage/codec.h"

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
  EXPECT_EQ(config->t5().store_verify_sample_passages(), 1000);
  EXPECT_EQ(config->t5().store_verify_full_max_passages(), 100000);
  EXPECT_EQ(config->t5().iceformer_min_keys(), 0);  // exact cross-attention unless asked
  auto ice = LoadServerConfig(
      WriteConfig("model_dir: \"m\"\nt5 { iceformer_min_keys: -1 }\n"), {});
  EXPECT_NE(ice.status().message().find("t5.iceformer_min_keys must be >= 0 (0 = off), got -1"),
            std::string::npos)
      << ice.status().message();
  auto verify = LoadServerConfig(
      WriteConfig("model_dir: \"m\"\nt5 { store_verify_at_start: \"fast\" }\n"), {});
  EXPECT_NE(verify.status().message().find("t5.store_verify_at_start must be"), std::string::npos)
      << verify.status().message();
  auto kind = LoadServerConfig(WriteConfig("model_dir: \"m\"\nmodel_kind: \"bert\"\n"), {});
  EXPECT_NE(kind.status().message().find("model_kind must be"), std::string::npos);
  // A LLaMA dir (no model_type t5) keeps the LLaMA defaults.
  auto llama = LoadServerConfig(WriteConfig("model_dir: \"m\"\n"), {});
  EXPECT_EQ(llama->model_kind(), "llama");
}

TEST(ServerConfigTest, TlsAndAuthFilesAreCheckedNamingFieldAndPath) {
  const std::string dir = testing::MakeTempDir("memoria-config-tls");
  const std::string cert = dir + "/server.crt", key = dir + "/server.key", ca = dir + "/ca.crt";
  const std::string tokens = dir + "/tokens";
  const std::string key_body = "bm90IGEgcmVhbCBrZXkgYnV0IHNlY3JldCBhbGwgdGhlIHNhbWU=";
  testing::WriteFile(cert, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  testing::WriteFile(ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  // An EC key as `openssl ecparam -genkey` writes it: parameters first, then the key.
  testing::WriteFile(key,
                     "-----BEGIN EC PARAMETERS-----\nBggq\n-----END EC PARAMETERS-----\n"
                     "-----BEGIN EC PRIVATE KEY-----\n" +
                         key_body + "\n-----END EC PRIVATE KEY-----\n");
  const std::string secret = "0123456789abcdefSECRET";
  testing::WriteFile(tokens, secret + "\n");
  auto load = [&](const std::string& text) {
    return LoadServerConfig(WriteConfig("model_dir: \"m\"\n" + text), {});
  };
  const std::string tls =
      "certificate_chain_file: \"" + cert + "\" private_key_file: \"" + key + "\"";

  auto ok =
      load("tls { " + tls + " client_ca_file: \"" + ca +
           "\" require_client_certificate: true }\nauth { token_file: \"" + tokens + "\" }\n");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_TRUE(ok->tls().require_client_certificate());
  EXPECT_EQ(ok->auth().token_file(), tokens);
  // Unset sections stay unset (plaintext, no tokens).
  auto plain = load("");
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->has_tls());
  EXPECT_FALSE(plain->has_auth());

  auto expect_error = [&](const std::string& text, StatusCode code, const std::string& message) {
    auto config = load(text);
    EXPECT_EQ(config.status().code(), code) << text << ": " << config.status().ToString();
    EXPECT_NE(config.status().message().find(message), std::string::npos)
        << config.status().message();
    EXPECT_EQ(config.status().message().find(secret), std::string::npos);
    EXPECT_EQ(config.status().message().find(key_body), std::string::npos);
  };
  expect_error("tls { }", StatusCode::kInvalidArgument,
               "tls.certificate_chain_file is required when tls is set");
  expect_error("tls { certificate_chain_file: \"" + cert + "\" }", StatusCode::kInvalidArgument,
               "tls.private_key_file is required when tls is set");
  expect_error(
      "tls { certificate_chain_file: \"" + dir + "/none.crt\" private_key_file: \"" + key + "\" }",
      StatusCode::kNotFound, "tls.certificate_chain_file: cannot read " + dir + "/none.crt");
  // A key where the certificate belongs (and the reverse) is named, its contents are not.
  expect_error("tls { certificate_chain_file: \"" + key + "\" private_key_file: \"" + key + "\" }",
               StatusCode::kInvalidArgument,
               "tls.certificate_chain_file " + key + " holds no PEM CERTIFICATE");
  expect_error(
      "tls { certificate_chain_file: \"" + cert + "\" private_key_file: \"" + cert + "\" }",
      StatusCode::kInvalidArgument, "tls.private_key_file " + cert + " holds no PEM PRIVATE KEY");
  expect_error("tls { " + tls + " require_client_certificate: true }", StatusCode::kInvalidArgument,
               "tls.require_client_certificate needs tls.client_ca_file");
  expect_error("tls { " + tls + " client_ca_file: \"" + dir + "/none\" }", StatusCode::kNotFound,
               "tls.client_ca_file: cannot read " + dir + "/none");
  expect_error("auth { }", StatusCode::kInvalidArgument,
               "auth.token_file is required when auth is set");
  expect_error("auth { token_file: \"" + dir + "/none\" }", StatusCode::kNotFound,
               "auth.token_file: cannot read " + dir + "/none");
  expect_error("auth { token_file: \"" + key + "\" }", StatusCode::kInvalidArgument,
               "auth.token_file " + key + " line 1: a token may hold only");
}

TEST(ServerConfigTest, TheShippedT5ConfigIsValid) {
  auto config = LoadServerConfig(testing::SourceDir() + "/configs/t5_lumen.textproto", {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->model_kind(), "t5");
  EXPECT_FALSE(config->store_dir().empty());
}

// One example per codec: each loads, and its store_codec parses for a d = 768 model.
TEST(ServerConfigTest, TheShippedCodecExamplesAreValid) {
  for (const auto& [file, codec] : {std::pair<std::string, std::string>{"t5_lumen_pq", "pq(d=768, g=96, C=256)"},
                                    {"t5_lumen_btr", "btr(d=768, scale=bf16)"},
                                    {"t5_lumen_bf16", "none(d=768, bf16)"}}) {
    auto config = LoadServerConfig(testing::SourceDir() + "/configs/" + file + ".textproto", {});
    ASSERT_TRUE(config.ok()) << file << ": " << config.status().ToString();
    EXPECT_EQ(config->model_kind(), "t5") << file;
    auto spec = CodecSpec::Parse(config->store_codec(), 768);
    ASSERT_TRUE(spec.ok()) << file << ": " << spec.status().ToString();
    EXPECT_EQ(spec->ToString(), codec) << file;
  }
}

// The default serves the shipped T5 reader (its config.json says t5) from a PQ store; the LLaMA
// setup is its own file. Both on loopback with the documented ports.
TEST(ServerConfigTest, TheShippedConfigsAreValid) {
  const std::string root = testing::SourceDir();
  auto config = LoadServerConfig(root + "/configs/default.textproto", {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->model_dir(), "models/squad-reader");
  EXPECT_EQ(config->http_port(), 8080);
  EXPECT_EQ(config->listen_address(), "127.0.0.1:50051");
  EXPECT_EQ(config->store_codec(), "pq:g=32,bits=8");
  // Kind detection reads the model dir relative to the working directory: from the source root.
  EXPECT_EQ(DetectModelKind(root + "/" + config->model_dir()), "t5");

  auto llama = LoadServerConfig(root + "/configs/stories260k.textproto", {});
  ASSERT_TRUE(llama.ok()) << llama.status().ToString();
  EXPECT_EQ(llama->model_dir(), "build/models/stories260K");
  EXPECT_EQ(llama->http_port(), 8080);
  EXPECT_EQ(llama->store_dir(), "");
}

}  // namespace
}  // namespace memoria
