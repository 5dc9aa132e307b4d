#include "server/bearer_token_auth.h"

#include <chrono>
#include <filesystem>
#include <fstream>

#include "base/logging.h"
#include "server/status_map.h"

namespace memoria {
namespace {

bool IsTokenChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

std::string_view Trim(std::string_view s) {
  const char* space = " \t\r\n\f\v";
  const size_t begin = s.find_first_not_of(space);
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(space) - begin + 1);
}

// "" when the token is acceptable, else why not (without its contents).
std::string TokenProblem(std::string_view token) {
  if (token.size() < BearerTokenAuth::kMinTokenLength ||
      token.size() > BearerTokenAuth::kMaxTokenLength) {
    return "a token must be " + std::to_string(BearerTokenAuth::kMinTokenLength) + " to " +
           std::to_string(BearerTokenAuth::kMaxTokenLength) + " characters, this one has " +
           std::to_string(token.size());
  }
  if (!IsBearerTokenSyntax(token)) {
    return "a token may hold only A-Z a-z 0-9 - . _ ~ + / and trailing '=' characters";
  }
  return "";
}

Status Unauthenticated(const std::string& message) {
  return Status(StatusCode::kUnauthenticated, message);
}

}  // namespace

bool ConstantTimeEquals(std::string_view given, std::string_view expected) {
  // Every byte of `expected` is visited whatever `given` holds; differences are OR-ed into an
  // accumulator read through volatile so that the compiler cannot turn the loop into an early
  // exit.
  volatile unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff = diff | static_cast<unsigned char>(g ^ static_cast<unsigned char>(expected[i]));
  }
  return diff == 0;
}

bool IsBearerTokenSyntax(std::string_view token) {
  size_t i = 0;
  while (i < token.size() && IsTokenChar(token[i])) ++i;
  if (i == 0) return false;
  while (i < token.size() && token[i] == '=') ++i;
  return i == token.size();
}

std::string_view ParseBearerToken(std::string_view value) {
  constexpr std::string_view kScheme = "bearer";
  if (value.size() <= kScheme.size() || value[kScheme.size()] != ' ') return {};
  for (size_t i = 0; i < kScheme.size(); ++i) {
    char c = value[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return {};
  }
  std::string_view token = value.substr(kScheme.size());
  token.remove_prefix(std::min(token.find_first_not_of(' '), token.size()));
  return IsBearerTokenSyntax(token) ? token : std::string_view();
}

StatusOr<std::unique_ptr<BearerTokenAuth>> BearerTokenAuth::FromFile(const std::string& path) {
  // A regular file of bounded size: a device or pipe named by mistake must not hang the start.
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return NotFoundError("auth.token_file: cannot read " + path + " (" +
                         (ec ? ec.message() : "not a regular file") + ")");
  }
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec || size > kMaxFileBytes) {
    return InvalidArgumentError("auth.token_file " + path + " has " + std::to_string(size) +
                                " bytes, more than " + std::to_string(kMaxFileBytes));
  }
  std::ifstream in(path);
  if (!in) return NotFoundError("auth.token_file: cannot read " + path);
  std::vector<std::string> tokens;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string_view token = Trim(line);
    if (token.empty()) continue;
    if (std::string problem = TokenProblem(token); !problem.empty()) {
      return InvalidArgumentError("auth.token_file " + path + " line " + std::to_string(number) +
                                  ": " + problem);
    }
    tokens.emplace_back(token);
  }
  if (in.bad()) return NotFoundError("auth.token_file: cannot read " + path);
  if (tokens.empty()) return InvalidArgumentError("auth.token_file " + path + " holds no token");
  return std::unique_ptr<BearerTokenAuth>(new BearerTokenAuth(std::move(tokens)));
}

StatusOr<std::unique_ptr<BearerTokenAuth>> BearerTokenAuth::FromTokens(
    std::vector<std::string> tokens) {
  if (tokens.empty()) return InvalidArgumentError("no bearer token given");
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (std::string problem = TokenProblem(tokens[i]); !problem.empty()) {
      return InvalidArgumentError("bearer token " + std::to_string(i) + ": " + problem);
    }
  }
  return std::unique_ptr<BearerTokenAuth>(new BearerTokenAuth(std::move(tokens)));
}

