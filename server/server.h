// MemoriaServer: the whole serving process minus main(): the gRPC server (Memoria service,
// standard health service, optional reflection; optional TLS / mutual TLS and bearer-token auth
// of the Memoria service, see TlsSettings and AuthSettings in proto/server_config.proto), the
// HTTP probe/metrics server, model loading with a warm-up, and graceful draining.
//
// States and what the outside sees:
//   listening, starting  gRPC health NOT_SERVING, calls UNAVAILABLE, /readyz 503
//                        {"status":"not ready","reason":<phase>}, the phase being "loading model"
//                        (tokenizer, model, store open; for T5 also the warm-up generation), then
//                        "warming up" (LLaMA) or, for a T5 server with a store, "verifying passage
//                        store (<mode>)" (the start-up check of t5.store_verify_at_start)
//   ready                health SERVING, /readyz 200 (only after all of the above)
//   draining (Drain)     health NOT_SERVING and /readyz 503 "shutting down" at once, new calls
//                        UNAVAILABLE, in-flight calls run to completion until the drain timeout,
//                        then are cancelled
//   /healthz is 200 in every state while the process lives.
#pragma once

#include <grpcpp/server.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "base/status.h"
#include "server/bearer_token_auth.h"
#include "server/http_server.h"
#include "server/memoria_service.h"
#include "server/metrics.h"
#include "server_config.pb.h"

namespace memoria {

class MemoriaServer {
 public:
  explicit MemoriaServer(v1::ServerConfig config);  // config after ApplyDefaultsAndValidate
  ~MemoriaServer();

  // Binds both ports and starts answering (not ready yet); writes ports_file when configured.
  // UNAVAILABLE when a port cannot be bound.
  Status Listen();
  // Loads tokenizer, model (and store), runs the warm-up, then turns ready. Errors name the path;
  // a T5 server whose store was built for another model/alpha/codec gets FAILED_PRECONDITION
  // naming both identities.
  Status LoadAndServe();
  // Graceful shutdown (see above). Returns once every call has finished or been cancelled.
  void Drain();

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_ ? http_->port() : -1; }

  // Test hook: called on LoadAndServe's thread with each start-up phase as it begins (the
  // /readyz reason), before the work of that phase. Set before LoadAndServe.
  void SetStartupObserverForTest(std::function<void(const std::string& phase)> observer) {
    startup_observer_ = std::move(observer);
  }

 private:
  // The T5 half of LoadAndServe (model_kind "t5"): LUMEN model, store check, retriever, warm-up.
  Status LoadAndServeT5();
  int ThreadsPerWorker() const;
  void TurnReady();  // ready + health SERVING unless a drain began
  void EnterPhase(const std::string& phase);  // the start-up phase /readyz reports
  HttpResponse HandleHttp(const std::string& path);
  Status WritePortsFile() const;

  v1::ServerConfig config_;
  Metrics metrics_;
  std::unique_ptr<MemoriaService> service_;
  // With auth set: the accepted tokens and the service behind their check (what gRPC serves).
  std::unique_ptr<BearerTokenAuth> auth_;
  std::unique_ptr<AuthenticatedMemoriaService> authenticated_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<HttpServer> http_;
  int grpc_port_ = 0;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  mutable std::mutex phase_mu_;
  std::string phase_ = "loading model";  // guarded by phase_mu_
  std::function<void(const std::string&)> startup_observer_;
};

}  // namespace memoria
