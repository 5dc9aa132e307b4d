// Checking requests before they are admitted: a GenerateRequest's shape and decoding parameters
// (turned into the engine's CompletionOptions or T5GenerationOptions) and Ingest passages. Every
// error is INVALID_ARGUMENT (or UNIMPLEMENTED for a request of the other model's path) with a
// message that states the offending value and the limit. Pure functions of the message and the
// limits (no model, store or tokenizer), safe to call concurrently.
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "engine/llama_generator.h"
#include "engine/t5_model.h"
#include "memoria.pb.h"
#include "server_config.pb.h"

namespace memoria {

struct RequestLimits {
  int64_t max_prompt_tokens = 0;     // > 0
  int64_t max_new_tokens = 0;        // > 0; also the default when a request gives 0
  int64_t default_new_tokens = 128;  // used when a request gives 0 (capped at max_new_tokens)
  int max_stop_strings = 16;
  size_t max_stop_string_bytes = 256;
};

// The request's shape (LLaMA servers): UNIMPLEMENTED for the T5/LUMEN fields (question,
// passage_ids, retrieve_top_k, codec, params.extractive / num_beams > 1 / length_penalty),
// INVALID_ARGUMENT for an empty prompt or bad decoding parameters.
// Returns the options to generate with.
StatusOr<CompletionOptions> ValidateGenerateRequest(const v1::GenerateRequest& request,
                                                    const RequestLimits& limits);

// The tokenized prompt against the limits: INVALID_ARGUMENT "prompt has 700 tokens, more than the
// limit of 512" or "prompt is empty after tokenization"; ids outside [0, vocab) are rejected.
Status ValidatePromptTokens(const std::vector<int>& ids, const RequestLimits& limits,
                            int64_t vocab_size);

inline constexpr int kMaxBeams = 16;

// The decoding options of a T5/LUMEN request (servers of a T5 model). UNIMPLEMENTED for a
// `prompt`; INVALID_ARGUMENT for an empty question, neither or both of passage_ids /
// retrieve_top_k > 0, an empty or duplicated passage id, more passages than
// settings.max_passages, max_new_tokens out of [0, limit], sampling fields (temperature, top_k,
// top_p, stop) set (the T5 path decodes greedy or by beam search only), num_beams outside
// [0, kMaxBeams], a negative length_penalty, ignore_eos with beams or with
// extractive. No store or model access.
// The options carry the server's IceFormer cross-attention setting (settings.iceformer_min_keys,
// iceformer_top_k).
StatusOr<T5GenerationOptions> ValidateLumenRequest(const v1::GenerateRequest& request,
                                                   const v1::T5Settings& settings,
                                                   const RequestLimits& limits);

// One passage of an Ingest stream, the index-th (0-based) of the call: INVALID_ARGUMENT
// "passage 3 has an empty id" or "passage 3 ('x') has no text". token_ids are ignored (the
// server tokenizes).
Status ValidateIngestPassage(const v1::Passage& passage, int64_t index);

}  // namespace memoria
