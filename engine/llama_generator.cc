#include "engine/llama_generator.h"

#include <algorithm>
#include <chrono>

namespace memoria {

const char* StopReasonName(StopReason reason) {
  switch (reason) {
    case StopReason::kEos: return "eos";
    case StopReason::kStopString: return "stop_string";
    case StopReason::kMaxTokens: return "max_tokens";
    case StopReason::kContextFull: return "context_full";
    case StopReason::kCancelled: return "cancelled";
  }
  return "unknown";
}

StatusOr<CompletionResult> Generate(LlamaSession& session, const Tokenizer* tokenizer,
                                    const std::vector<int>& prompt_ids,
                                    const CompletionOptions& options,
                                    const TokenCallback& on_token) {
  using Clock = std::chrono::steady_clock;
  if (prompt_ids.empty()) return InvalidArgumentError("the prompt is empty");
  if (options.max_new_tokens < 1) {
    return InvalidArgumentError("max_new_tokens must be >= 1, got " + std::to_string(options.max_new_tokens));
  }
  RETURN_IF_ERROR(options.sampling.Validate());
  if (session.length() != 0) {
    return InvalidArgumentError("generation needs an empty session, this one holds " +
                                std::to_string(session.length()) + " tokens");
  }
  const LlamaConfig& config = session.model().config();
  const int64_t max_len = session.model().max_sequence_length();
  if (static_cast<int64_t>(prompt_ids.size()) > max_len) {
    return OutOfRangeError("prompt of " + std::to_string(prompt_ids.size()) +
                           " tokens exceeds the maximum sequence length " + std::to_string(max_len));
  }

  CompletionResult result;
  result.prompt_tokens = static_cast<int64_t>(prompt_ids.size());
  std::vector<float> logits(config.vocab_size);
  Sampler sampler(options.sampling);
  std::vector<int> all_ids = prompt_ids;

  auto start = Clock::now();
  const double attention_before = session.attention_seconds();
  RETURN_IF_ERROR(session.Forward(prompt_ids, 1, logits.data()));
  auto after_prefill = Clock::now();
  result.prefill_seconds = std::chrono::duration<double>(after_prefill - start).count();

  while (true) {
    const int id = sampler.Sample(logits.data(), config.vocab_size);
    if (options.stop_at_eos &&
        std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), id) != config.eos_token_ids.end()) {
      result.stop_reason = StopReason::kEos;
      break;
    }
    std::string piece;
    if (tokenizer != nullptr) {
      ASSIGN_OR_RETURN(piece, tokenizer->DecodeIncrement(all_ids, id));
    }
    all_ids.push_back(id);
    result.output_ids.push_back(id);
    const size_t emitted = result.text.size();
    result.text += piece;

    // A stop string can only newly appear in the tail that overlaps this piece.
    bool stop_string_hit = false;
    for (const std::string& stop : options.stop_strings) {
      if (stop.empty() || tokenizer == nullptr) continue;
      const size_t from = emitted >= stop.size() ? emitted - stop.size() + 1 : 0;
      const size_t at = result.text.find(stop, from);
      if (at != std::string::npos) {
        result.text.resize(at);
        piece = at > emitted ? result.text.substr(emitted) : std::string();
        stop_string_hit = true;
        break;
      }
    }
    if (on_token && !on_token(id, piece)) {
      result.stop_reason = StopReason::kCancelled;
      break;
    }
    if (stop_string_hit) {
      result.stop_reason = StopReason::kStopString;
      break;
    }
    if (static_cast<int64_t>(result.output_ids.size()) >= options.max_new_tokens) {
      result.stop_reason = StopReason::kMaxTokens;
      break;
    }
    if (session.length() >= max_len) {
      result.stop_reason = StopReason::kContextFull;
      break;
    }
    RETURN_IF_ERROR(session.Forward(&id, 1, 1, logits.data()));
  }
  result.decode_seconds = std::chrono::duration<double>(Clock::now() - after_prefill).count();
  result.attention_seconds = session.attention_seconds() - attention_before;
  return result;
}

}  // namespace memoria
