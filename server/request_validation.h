// Checking a GenerateRequest before it is admitted, and turning its decoding parameters into the
// engine's CompletionOptions. Every error is INVALID_ARGUMENT (or UNIMPLEMENTED for the LUMEN
// path) with a message that states the offending value and the limit.
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "engine/llama_generator.h"
#include "memoria.pb.h"

namespace memoria {

struct RequestLimits {
  int64_t max_prompt_tokens = 0;     // > 0
  int64_t max_new_tokens = 0;        // > 0; also the default when a request gives 0
  int64_t default_new_tokens = 128;  // used when a request gives 0 (capped at max_new_tokens)
  int max_stop_strings = 16;
  size_t max_stop_string_bytes = 256;
};

// The request's shape (LLaMA servers): UNIMPLEMENTED for the T5/LUMEN fields (question,
// passage_ids, retrieve_top_k), INVALID_ARGUMENT for an empty prompt or bad decoding parameters.
// Returns the options to generate with.
StatusOr<CompletionOptions> ValidateGenerateRequest(const v1::GenerateRequest& request,
                                                    const RequestLimits& limits);

// The tokenized prompt against the limits: INVALID_ARGUMENT "prompt has 700 tokens, more than the
// limit of 512" or "prompt is empty after tokenization"; ids outside [0, vocab) are rejected.
Status ValidatePromptTokens(const std::vector<int>& ids, const RequestLimits& limits,
                            int64_t vocab_size);

}  // namespace memoria
