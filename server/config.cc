#include "server/config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/lumen.h"
#include "server/bearer_token_auth.h"
#include "server/model_kind.h"

namespace memoria {
namespace {

// Collects the text-format parser's complaints so the error names the line and column.
class ErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (!first_.empty()) return;
    first_ = "line " + std::to_string(line + 1) + " column " + std::to_string(column + 1) + ": " +
             message;
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

Status ReplacePort(v1::ServerConfig* config, int port) {
  const std::string& address = config->listen_address();
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return InvalidArgumentError("listen_address '" + address + "' has no port");
  }
  config->set_listen_address(address.substr(0, colon + 1) + std::to_string(port));
  return Status::Ok();
}

// A PEM file the server reads at start: it must be readable and hold a block whose BEGIN line
// ends in `label` ("CERTIFICATE", "PRIVATE KEY"). Messages name the field and the path, never
// the contents.
Status CheckPemFile(const std::string& field, const std::string& path, const std::string& label) {
  if (path.empty()) return InvalidArgumentError(field + " is required when tls is set");
  // A regular file of bounded size: a device or pipe named by mistake must not hang the start.
  constexpr uintmax_t kMaxBytes = 1 << 20;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return NotFoundError(field + ": cannot read " + path + " (" +
                         (ec ? ec.message() : "not a regular file") + ")");
  }
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec || size > kMaxBytes) {
    return InvalidArgumentError(field + " " + path + " has " + std::to_string(size) +
                                " bytes, more than " + std::to_string(kMaxBytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError(field + ": cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  std::string line;
  const std::string suffix = label + "-----";
  while (std::getline(text, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("-----BEGIN ", 0) == 0 && line.size() >= suffix.size() &&
        line.compare(line.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return Status::Ok();
    }
  }
  return InvalidArgumentError(field + " " + path + " holds no PEM " + label +
                              " (no \"-----BEGIN ..." + suffix + "\" line)");
}

Status ValidateSecurity(const v1::ServerConfig& c) {
  if (c.has_tls()) {
    const v1::TlsSettings& tls = c.tls();
    RETURN_IF_ERROR(
        CheckPemFile("tls.certificate_chain_file", tls.certificate_chain_file(), "CERTIFICATE"));
    RETURN_IF_ERROR(CheckPemFile("tls.private_key_file", tls.private_key_file(), "PRIVATE KEY"));
    if (tls.require_client_certificate() && tls.client_ca_file().empty()) {
      return InvalidArgumentError(
          "tls.require_client_certificate needs tls.client_ca_file (the CA that client "
          "certificates must chain to)");
    }
    if (!tls.client_ca_file().empty()) {
      RETURN_IF_ERROR(CheckPemFile("tls.client_ca_file", tls.client_ca_file(), "CERTIFICATE"));
    }
  }
  if (c.has_auth()) {
    if (c.auth().token_file().empty()) {
      return InvalidArgumentError("auth.token_file is required when auth is set");
    }
    RETURN_IF_ERROR(BearerTokenAuth::FromFile(c.auth().token_file()).status());
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::string> HostOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) {
    return InvalidArgumentError("listen_address '" + address + "' has no port");
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return host;
}

Status ApplyDefaultsAndValidate(v1::ServerConfig* c) {
  if (c->listen_address().empty()) c->set_listen_address("127.0.0.1:50051");
  if (c->workers() == 0) c->set_workers(1);
  if (c->max_receive_message_bytes() == 0) c->set_max_receive_message_bytes(4 << 20);
  if (c->drain_timeout_seconds() == 0) c->set_drain_timeout_seconds(30);
  if (c->log_level().empty()) c->set_log_level("info");
  if (c->model_kind().empty() && !c->model_dir().empty())
    c->set_model_kind(DetectModelKind(c->model_dir()));
  if (c->tokenizer_path().empty() && !c->model_dir().empty()) {
    c->set_tokenizer_path(DefaultTokenizerPath(c->model_dir(), c->model_kind()));
  }
  v1::T5Settings* t5 = c->mutable_t5();
  if (!t5->has_alpha()) t5->set_alpha(1.0 / 3.0);
  if (t5->question_prefix().empty()) t5->set_question_prefix(FidTemplate().question_prefix);
  if (t5->title_prefix().empty()) t5->set_title_prefix(FidTemplate().title_prefix);
  if (t5->context_prefix().empty()) t5->set_context_prefix(FidTemplate().context_prefix);
  if (t5->max_passage_tokens() == 0) t5->set_max_passage_tokens(256);
  if (t5->max_question_tokens() == 0) t5->set_max_question_tokens(128);
  if (t5->max_passages() == 0) t5->set_max_passages(100);
  if (t5->ingest_batch_passages() == 0) t5->set_ingest_batch_passages(16);
  if (t5->store_verify_sample_passages() == 0) t5->set_store_verify_sample_passages(1000);
  if (t5->store_verify_full_max_passages() == 0) t5->set_store_verify_full_max_passages(100000);

  auto check = [](bool ok, const std::string& field, const std::string& rule,
                  const std::string& value) {
    return ok ? Status::Ok() : InvalidArgumentError(field + " must be " + rule + ", got " + value);
  };
  RETURN_IF_ERROR(HostOf(c->listen_address()).status());
  if (c->model_dir().empty())
    return InvalidArgumentError("model_dir is required (config field or --model)");
  RETURN_IF_ERROR(check(c->http_port() >= -1 && c->http_port() <= 65535, "http_port",
                        "in [-1, 65535]", std::to_string(c->http_port())));
  RETURN_IF_ERROR(check(c->threads() >= 0, "threads", ">= 0", std::to_string(c->threads())));
  RETURN_IF_ERROR(check(c->workers() >= 1 && c->workers() <= 256, "workers", "in [1, 256]",
                        std::to_string(c->workers())));
  RETURN_IF_ERROR(check(c->queue_capacity() >= 0 && c->queue_capacity() <= 100000, "queue_capacity",
                        "in [0, 100000]", std::to_string(c->queue_capacity())));
  RETURN_IF_ERROR(check(c->max_prompt_tokens() >= 0, "max_prompt_tokens", ">= 0",
                        std::to_string(c->max_prompt_tokens())));
  RETURN_IF_ERROR(check(c->max_new_tokens() >= 0, "max_new_tokens", ">= 0",
                        std::to_string(c->max_new_tokens())));
  RETURN_IF_ERROR(check(c->max_receive_message_bytes() >= 1024, "max_receive_message_bytes",
                        ">= 1024", std::to_string(c->max_receive_message_bytes())));
  RETURN_IF_ERROR(check(c->model_kind() == "llama" || c->model_kind() == "t5", "model_kind",
                        "\"llama\" or \"t5\"", "\"" + c->model_kind() + "\""));
  RETURN_IF_ERROR(check(t5->alpha() >= 0 && t5->alpha() <= 1, "t5.alpha", "in [0, 1]",
                        std::to_string(t5->alpha())));
  RETURN_IF_ERROR(check(t5->max_passage_tokens() >= 2, "t5.max_passage_tokens", ">= 2",
                        std::to_string(t5->max_passage_tokens())));
  RETURN_IF_ERROR(check(t5->max_question_tokens() >= 1, "t5.max_question_tokens", ">= 1",
                        std::to_string(t5->max_question_tokens())));
  RETURN_IF_ERROR(check(t5->max_passages() >= 1, "t5.max_passages", ">= 1",
                        std::to_string(t5->max_passages())));
  RETURN_IF_ERROR(check(t5->ingest_batch_passages() >= 1, "t5.ingest_batch_passages", ">= 1",
                        std::to_string(t5->ingest_batch_passages())));
  const std::string& verify = t5->store_verify_at_start();
  RETURN_IF_ERROR(check(verify.empty() || verify == "full" || verify == "sample" || verify == "off",
                        "t5.store_verify_at_start", "\"full\", \"sample\", \"off\" or empty (automatic)",
                        "\"" + verify + "\""));
  RETURN_IF_ERROR(check(t5->iceformer_min_keys() >= 0, "t5.iceformer_min_keys", ">= 0 (0 = off)",
                        std::to_string(t5->iceformer_min_keys())));
  RETURN_IF_ERROR(check(t5->iceformer_top_k() >= 0, "t5.iceformer_top_k",
                        ">= 0 (0 = the paper's schedule)", std::to_string(t5->iceformer_top_k())));
  RETURN_IF_ERROR(check(t5->store_verify_sample_passages() >= 1, "t5.store_verify_sample_passages",
                        ">= 1", std::to_string(t5->store_verify_sample_passages())));
  RETURN_IF_ERROR(check(t5->store_verify_full_max_passages() >= 1,
                        "t5.store_verify_full_max_passages", ">= 1",
                        std::to_string(t5->store_verify_full_max_passages())));
  RETURN_IF_ERROR(check(c->drain_timeout_seconds() > 0 && c->drain_timeout_seconds() <= 3600,
                        "drain_timeout_seconds", "in (0, 3600]",
                        std::to_string(c->drain_timeout_seconds())));
  return ValidateSecurity(*c);
}

StatusOr<v1::ServerConfig> LoadServerConfig(const std::string& path,
                                            const ConfigOverrides& overrides) {
  v1::ServerConfig config;
  if (!path.empty()) {
    std::ifstream in(path);
    if (!in) return NotFoundError("cannot read config file " + path);
    std::stringstream text;
    text << in.rdbuf();
    google::protobuf::TextFormat::Parser parser;
    ErrorCollector errors;
    parser.RecordErrorsTo(&errors);
    if (!parser.ParseFromString(text.str(), &config)) {
      return InvalidArgumentError("config file " + path + ": " + errors.first());
    }
  }
  if (!overrides.model_dir.empty()) config.set_model_dir(overrides.model_dir);
  if (!overrides.ports_file.empty()) config.set_ports_file(overrides.ports_file);
  if (overrides.http_port != -2) config.set_http_port(overrides.http_port);
  if (config.listen_address().empty()) config.set_listen_address("127.0.0.1:50051");
  if (overrides.port >= 0) RETURN_IF_ERROR(ReplacePort(&config, overrides.port));
  Status status = ApplyDefaultsAndValidate(&config);
  if (!status.ok() && !path.empty()) return status.WithContext("config " + path);
  return status.ok() ? StatusOr<v1::ServerConfig>(config) : StatusOr<v1::ServerConfig>(status);
}

}  // namespace memoria
