// Test helpers for the server end-to-end tests: the real memoria-server as a child process on
// 127.0.0.1 with free ports, a plain-socket HTTP GET, and model directories made with the
// `memoria` CLI (the real stories260K, and a larger random-weight model whose generation takes
// seconds, for deadline, overload and drain tests).
#pragma once

#include <sys/types.h>

#include <string>

namespace memoria::testing {

struct HttpResult {
  int status = 0;  // 0 when the connection failed
  std::string body;
};

// GET http://127.0.0.1:<port><path>, with a 5 s timeout.
HttpResult HttpGet(int port, const std::string& path);

// The value of a Prometheus sample line "<series> <value>" in `metrics` (series with its labels,
// exactly as rendered, e.g. memoria_request_failures_total{reason="deadline"}); -1 when absent.
double MetricValue(const std::string& metrics, const std::string& series);

class ServerProcess {
 public:
  // Writes `config_text` (ServerConfig text format; listen_address, http_port and ports_file are
  // added here) to a temp file and starts <build>/server/memoria-server on it.
  explicit ServerProcess(const std::string& config_text);
  ~ServerProcess();  // SIGKILL if still running
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Waits (at most timeout_s) for the ports file and then for /readyz 200. False on timeout or
  // when the process exited.
  bool WaitReady(double timeout_s = 60);
  std::string target() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  pid_t pid() const { return pid_; }
  void Signal(int signal) const;
  // Waits at most timeout_s for the process to exit; returns its exit code, 128 + signal when
  // killed by one, or -1 on timeout.
  int WaitExit(double timeout_s);
  // The server's stderr so far (its log), for failure messages.
  std::string Log() const;

 private:
  std::string dir_;
  pid_t pid_ = -1;
  int exit_code_ = -1;  // once reaped
  int grpc_port_ = 0;
  int http_port_ = 0;
};

// Converts ../shared stories260K into a fresh temp dir with `memoria convert-llama2c`; "" on
// failure (the test then fails on it).
std::string ConvertStories260K();

// Writes a llama2.c checkpoint with deterministic random weights (dim 256, hidden 768, 6 layers,
// 8 heads, vocab 512 with stories260K's tokenizer, seq_len 2048) and converts it: a model whose
// decode costs milliseconds per token, so long generations take seconds. "" on failure.
std::string MakeSlowModel();

}  // namespace memoria::testing
