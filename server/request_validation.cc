#include "server/request_validation.h"

#include <cmath>

namespace memoria {

StatusOr<CompletionOptions> ValidateGenerateRequest(const v1::GenerateRequest& request,
                                                    const RequestLimits& limits) {
  if (!request.question().empty() || request.passage_ids_size() > 0 ||
      request.retrieve_top_k() != 0) {
    return UnimplementedError(
        "this server serves a LLaMA model and completes prompts (set `prompt`); the T5/LUMEN "
        "path (question, passage_ids, retrieve_top_k) needs a server of a T5 model");
  }
  if (request.prompt().empty()) return InvalidArgumentError("prompt is empty");
  const v1::DecodingParams& p = request.params();
  CompletionOptions options;
  if (p.max_new_tokens() < 0 || p.max_new_tokens() > limits.max_new_tokens) {
    return InvalidArgumentError(
        "max_new_tokens must be in [0, " + std::to_string(limits.max_new_tokens) +
        "] (0 = default " +
        std::to_string(std::min(limits.default_new_tokens, limits.max_new_tokens)) + "), got " +
        std::to_string(p.max_new_tokens()));
  }
  options.max_new_tokens = p.max_new_tokens() == 0
                               ? std::min(limits.default_new_tokens, limits.max_new_tokens)
                               : p.max_new_tokens();
  // proto3 cannot tell "unset" from 0: top_p 0 means the default 1 (no cut).
  options.sampling.temperature = p.temperature();
  options.sampling.top_k = p.top_k();
  options.sampling.top_p = p.top_p() == 0.0f ? 1.0f : p.top_p();
  options.sampling.seed = p.seed();
  RETURN_IF_ERROR(options.sampling.Validate());
  if (p.stop_size() > limits.max_stop_strings) {
    return InvalidArgumentError("at most " + std::to_string(limits.max_stop_strings) +
                                " stop strings, got " + std::to_string(p.stop_size()));
  }
  for (int i = 0; i < p.stop_size(); ++i) {
    const std::string& stop = p.stop(i);
    if (stop.empty()) return InvalidArgumentError("stop string " + std::to_string(i) + " is empty");
    if (stop.size() > limits.max_stop_string_bytes) {
      return InvalidArgumentError("stop string " + std::to_string(i) + " has " +
                                  std::to_string(stop.size()) + " bytes, more than the limit of " +
                                  std::to_string(limits.max_stop_string_bytes));
    }
    options.stop_strings.push_back(stop);
  }
  options.stop_at_eos = !p.ignore_eos();
  return options;
}

Status ValidatePromptTokens(const std::vector<int>& ids, const RequestLimits& limits,
                            int64_t vocab_size) {
  if (ids.empty())
    return InvalidArgumentError("prompt is empty after tokenization (no_bos and no tokens)");
  if (static_cast<int64_t>(ids.size()) > limits.max_prompt_tokens) {
    return InvalidArgumentError("prompt has " + std::to_string(ids.size()) +
                                " tokens, more than the limit of " +
                                std::to_string(limits.max_prompt_tokens));
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return InvalidArgumentError("prompt token " + std::to_string(i) + " has id " +
                                  std::to_string(ids[i]) + ", outside the vocabulary [0, " +
                                  std::to_string(vocab_size) + ")");
    }
  }
  return Status::Ok();
}

}  // namespace memoria
