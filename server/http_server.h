// A minimal HTTP/1.1 server for probes and metrics (/healthz, /readyz, /metrics): plain sockets,
// one thread, one request per connection ("Connection: close"), GET only.
//
// Why not a library: the three endpoints are tiny and read-only; one thread handling one short
// request at a time keeps the process simple. A slow client cannot stall it for long: each
// connection gets a 2 s receive timeout and requests over 8 KiB are refused (431).
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "base/status.h"

namespace memoria {

struct HttpResponse {
  int status = 200;  // 200, 404, 503, ...
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class HttpServer {
 public:
  // Maps a request path ("/metrics"; the query string is cut off) to a response; called on the
  // server's thread.
  using Handler = std::function<HttpResponse(const std::string& path)>;

  explicit HttpServer(Handler handler) : handler_(std::move(handler)) {}
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds host:port (port 0 = a free one; host an IPv4 address, "localhost" or "0.0.0.0") and
  // starts the thread. UNAVAILABLE when the address cannot be bound (in use), INVALID_ARGUMENT
  // for a host that is not an IPv4 address.
  Status Start(const std::string& host, int port);
  // The bound port (after Start).
  int port() const { return port_; }
  // Stops accepting and joins the thread (within ~100 ms). Idempotent.
  void Stop();

 private:
  void Loop();
  void Serve(int fd);

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace memoria
