// Language-model evaluation of a LLaMA-architecture model (the library behind `memoria eval-lm`):
// perplexity over windows of a token stream with exact attention, and for each IceFormer setting
// how far its next-token distributions move from the exact model's on the same windows.
//
// Windows: `windows` windows of `context` tokens, evenly spaced over the stream (the first starts
// at 0, the last ends at the stream's end; they may overlap when the stream is short). Each window
// is one fresh LlamaSession, prefilled in chunks of `prefill_chunk` tokens (0 = the whole window
// in one chunk, so an IceFormer layer builds its index over the window's keys as they arrive).
// Position t of a window (0-based) predicts token t + 1; positions t >= score_from are scored, so
// score_from = exact_up_to restricts the figures to the queries IceFormer actually searched.
//
// Per setting (the first is always exact attention, the reference of the others):
//   nll             mean -log p(next token), natural log; perplexity = exp(nll)
//   agreement       fraction of scored positions whose argmax equals the exact model's argmax
//   kl              mean KL(p_exact || p_setting) in nats
//   attention_seconds  LlamaSession::attention_seconds() summed over windows (the attention
//                   kernels only: exact blocked kernel or IceformerAttention incl. index build)
//   forward_seconds    wall time of the Forward calls
// Errors: INVALID_ARGUMENT for options out of range (stating the numbers), a stream shorter than
// context, ids outside the vocabulary (from the engine, naming the id and position); errors of
// LlamaModel::Load as they are.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/llama_model.h"

namespace memoria {

struct LmAttentionSetting {
  std::string name;                 // e.g. "exact", "iceformer k=30"
  LlamaIceformerSettings iceformer;  // enabled = false: exact attention
};

struct EvalLmOptions {
  std::string model_dir;
  std::vector<int> ids;  // the token stream
  int64_t context = 2048;
  int64_t windows = 4;
  int64_t prefill_chunk = 0;  // 0 = context
  int64_t score_from = 0;
  int threads = 0;  // 0 = all cores
  // Evaluated after the exact reference, in this order.
  std::vector<LmAttentionSetting> settings;
};

struct LmSettingResult {
  std::string name;
  bool iceformer = false;
  int64_t top_k = 0;  // IceformerTopK(options, context); 0 for exact
  std::vector<int> layers;  // IceFormer layers; empty for exact
  double nll = 0, perplexity = 0, agreement = 1, kl = 0;
  double attention_seconds = 0, forward_seconds = 0;
};

struct EvalLmReport {
  std::string model_dir;
  uint64_t model_fingerprint = 0;
  int num_layers = 0, head_dim = 0, num_heads = 0, num_kv_heads = 0;
  int64_t vocab = 0, stream_tokens = 0, context = 0, windows = 0, score_from = 0;
  int64_t scored_positions = 0;  // per setting, over all windows
  int threads = 0;
  std::vector<LmSettingResult> results;  // [0] = exact
};

Status EvaluateLanguageModel(const EvalLmOptions& options, EvalLmReport* report);

// The report as one JSON object (fields as in the structs above).
std::string EvalLmReportJson(const EvalLmReport& report);

}  // namespace memoria
