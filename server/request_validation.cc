#include "server/request_validation.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

namespace memoria {

StatusOr<CompletionOptions> ValidateGenerateRequest(const v1::GenerateRequest& request,
                                                    const RequestLimits& limits) {
  if (!request.question().empty() || request.passage_ids_size() > 0 ||
      request.retrieve_top_k() != 0 || !request.codec().empty() || request.params().extractive() ||
      request.params().num_beams() > 1 || request.params().length_penalty() != 0) {
    return UnimplementedError(
        "this server serves a LLaMA model and completes prompts (set `prompt`); the T5/LUMEN "
        "path (question, passage_ids, retrieve_top_k, codec, extractive, num_beams, "
        "length_penalty) needs a server of a T5 model");
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

StatusOr<T5GenerationOptions> ValidateLumenRequest(const v1::GenerateRequest& request,
                                                   const v1::T5Settings& settings,
                                                   const RequestLimits& limits) {
  if (!request.prompt().empty()) {
    return UnimplementedError(
        "this server serves a T5 model (LUMEN): send `question` with passage_ids or "
        "retrieve_top_k; `prompt` completion needs a server of a LLaMA model");
  }
  if (request.question().empty()) return InvalidArgumentError("question is empty");
  const int given = request.passage_ids_size();
  const int top_k = request.retrieve_top_k();
  if (top_k < 0)
    return InvalidArgumentError("retrieve_top_k must be >= 0, got " + std::to_string(top_k));
  if (given == 0 && top_k == 0)
    return InvalidArgumentError("give passage_ids or retrieve_top_k > 0 (neither was given)");
  if (given > 0 && top_k > 0) {
    return InvalidArgumentError("give passage_ids or retrieve_top_k, not both (got " +
                                std::to_string(given) + " ids and retrieve_top_k " +
                                std::to_string(top_k) + ")");
  }
  const int n = given > 0 ? given : top_k;
  if (n > settings.max_passages()) {
    return InvalidArgumentError(std::to_string(n) + " passages requested, more than the limit of " +
                                std::to_string(settings.max_passages()));
  }
  std::set<std::string> seen;
  for (int i = 0; i < given; ++i) {
    const std::string& id = request.passage_ids(i);
    if (id.empty()) return InvalidArgumentError("passage id " + std::to_string(i) + " is empty");
    if (!seen.insert(id).second)
      return InvalidArgumentError("passage id '" + id + "' is given twice");
  }

  const v1::DecodingParams& p = request.params();
  if (p.temperature() != 0 || p.top_k() != 0 || (p.top_p() != 0 && p.top_p() != 1) ||
      p.stop_size() > 0) {
    return InvalidArgumentError(
        "the T5 path decodes greedy or by beam search (num_beams): temperature, top_k, top_p and "
        "stop must be unset");
  }
  if (p.max_new_tokens() < 0 || p.max_new_tokens() > limits.max_new_tokens) {
    return InvalidArgumentError("max_new_tokens must be in [0, " +
                                std::to_string(limits.max_new_tokens) + "], got " +
                                std::to_string(p.max_new_tokens()));
  }
  if (p.num_beams() < 0 || p.num_beams() > kMaxBeams) {
    return InvalidArgumentError("num_beams must be in [0, " + std::to_string(kMaxBeams) +
                                "] (0 or 1 = greedy), got " + std::to_string(p.num_beams()));
  }
  // NaN would make every beam score NaN and the beam ordering meaningless.
  if (!(std::isfinite(p.length_penalty()) && p.length_penalty() >= 0))
    return InvalidArgumentError("length_penalty must be a finite number >= 0, got " +
                                std::to_string(p.length_penalty()));
  T5GenerationOptions options;
  options.max_new_tokens = static_cast<int>(
      p.max_new_tokens() == 0 ? std::min(limits.default_new_tokens, limits.max_new_tokens)
                              : p.max_new_tokens());
  options.num_beams = std::max(1, p.num_beams());
  options.length_penalty = p.length_penalty() == 0 ? 1.0f : p.length_penalty();
  options.stop_at_eos = !p.ignore_eos();
  if (!options.stop_at_eos && options.num_beams > 1)
    return InvalidArgumentError("ignore_eos works with greedy decoding only (num_beams <= 1)");
  options.extractive = p.extractive();
  if (options.extractive && !options.stop_at_eos)
    return InvalidArgumentError("ignore_eos cannot be combined with extractive (a span ends at EOS)");
  if (settings.iceformer_min_keys() > 0) {
    options.iceformer.enabled = true;
    options.iceformer.min_keys = settings.iceformer_min_keys();
    options.iceformer.options.top_k = settings.iceformer_top_k();
  }
  return options;
}

Status ValidateIngestPassage(const v1::Passage& passage, int64_t index) {
  const std::string where = "passage " + std::to_string(index);
  if (passage.id().empty()) return InvalidArgumentError(where + " has an empty id");
  if (passage.text().empty())
    return InvalidArgumentError(where + " ('" + passage.id() + "') has no text");
  return Status::Ok();
}

}  // namespace memoria
