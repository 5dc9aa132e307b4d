// memoria-server: serves a LLaMA-style model over gRPC (memoria.v1.Memoria + grpc.health.v1)
// with HTTP probes and metrics on a second port.
//
//   memoria-server --config configs/default.textproto [--port N] [--http-port N] [--model DIR]
//                  [--ports-file PATH] [--log-level LEVEL]
//
// Exit codes: 0 after a graceful drain (SIGTERM or SIGINT); 1 when the config, a port or the
// model cannot be used (the message says which); 2 for bad command-line usage; 1 when a second
// SIGTERM/SIGINT cuts a drain short.
#include <pthread.h>
#include <signal.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "base/logging.h"
#include "server/config.h"
#include "server/server.h"

namespace {

constexpr char kUsage[] =
    "usage: memoria-server [--config FILE] [--port N] [--http-port N] [--model DIR]\n"
    "                      [--ports-file PATH] [--log-level debug|info|warning|error|off]\n"
    "  --config FILE      memoria.v1.ServerConfig in text format (proto/server_config.proto)\n"
    "  --port N           gRPC port (replaces the port of listen_address; 0 = a free port)\n"
    "  --http-port N      HTTP port for /healthz /readyz /metrics (0 = free port, -1 = off)\n"
    "  --model DIR        model directory (replaces model_dir)\n"
    "  --ports-file PATH  write the bound ports here once listening\n";

bool ParseInt(const std::string& text, int* out) {
  try {
    size_t used = 0;
    const long v = std::stol(text, &used);
    if (used != text.size() || v < -1 || v > 65535) return false;
    *out = static_cast<int>(v);
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace memoria;
  std::string config_path, log_level;
  ConfigOverrides overrides;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "error: %s needs a value\n%s", arg.c_str(), kUsage);
      return 2;
    }
    const std::string value = argv[++i];
    bool ok = true;
    if (arg == "--config")
      config_path = value;
    else if (arg == "--model")
      overrides.model_dir = value;
    else if (arg == "--ports-file")
      overrides.ports_file = value;
    else if (arg == "--log-level")
      log_level = value;
    else if (arg == "--port")
      ok = ParseInt(value, &overrides.port) && overrides.port >= 0;
    else if (arg == "--http-port")
      ok = ParseInt(value, &overrides.http_port);
    else {
      std::fprintf(stderr, "error: unknown flag %s\n%s", arg.c_str(), kUsage);
      return 2;
    }
    if (!ok) {
      std::fprintf(stderr, "error: %s must be a port number, got '%s'\n", arg.c_str(),
                   value.c_str());
      return 2;
    }
  }

  // Signals are taken by one thread with sigwait: block them before any other thread exists so
  // every thread (gRPC's, OpenMP's, the workers) inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto config = LoadServerConfig(config_path, overrides);
  if (!config.ok()) {
    std::fprintf(stderr, "error: %s\n", config.status().ToString().c_str());
    return 1;
  }
  if (!log_level.empty()) config->set_log_level(log_level);
  LogLevel level;
  if (!ParseLogLevel(config->log_level(), &level)) {
    std::fprintf(stderr, "error: log_level must be debug|info|warning|error|off, got '%s'\n",
                 config->log_level().c_str());
    return 1;
  }
  SetLogLevel(level);

  std::mutex mu;
  std::condition_variable cv;
  bool stop_requested = false;
  std::thread([&] {
    int received = 0;
    for (int count = 0;; ++count) {
      if (sigwait(&signals, &received) != 0) continue;
      if (count == 0) {
        MEMORIA_LOG(kInfo, "signal {}: draining (send it again to exit at once)", received);
        std::lock_guard<std::mutex> lock(mu);
        stop_requested = true;
        cv.notify_all();
      } else {
        MEMORIA_LOG(kWarning, "second signal {}: exiting without finishing the drain", received);
        std::_Exit(1);
      }
    }
  }).detach();

  MemoriaServer server(*config);
  if (Status status = server.Listen(); !status.ok()) {
    MEMORIA_LOG(kError, "{}", status.ToString());
    return 1;
  }
  if (Status status = server.LoadAndServe(); !status.ok()) {
    MEMORIA_LOG(kError, "cannot serve: {}", status.ToString());
    return 1;
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return stop_requested; });
  }
  server.Drain();
  return 0;
}
