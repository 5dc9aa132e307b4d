// Request messages from arbitrary bytes (server/request_validation.h): what a client sends is
// parsed by protobuf and then checked before admission. The first byte picks the message:
//   0  GenerateRequest, checked for both paths (LLaMA: ValidateGenerateRequest and, on the
//      prompt's bytes as token ids, ValidatePromptTokens; T5: ValidateLumenRequest)
//   1  IngestRequest (ValidateIngestPassage)
//   2  GetPassageRequest / DeletePassagesRequest (parse + re-serialise)
// Accepted requests must give options inside the limits; errors must be INVALID_ARGUMENT or
// UNIMPLEMENTED.
#include <cmath>
#include <string>
#include <vector>

#include "fuzz/fuzz_target.h"
#include "fuzz/protobuf_quiet.h"
#include "memoria.pb.h"
#include "server/request_validation.h"
#include "server_config.pb.h"

namespace memoria::fuzz {
namespace {

// Fixed limits in the range a server runs with (the server derives them from its model).
RequestLimits Limits() {
  RequestLimits limits;
  limits.max_prompt_tokens = 512;
  limits.max_new_tokens = 256;
  return limits;
}

v1::T5Settings Settings() {
  v1::T5Settings settings;
  settings.set_max_passages(100);
  return settings;
}

bool IsRequestError(const Status& s) {
  return s.code() == StatusCode::kInvalidArgument || s.code() == StatusCode::kUnimplemented;
}

void CheckGenerate(const v1::GenerateRequest& request) {
  const RequestLimits limits = Limits();
  auto llama = ValidateGenerateRequest(request, limits);
  if (llama.ok()) {
    FUZZ_CHECK(!request.prompt().empty());
    FUZZ_CHECK(llama->max_new_tokens >= 1 && llama->max_new_tokens <= limits.max_new_tokens);
    FUZZ_CHECK(llama->sampling.Validate().ok());
    FUZZ_CHECK(static_cast<int>(llama->stop_strings.size()) <= limits.max_stop_strings);
    for (const std::string& stop : llama->stop_strings)
      FUZZ_CHECK(!stop.empty() && stop.size() <= limits.max_stop_string_bytes);
    // The prompt's bytes stand in for token ids (a tokenizer maps any text to ids in range).
    std::vector<int> ids(request.prompt().begin(), request.prompt().end());
    const Status tokens = ValidatePromptTokens(ids, limits, 200);
    FUZZ_CHECK(tokens.ok() || tokens.code() == StatusCode::kInvalidArgument);
  } else {
    FUZZ_CHECK(IsRequestError(llama.status()));
  }

  const v1::T5Settings settings = Settings();
  auto t5 = ValidateLumenRequest(request, settings, limits);
  if (t5.ok()) {
    FUZZ_CHECK(request.prompt().empty() && !request.question().empty());
    FUZZ_CHECK(t5->max_new_tokens >= 1 && t5->max_new_tokens <= limits.max_new_tokens);
    FUZZ_CHECK(t5->num_beams >= 1 && t5->num_beams <= kMaxBeams);
    FUZZ_CHECK(std::isfinite(t5->length_penalty) && t5->length_penalty > 0);
    const int n = request.passage_ids_size() > 0 ? request.passage_ids_size()
                                                 : request.retrieve_top_k();
    FUZZ_CHECK(n >= 1 && n <= settings.max_passages());
  } else {
    FUZZ_CHECK(IsRequestError(t5.status()));
  }
  // Exactly one path can accept a request.
  FUZZ_CHECK(!(llama.ok() && t5.ok()));
}

}  // namespace
}  // namespace memoria::fuzz

MEMORIA_FUZZ_TARGET(Request) {
  SilenceProtobufLogs();
  if (size == 0) return 0;
  const int kind = data[0] % 3;
  const std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  if (kind == 0) {
    v1::GenerateRequest request;
    if (request.ParseFromString(bytes)) CheckGenerate(request);
  } else if (kind == 1) {
    v1::IngestRequest request;
    if (request.ParseFromString(bytes)) {
      const Status s = ValidateIngestPassage(request.passage(), 0);
      FUZZ_CHECK(s.ok() == (!request.passage().id().empty() && !request.passage().text().empty()));
      FUZZ_CHECK(s.ok() || s.code() == StatusCode::kInvalidArgument);
    }
  } else {
    v1::GetPassageRequest get;
    if (get.ParseFromString(bytes)) {
      v1::GetPassageRequest again;
      FUZZ_CHECK(again.ParseFromString(get.SerializeAsString()) && again.id() == get.id());
    }
    v1::DeletePassagesRequest del;
    if (del.ParseFromString(bytes)) {
      v1::DeletePassagesRequest again;
      FUZZ_CHECK(again.ParseFromString(del.SerializeAsString()) &&
                 again.ids_size() == del.ids_size());
    }
  }
  return 0;
}
