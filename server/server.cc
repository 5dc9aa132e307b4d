#include "server/server.h"

#include <dlfcn.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/logging.h"
#include "server/bearer_token_auth.h"
#include "server/config.h"

namespace memoria {
namespace {

constexpr char kServiceName[] = "memoria.v1.Memoria";

void SetHealth(grpc::Server* server, bool serving) {
  if (server == nullptr || server->GetHealthCheckService() == nullptr) return;
  server->GetHealthCheckService()->SetServingStatus("", serving);
  server->GetHealthCheckService()->SetServingStatus(kServiceName, serving);
}

StatusOr<std::string> ReadPemFile(const std::string& field, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError(field + ": cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// grpc::SslServerCredentials from the tls settings (validated by config.cc). Client certificates:
// not asked for without client_ca_file; asked for and verified when presented with it; required
// with require_client_certificate (the handshake fails without one).
StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsCredentials(const v1::TlsSettings& tls) {
  grpc_ssl_client_certificate_request_type request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  if (tls.require_client_certificate())
    request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  else if (!tls.client_ca_file().empty())
    request = GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
  grpc::SslServerCredentialsOptions options(request);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain,
                   ReadPemFile("tls.certificate_chain_file", tls.certificate_chain_file()));
  ASSIGN_OR_RETURN(pair.private_key, ReadPemFile("tls.private_key_file", tls.private_key_file()));
  options.pem_key_cert_pairs.push_back(std::move(pair));
  if (!tls.client_ca_file().empty()) {
    ASSIGN_OR_RETURN(options.pem_root_certs,
                     ReadPemFile("tls.client_ca_file", tls.client_ca_file()));
  }
  return grpc::SslServerCredentials(options);
}

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

struct StoreCheck {
  std::string mode;                   // "full", "sample" or "off"
  int64_t tokens = 0;                 // memory tokens of the store
  int64_t checked = 0;                // records verified
  int64_t corrupt = 0;                // records failing verification
  std::vector<std::string> examples;  // the first few failures
};

// "full", "sample" or "off": t5.store_verify_at_start, or by the store's size when unset.
std::string StoreCheckMode(int64_t passages, const v1::T5Settings& t5) {
  if (!t5.store_verify_at_start().empty()) return t5.store_verify_at_start();
  return passages <= t5.store_verify_full_max_passages() ? "full" : "sample";
}

// Verifies the store's records as t5.store_verify_at_start says and counts its memory tokens.
// Corrupt records are reported in the result, not as an error: the server serves the others.
// Errors: RocksDB iteration failures (the store cannot be read at all).
StatusOr<StoreCheck> CheckStoreAtStart(const PassageStore& store, int64_t passages,
                                       const v1::T5Settings& t5) {
  constexpr size_t kExamples = 5;
  const int64_t sample = t5.store_verify_sample_passages();
  StoreCheck check;
  check.mode = StoreCheckMode(passages, t5);
  if (check.mode == "full") {
    ASSIGN_OR_RETURN(StoreStats stats, store.Scan(/*verify=*/true));
    check.checked = stats.passages + stats.memories + stats.index_records;
    check.corrupt = stats.corrupt;
    for (const std::string& e : stats.corrupt_examples) {
      if (check.examples.size() < kExamples) check.examples.push_back(e);
    }
  }
  // Tokens from the text records (a passage's memory has one row per stored token id; Ingest and
  // DeletePassages keep the sum by the same measure); in "sample" mode, also the ids whose memory
  // values are checked. A RocksDB iterator cannot step over a block failing its checksum: such
  // damage ends the walk with an error (the store cannot be read as a whole).
  const int64_t stride = std::max<int64_t>(1, passages / std::max<int64_t>(1, sample));
  std::vector<std::string> ids;
  int64_t index = 0;
  RETURN_IF_ERROR(
      store.ForEachText([&](const std::string& id, const StatusOr<PassageText>& text) -> Status {
        if (text.ok()) {
          check.tokens += static_cast<int64_t>(text->token_ids.size());
        } else if (text.status().code() != StatusCode::kDataLoss) {
          return text.status();
        } else if (check.mode != "full") {  // "full" counted it in Scan already
          ++check.corrupt;
          if (check.examples.size() < kExamples) check.examples.push_back(text.status().message());
        }
        if (check.mode == "sample" && index++ % stride == 0 &&
            static_cast<int64_t>(ids.size()) < sample) {
          ids.push_back(id);
        }
        return Status::Ok();
      }));
  constexpr size_t kBatch = 64;  // MultiGet batches: bounded memory for big codes
  for (size_t begin = 0; begin < ids.size(); begin += kBatch) {
    const std::vector<std::string> batch(ids.begin() + begin,
                                         ids.begin() + std::min(ids.size(), begin + kBatch));
    for (const auto& codes : store.GetCodes(batch)) {
      ++check.checked;
      if (codes.ok()) continue;
      ++check.corrupt;
      if (check.examples.size() < kExamples) check.examples.push_back(codes.status().message());
    }
  }
  return check;
}

}  // namespace

MemoriaServer::MemoriaServer(v1::ServerConfig config) : config_(std::move(config)) {}

MemoriaServer::~MemoriaServer() {
  if (grpc_) grpc_->Shutdown(std::chrono::system_clock::now());
  if (http_) http_->Stop();
}

Status MemoriaServer::Listen() {
  service_ = std::make_unique<MemoriaService>(config_, &metrics_);
  // The standard grpc.health.v1.Health service, gRPC's own implementation. Process-wide switch:
  // must be set before the builder runs.
  grpc::EnableDefaultHealthCheckService(true);
  if (config_.enable_reflection()) {
    // Loading the library runs its static initializer, which registers the reflection plugin
    // with every ServerBuilder built afterwards (see server/CMakeLists.txt).
    if (dlopen(MEMORIA_GRPC_REFLECTION_LIBRARY, RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      return FailedPreconditionError(std::string("enable_reflection: cannot load ") +
                                     MEMORIA_GRPC_REFLECTION_LIBRARY + ": " + dlerror());
    }
  }

  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (config_.has_tls()) {
    ASSIGN_OR_RETURN(credentials, TlsCredentials(config_.tls()));
  }
  grpc::Service* memoria = service_.get();
  if (config_.has_auth()) {
    ASSIGN_OR_RETURN(auth_, BearerTokenAuth::FromFile(config_.auth().token_file()));
    authenticated_ =
        std::make_unique<AuthenticatedMemoriaService>(service_.get(), auth_.get(), &metrics_);
    memoria = authenticated_.get();
    ASSIGN_OR_RETURN(const std::string host, HostOf(config_.listen_address()));
    if (!config_.has_tls() && !IsLoopback(host)) {
      MEMORIA_LOG(kWarning,
                  "bearer tokens travel in plaintext to {}: anyone on the network path can read "
                  "them; set tls",
                  config_.listen_address());
    }
  }

  grpc::ServerBuilder builder;
  builder.AddListeningPort(config_.listen_address(), credentials, &grpc_port_);
  builder.RegisterService(memoria);
  builder.SetMaxReceiveMessageSize(config_.max_receive_message_bytes());
  // Each admitted call holds a handler thread while it waits or runs; leave headroom for health
  // checks, ServerInfo and the immediate RESOURCE_EXHAUSTED answers of overload.
  grpc::ResourceQuota quota("memoria");
  quota.SetMaxThreads(std::max(32, 2 * (config_.workers() + config_.queue_capacity()) + 16));
  builder.SetResourceQuota(quota);
  grpc_ = builder.BuildAndStart();
  if (!grpc_ || grpc_port_ == 0) {
    return UnavailableError("cannot listen for gRPC on " + config_.listen_address() +
                            (config_.has_tls()
                                 ? " with TLS (does tls.private_key_file match "
                                   "tls.certificate_chain_file? gRPC's log above says more)"
                                 : ""));
  }
  // Reflection off: the server answers UNIMPLEMENTED for its methods, as for any unknown one.
  SetHealth(grpc_.get(), false);

  if (config_.http_port() >= 0) {
    ASSIGN_OR_RETURN(std::string host, HostOf(config_.listen_address()));
    if (host == "::" || host.empty()) host = "0.0.0.0";
    http_ =
        std::make_unique<HttpServer>([this](const std::string& path) { return HandleHttp(path); });
    RETURN_IF_ERROR(http_->Start(host, config_.http_port()));
  }
  std::string security = "plaintext";
  if (config_.has_tls()) {
    security = config_.tls().require_client_certificate() ? "TLS, client certificate required"
               : config_.tls().client_ca_file().empty()   ? "TLS"
                                                        : "TLS, client certificate checked if sent";
  }
  if (auth_) security += ", bearer-token auth with " + std::to_string(auth_->size()) + " token(s)";
  MEMORIA_LOG(kInfo, "listening: gRPC {} (port {}, {}), HTTP port {}", config_.listen_address(),
              grpc_port_, security, http_port());
  return WritePortsFile();
}

Status MemoriaServer::WritePortsFile() const {
  if (config_.ports_file().empty()) return Status::Ok();
  // Written whole and renamed into place so a reader never sees half a file.
  const std::string tmp = config_.ports_file() + ".tmp";
  {
    std::ofstream out(tmp);
    out << "grpc_port " << grpc_port_ << "\nhttp_port " << http_port() << "\n";
    if (!out) return UnavailableError("cannot write ports file " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, config_.ports_file(), ec);
  if (ec)
    return UnavailableError("cannot write ports file " + config_.ports_file() + ": " +
                            ec.message());
  return Status::Ok();
}

Status MemoriaServer::LoadAndServe() {
  EnterPhase("loading model");
  if (config_.model_kind() == "t5") return LoadAndServeT5();
  const auto start = std::chrono::steady_clock::now();
  auto serving = std::make_unique<ServingModel>();
  ASSIGN_OR_RETURN(serving->tokenizer, Tokenizer::Open(config_.tokenizer_path()));
  ASSIGN_OR_RETURN(serving->model, LlamaModel::Load(config_.model_dir()));
  const LlamaConfig& mc = serving->model->config();
  if (serving->tokenizer->vocab_size() != mc.vocab_size) {
    return InvalidArgumentError("tokenizer " + config_.tokenizer_path() + " has " +
                                std::to_string(serving->tokenizer->vocab_size()) +
                                " pieces but the model's vocabulary is " +
                                std::to_string(mc.vocab_size));
  }
  const int64_t max_seq = serving->model->max_sequence_length();
  RequestLimits& limits = serving->limits;
  limits.max_prompt_tokens =
      config_.max_prompt_tokens() > 0 ? config_.max_prompt_tokens() : max_seq;
  limits.max_new_tokens = config_.max_new_tokens() > 0 ? config_.max_new_tokens() : max_seq;
  if (limits.max_prompt_tokens > max_seq) {
    return InvalidArgumentError("max_prompt_tokens " + std::to_string(limits.max_prompt_tokens) +
                                " exceeds the model's maximum sequence length " +
                                std::to_string(max_seq));
  }
  if (!config_.store_dir().empty()) {
    PassageStoreOptions options;
    // The LLaMA path reads only passage text; the store's identity is checked by the LUMEN path.
    RETURN_IF_ERROR(PassageStore::Open(options, config_.store_dir(), nullptr, &serving->store));
  }
  const int per_worker = ThreadsPerWorker();
  serving->runner = std::make_unique<CompletionRunner>(serving->model, serving->tokenizer.get(),
                                                       config_.workers(), config_.queue_capacity(),
                                                       per_worker, &metrics_);
  EnterPhase("warming up");
  RETURN_IF_ERROR(serving->runner->WarmUp());
  service_->StartServing(std::move(serving));
  TurnReady();
  MEMORIA_LOG(
      kInfo,
      "ready: model {} ({} layers, d {}, vocab {}), {} workers x {} threads, loaded in {:.2f} s",
      config_.model_dir(), mc.num_layers, mc.hidden_size, mc.vocab_size, config_.workers(),
      per_worker, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return Status::Ok();
}

int MemoriaServer::ThreadsPerWorker() const {
  // Cores split evenly between workers so that concurrent requests never oversubscribe them.
  const int cores = config_.threads() > 0
                        ? config_.threads()
                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / config_.workers());
}

void MemoriaServer::TurnReady() {
  if (!draining_.load()) {
    ready_.store(true);
    metrics_.SetReady(true);
    SetHealth(grpc_.get(), true);
  }
}

void MemoriaServer::EnterPhase(const std::string& phase) {
  {
    std::lock_guard<std::mutex> lock(phase_mu_);
    phase_ = phase;
  }
  MEMORIA_LOG(kInfo, "starting: {}", phase);
  if (startup_observer_) startup_observer_(phase);
}

Status MemoriaServer::LoadAndServeT5() {
  const auto start = std::chrono::steady_clock::now();
  auto serving = std::make_unique<ServingModel>();
  const int per_worker = ThreadsPerWorker();
  ASSIGN_OR_RETURN(serving->lumen,
                   LoadLumenServing(config_, per_worker, &metrics_, &serving->store));
  if (serving->lumen->store != nullptr) {
    // Before turning ready (/readyz stays 503): the store's checksums, and its token count for
    // the store gauges.
    const auto verify_start = std::chrono::steady_clock::now();
    EnterPhase("verifying passage store (" +
               StoreCheckMode(serving->lumen->store->passage_count(), config_.t5()) + ")");
    ASSIGN_OR_RETURN(
        StoreCheck check,
        CheckStoreAtStart(*serving->lumen->store, serving->lumen->store->passage_count(), config_.t5()));
    serving->store_tokens.store(check.tokens);
    for (int64_t i = 0; i < check.corrupt; ++i) metrics_.CountDataLoss();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - verify_start).count();
    if (check.corrupt > 0) {
      std::string examples;
      for (const std::string& e : check.examples) examples += (examples.empty() ? "" : "; ") + e;
      MEMORIA_LOG(kWarning,
                  "store verification ({}): {} of {} records checked are corrupt (they answer "
                  "DATA_LOSS; the others are served); first: {}",
                  check.mode, check.corrupt, check.checked, examples);
    } else {
      MEMORIA_LOG(kInfo, "store verification ({}): {} records checked, none corrupt, {:.2f} s",
                  check.mode, check.checked, seconds);
    }
  }
  // T5 has no maximum sequence length (relative positions): answers are bounded by config, with
  // a default of 512 new tokens (32 when a request gives none: answers are short spans).
  RequestLimits& limits = serving->limits;
  limits.max_new_tokens = config_.max_new_tokens() > 0 ? config_.max_new_tokens() : 512;
  limits.default_new_tokens = 32;
  limits.max_prompt_tokens = serving->lumen->settings.max_question_tokens();
  const LumenServing& l = *serving->lumen;
  const T5Config& mc = l.lumen->model().config();
  MEMORIA_LOG(
      kInfo,
      "ready: T5 model {} ({} layers: {} memory + {} live at alpha {:.3f}, d {}, vocab {}), "
      "store {}, {} workers x {} threads, loaded in {:.2f} s",
      config_.model_dir(), mc.num_layers, l.lumen->memory_layers(), l.lumen->live_layers(), l.alpha,
      mc.d_model, mc.vocab_size,
      l.store ? l.store->identity().ToString() + " with " + std::to_string(l.store->passage_count()) +
                    " passages"
              : l.no_store_reason,
      config_.workers(), per_worker,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  service_->StartServing(std::move(serving));
  TurnReady();
  return Status::Ok();
}

void MemoriaServer::Drain() {
  draining_.store(true);
  ready_.store(false);
  metrics_.SetReady(false);
  if (service_) service_->StartDraining();
  SetHealth(grpc_.get(), false);
  const auto seconds = std::chrono::duration<double>(config_.drain_timeout_seconds());
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(seconds);
  MEMORIA_LOG(kInfo, "draining: in-flight requests get up to {:.1f} s", seconds.count());
  // The gRPC server keeps accepting while calls finish, so that a new call gets our clear
  // UNAVAILABLE ("the server is shutting down") rather than whatever a half-closed server gives.
  while (service_ && service_->in_flight() > 0 && std::chrono::system_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (grpc_) {
    // Stops accepting; handlers still running at the deadline are cancelled (they notice at
    // their next token).
    grpc_->Shutdown(deadline);
    grpc_->Wait();
  }
  if (http_) http_->Stop();
  MEMORIA_LOG(kInfo, "drained");
}

HttpResponse MemoriaServer::HandleHttp(const std::string& path) {
  const std::string json = "application/json";
  if (path == "/healthz") return {200, json, "{\"status\":\"alive\"}\n"};
  if (path == "/readyz") {
    if (ready_.load()) return {200, json, "{\"status\":\"ready\"}\n"};
    std::string reason = "shutting down";
    if (!draining_.load()) {
      std::lock_guard<std::mutex> lock(phase_mu_);
      reason = phase_;  // letters, spaces and parentheses: no JSON escaping needed
    }
    return {503, json, "{\"status\":\"not ready\",\"reason\":\"" + reason + "\"}\n"};
  }
  if (path == "/metrics")
    return {200, "text/plain; version=0.0.4; charset=utf-8", metrics_.RenderPrometheus()};
  return {404, "text/plain; charset=utf-8",
          "not found: " + path + " (try /healthz, /readyz, /metrics)\n"};
}

}  // namespace memoria
