// Bearer-token authentication of the Memoria service (AuthSettings in
// proto/server_config.proto): the accepted tokens, read from a file; parsing of the
// "authorization: Bearer <token>" metadata; a constant-time comparison; and the Memoria service
// behind the check.
//
// Why a service decorator and not a gRPC server interceptor: a C++ server interceptor (gRPC 1.51)
// cannot end a call with a status of its choosing: the synchronous handler runs after the
// interceptors whatever they did, and TryCancel() gives the client CANCELLED. The
// AuthMetadataProcessor of gRPC runs only on secure listeners. Wrapping the service works for
// plaintext and TLS listeners alike and leaves the health and reflection services (registered
// by gRPC itself) outside the check, which is what the exemption asks for.
#pragma once

#include <grpcpp/server_context.h>
#include <grpcpp/support/string_ref.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "memoria.grpc.pb.h"
#include "server/metrics.h"

namespace memoria {

// True when `given` equals `expected`. The time taken depends on expected.size() only (and on
// whether the sizes differ), never on the position of the first differing byte, so that a client
// cannot guess a token byte by byte from response times. The length of `expected` does leak
// through timing; tokens are long random strings, so knowing their length does not help.
bool ConstantTimeEquals(std::string_view given, std::string_view expected);

// True when `token` is a valid RFC 6750 b64token: 1+ of A-Z a-z 0-9 - . _ ~ + /, then 0+ "=".
bool IsBearerTokenSyntax(std::string_view token);

// The token of an "authorization" metadata value "Bearer <token>" (scheme case-insensitive, one
// or more spaces before the token, RFC 6750 section 2.1); "" when the value has another scheme
// or a malformed token. The result points into `value`.
std::string_view ParseBearerToken(std::string_view value);

// The accepted tokens. Immutable after creation: Check may be called from any thread at once.
class BearerTokenAuth {
 public:
  static constexpr size_t kMinTokenLength = 16;
  static constexpr size_t kMaxTokenLength = 4096;
  static constexpr uintmax_t kMaxFileBytes = 1 << 20;

  // Reads auth.token_file: one token per line, surrounding whitespace and blank lines ignored.
  // NOT_FOUND when it is not a readable regular file; INVALID_ARGUMENT when it is larger than
  // kMaxFileBytes, holds no token, or a line is not a token of kMinTokenLength..kMaxTokenLength
  // b64token characters (the message names the path and line number, never the line's contents).
  static StatusOr<std::unique_ptr<BearerTokenAuth>> FromFile(const std::string& path);
  // The same checks on tokens given directly (INVALID_ARGUMENT naming the token's index).
  static StatusOr<std::unique_ptr<BearerTokenAuth>> FromTokens(std::vector<std::string> tokens);

  // OK when `client_metadata` holds exactly one "authorization" entry "Bearer <token>" with an
  // accepted token; else UNAUTHENTICATED saying what was wrong (missing, malformed, unknown) and
  // never echoing what was sent. Compares against every accepted token without stopping at a
  // match, so the time does not tell which token matched either.
  Status Check(const std::multimap<grpc::string_ref, grpc::string_ref>& client_metadata) const;

  size_t size() const { return tokens_.size(); }

 private:
  explicit BearerTokenAuth(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}
  std::vector<std::string> tokens_;
};

// The Memoria service with every call checked by `auth` first. A refused call never reaches
// `inner`: it gets UNAUTHENTICATED, is counted in `metrics` (reason "unauthenticated") and
// logged (method and peer, no metadata) at warning level. `inner`, `auth` and `metrics` must
// outlive this object. Thread-safe as `inner` is.
class AuthenticatedMemoriaService final : public v1::Memoria::Service {
 public:
  AuthenticatedMemoriaService(v1::Memoria::Service* inner, const BearerTokenAuth* auth,
                              Metrics* metrics);

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
  // OK, or the refusal (recorded and logged) to return instead of calling `inner_`.
  grpc::Status Authenticate(const char* method, grpc::ServerContext* context);

  v1::Memoria::Service* inner_;
  const BearerTokenAuth* auth_;
  Metrics* metrics_;
};

}  // namespace memoria
