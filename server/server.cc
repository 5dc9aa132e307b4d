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
#include <thread>

#include "base/logging.h"
#include "server/config.h"

namespace memoria {
namespace {

constexpr char kServiceName[] = "memoria.v1.Memoria";

void SetHealth(grpc::Server* server, bool serving) {
  if (server == nullptr || server->GetHealthCheckService() == nullptr) return;
  server->GetHealthCheckService()->SetServingStatus("", serving);
  server->GetHealthCheckService()->SetServingStatus(kServiceName, serving);
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

  grpc::ServerBuilder builder;
  builder.AddListeningPort(config_.listen_address(), grpc::InsecureServerCredentials(),
                           &grpc_port_);
  builder.RegisterService(service_.get());
  builder.SetMaxReceiveMessageSize(config_.max_receive_message_bytes());
  // Each admitted call holds a handler thread while it waits or runs; leave headroom for health
  // checks, ServerInfo and the immediate RESOURCE_EXHAUSTED answers of overload.
  grpc::ResourceQuota quota("memoria");
  quota.SetMaxThreads(std::max(32, 2 * (config_.workers() + config_.queue_capacity()) + 16));
  builder.SetResourceQuota(quota);
  grpc_ = builder.BuildAndStart();
  if (!grpc_ || grpc_port_ == 0) {
    return UnavailableError("cannot listen for gRPC on " + config_.listen_address());
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
  MEMORIA_LOG(kInfo, "listening: gRPC {} (port {}), HTTP port {}", config_.listen_address(),
              grpc_port_, http_port());
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

Status MemoriaServer::LoadAndServeT5() {
  const auto start = std::chrono::steady_clock::now();
  auto serving = std::make_unique<ServingModel>();
  const int per_worker = ThreadsPerWorker();
  ASSIGN_OR_RETURN(serving->lumen,
                   LoadLumenServing(config_, per_worker, &metrics_, &serving->store));
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
      l.store ? l.store->identity().ToString() + " with " + std::to_string(l.retriever->size()) +
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
    const char* reason = draining_.load() ? "shutting down" : "loading model";
    return {503, json, std::string("{\"status\":\"not ready\",\"reason\":\"") + reason + "\"}\n"};
  }
  if (path == "/metrics")
    return {200, "text/plain; version=0.0.4; charset=utf-8", metrics_.RenderPrometheus()};
  return {404, "text/plain; charset=utf-8",
          "not found: " + path + " (try /healthz, /readyz, /metrics)\n"};
}

}  // namespace memoria
