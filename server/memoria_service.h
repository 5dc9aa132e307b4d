// The memoria.v1.Memoria gRPC service: parse, validate, admit, run on the engine, map errors to
// status codes, record metrics and one log line per request. Thin by design
// (docs/architecture.md): the work is in CompletionRunner and the engine.
//
// Two model kinds: a LLaMA server completes prompts (CompletionRunner); a T5 server answers
// questions from stored passages through LUMEN (lumen_requests.h, LumenRunner) and ingests
// passages. A request of the other kind's path gets UNIMPLEMENTED naming what this server serves.
//
// Lifecycle: the service exists (and answers UNAVAILABLE "the model is loading") before the
// model is loaded, so that health checks and probes work during loading; StartServing() hands it
// the loaded model; StartDraining() makes new calls UNAVAILABLE while in-flight ones finish.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "engine/llama_model.h"
#include "engine/tokenizer.h"
#include "memoria.grpc.pb.h"
#include "server/completion_runner.h"
#include "server/lumen_loader.h"
#include "server/metrics.h"
#include "server/request_validation.h"
#include "server_config.pb.h"
#include "storage/passage_store.h"

namespace memoria {

// What the service serves once loading is done. Owned by the service. Exactly one of
// (model, tokenizer, runner) -- a LLaMA server -- and lumen -- a T5 server -- is set.
struct ServingModel {
  std::shared_ptr<const LlamaModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<CompletionRunner> runner;
  std::unique_ptr<PassageStore> store;  // null when no store_dir is configured
  RequestLimits limits;
  std::unique_ptr<LumenServing> lumen;  // declared after store: destroyed first (it points to it)
  // T5 servers with a store: memory tokens stored, counted at start (server.cc) and kept as a
  // running sum by Ingest and DeletePassages (for the store gauges and ServerInfo; concurrent
  // overwrites of one id may make it drift by that passage until the next start).
  std::atomic<int64_t> store_tokens{0};
};

class MemoriaService final : public v1::Memoria::Service {
 public:
  MemoriaService(const v1::ServerConfig& config, Metrics* metrics);
  ~MemoriaService() override;

  // Publishes the loaded model; calls are served from now on.
  void StartServing(std::unique_ptr<ServingModel> serving);
  // New calls get UNAVAILABLE from now on; calls already admitted go on.
  void StartDraining();
  bool serving() const { return state_.load() == State::kServing; }
  // RPCs inside a handler of this service right now (the drain waits for 0).
  int in_flight() const { return in_flight_.load(); }

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        v1::GenerateReply* reply) override;
  grpc::Status GenerateStream(grpc::ServerContext* context, const v1::GenerateRequest* request,
                              grpc::ServerWriter<v1::GenerateStreamReply>* writer) override;
  grpc::Status ServerInfo(grpc::ServerContext* context, const v1::ServerInfoRequest* request,
                          v1::ServerInfoReply* reply) override;
  grpc::Status GetPassage(grpc::ServerContext* context, const v1::GetPassageRequest* request,
                          v1::Passage* reply) override;
  grpc::Status DeletePassages(grpc::ServerContext* context,
                              const v1::DeletePassagesRequest* request,
                              v1::DeletePassagesReply* reply) override;
  grpc::Status Ingest(grpc::ServerContext* context, grpc::ServerReader<v1::IngestRequest>* reader,
                      v1::IngestReply* reply) override;

 private:
  enum class State { kLoading, kServing, kDraining };
  using Clock = std::chrono::steady_clock;

  // The serving model, or UNAVAILABLE while loading / draining.
  StatusOr<ServingModel*> Serving() const;
  // Reads the client's passages, tokenizes them and ingests them in durable batches.
  Status IngestPassages(grpc::ServerContext* context, grpc::ServerReader<v1::IngestRequest>* reader,
                        v1::IngestReply* reply);
  // Validates, tokenizes, admits and runs one completion (LLaMA) or answer (T5); on_token may be
  // null (unary). Tokens are streamed as generated, except T5 beam answers (sent when done).
  Status Complete(grpc::ServerContext* context, const v1::GenerateRequest& request,
                  const TokenCallback& on_token, v1::GenerateReply* reply);
  // Sets the store gauges (memoria_store_*) from the store's files on disk and store_tokens.
  void UpdateStoreGauges(const ServingModel& serving);
  // Records metrics and the request's log line, and converts the status.
  grpc::Status Finish(const char* method, grpc::ServerContext* context, Clock::time_point start,
                      const Status& status, const std::string& detail);

  v1::ServerConfig config_;
  Metrics* metrics_;
  std::atomic<State> state_{State::kLoading};
  std::unique_ptr<ServingModel> serving_;  // written once before state_ becomes kServing
  std::atomic<uint64_t> next_request_id_{1};
  std::atomic<int> in_flight_{0};

  // Counts one RPC in in_flight_ for its handler's lifetime.
  struct InFlight {
    explicit InFlight(std::atomic<int>* n) : n_(n) { n_->fetch_add(1); }
    ~InFlight() { n_->fetch_sub(1); }
    std::atomic<int>* n_;
  };
};

}  // namespace memoria
