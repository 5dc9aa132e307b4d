// Text generation with a LLaMA-style model: prefill the prompt, then decode token by token with
// the session's KV cache until a stop condition holds.
//
// Stop conditions, checked after every generated token in this order:
//   kEos         the token is one of the model's EOS ids (when stop_at_eos); it is not emitted
//   kStopString  the generated text contains a stop string; the text is cut before it (a
//                streaming callback may already have seen the part of it that came in
//                earlier pieces)
//   kMaxTokens   max_new_tokens tokens were generated
//   kContextFull the session reached the model's maximum sequence length
//   kCancelled   the per-token callback returned false (client gone, deadline passed)
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/llama_model.h"
#include "engine/sampling.h"
#include "engine/tokenizer.h"

namespace memoria {

struct CompletionOptions {
  int64_t max_new_tokens = 128;       // >= 1
  SamplingParams sampling;            // default: greedy
  bool stop_at_eos = true;
  std::vector<std::string> stop_strings;
};

enum class StopReason { kEos, kStopString, kMaxTokens, kContextFull, kCancelled };
const char* StopReasonName(StopReason reason);  // "eos", "stop_string", ...

struct CompletionResult {
  std::vector<int> output_ids;  // generated ids (EOS excluded)
  std::string text;             // detokenised output (empty without a tokenizer)
  StopReason stop_reason = StopReason::kMaxTokens;
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;    // time for all tokens after the first
  double attention_seconds = 0; // part of prefill + decode spent in the attention kernels
};

// Called with each generated token and the text it adds; return false to stop (kCancelled).
using TokenCallback = std::function<bool(int id, const std::string& text_piece)>;

// Runs prompt_ids (non-empty; the caller adds BOS if the model wants it) through `session`
// (which must be empty: length() == 0) and generates. `tokenizer` may be null, then no text is
// produced and stop_strings are ignored.
// INVALID_ARGUMENT: empty prompt, bad sampling parameters, max_new_tokens < 1, a non-empty
// session; OUT_OF_RANGE: prompt longer than the model's maximum sequence length (both numbers).
StatusOr<CompletionResult> Generate(LlamaSession& session, const Tokenizer* tokenizer,
                                    const std::vector<int>& prompt_ids,
                                    const CompletionOptions& options,
                                    const TokenCallback& on_token = nullptr);

}  // namespace memoria