Status BearerTokenAuth::Check(
    const std::multimap<grpc::string_ref, grpc::string_ref>& client_metadata) const {
  // gRPC lower-cases metadata keys on the wire, so one spelling suffices.
  const auto [first, last] = client_metadata.equal_range("authorization");
  if (first == last) {
    return Unauthenticated(
        "missing bearer token: send the metadata \"authorization: Bearer <token>\"");
  }
  if (std::next(first) != last) {
    return Unauthenticated("more than one \"authorization\" metadata entry");
  }
  const std::string_view token =
      ParseBearerToken(std::string_view(first->second.data(), first->second.size()));
  if (token.empty()) {
    return Unauthenticated(
        "malformed \"authorization\" metadata: expected \"Bearer <token>\" with an RFC 6750 "
        "token");
  }
  bool accepted = false;
  for (const std::string& expected : tokens_) {
    // |= does not short-circuit: every token is compared whatever matched before.
    accepted |= ConstantTimeEquals(token, expected);
  }
  return accepted ? Status::Ok() : Unauthenticated("invalid bearer token");
}

AuthenticatedMemoriaService::AuthenticatedMemoriaService(v1::Memoria::Service* inner,
                                                         const BearerTokenAuth* auth,
                                                         Metrics* metrics)
    : inner_(inner), auth_(auth), metrics_(metrics) {}

grpc::Status AuthenticatedMemoriaService::Authenticate(const char* method,
                                                       grpc::ServerContext* context) {
  const auto start = std::chrono::steady_clock::now();
  const Status status = auth_->Check(context->client_metadata());
  if (status.ok()) return grpc::Status::OK;
  metrics_->RecordRequest(
      method, StatusCodeName(status.code()), FailureReason(status.code()),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  MEMORIA_LOG(kWarning, "refused {} from {}: {}", method, context->peer(), status.ToString());
  return ToGrpcStatus(status);
}

grpc::Status AuthenticatedMemoriaService::Generate(grpc::ServerContext* context,
                                                   const v1::GenerateRequest* request,
                                                   v1::GenerateReply* reply) {
  grpc::Status refused = Authenticate("Generate", context);
  return refused.ok() ? inner_->Generate(context, request, reply) : refused;
}

grpc::Status AuthenticatedMemoriaService::GenerateStream(
    grpc::ServerContext* context, const v1::GenerateRequest* request,
    grpc::ServerWriter<v1::GenerateStreamReply>* writer) {
  grpc::Status refused = Authenticate("GenerateStream", context);
  return refused.ok() ? inner_->GenerateStream(context, request, writer) : refused;
}

grpc::Status AuthenticatedMemoriaService::ServerInfo(grpc::ServerContext* context,
                                                     const v1::ServerInfoRequest* request,
                                                     v1::ServerInfoReply* reply) {
  grpc::Status refused = Authenticate("ServerInfo", context);
  return refused.ok() ? inner_->ServerInfo(context, request, reply) : refused;
}

grpc::Status AuthenticatedMemoriaService::GetPassage(grpc::ServerContext* context,
                                                     const v1::GetPassageRequest* request,
                                                     v1::Passage* reply) {
  grpc::Status refused = Authenticate("GetPassage", context);
  return refused.ok() ? inner_->GetPassage(context, request, reply) : refused;
}

grpc::Status AuthenticatedMemoriaService::DeletePassages(grpc::ServerContext* context,
                                                         const v1::DeletePassagesRequest* request,
                                                         v1::DeletePassagesReply* reply) {
  grpc::Status refused = Authenticate("DeletePassages", context);
  return refused.ok() ? inner_->DeletePassages(context, request, reply) : refused;
}

grpc::Status AuthenticatedMemoriaService::Ingest(grpc::ServerContext* context,
                                                 grpc::ServerReader<v1::IngestRequest>* reader,
                                                 v1::IngestReply* reply) {
  grpc::Status refused = Authenticate("Ingest", context);
  return refused.ok() ? inner_->Ingest(context, reader, reply) : refused;
}

}  // namespace memoria
