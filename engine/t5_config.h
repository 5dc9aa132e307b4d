// T5 model hyper-parameters, read from a Hugging Face config.json (T5Config field names).
//
// Both families are covered:
//   - original T5 (t5-small/base/...): feed_forward_proj "relu", one wi matrix, tied head
//     (lm_head = shared embedding, decoder output scaled by d_model^-0.5 before it);
//   - T5 v1.1 / Flan-T5: feed_forward_proj "gated-gelu" (gelu_new = tanh GELU on wi_0, times
//     wi_1), untied lm_head, no rescale.
// Defaults are Hugging Face's T5Config defaults (which describe t5-small).
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "engine/json_config.h"
#include "kernels/elementwise.h"

namespace memoria {

struct T5Config {
  int64_t vocab_size = 32128;
  int64_t d_model = 512;
  int64_t d_kv = 64;  // per-head dim; num_heads * d_kv need not equal d_model
  int64_t d_ff = 2048;
  int num_heads = 8;
  int num_layers = 6;          // encoder layers
  int num_decoder_layers = 6;  // defaults to num_layers when absent from config.json
  int relative_attention_num_buckets = 32;
  int relative_attention_max_distance = 128;
  float layer_norm_epsilon = 1e-6f;
  // FFN: gated => out = wo(act(wi_0 x) * wi_1 x), else out = wo(act(wi x)).
  bool gated_ffn = false;
  Activation ffn_activation = Activation::kRelu;
  // Tied: lm_head is shared.weight and the decoder output is scaled by d_model^-0.5 first.
  bool tie_word_embeddings = true;
  int decoder_start_token_id = 0;
  int pad_token_id = 0;
  int eos_token_id = 1;

  int64_t inner_dim() const { return static_cast<int64_t>(num_heads) * d_kv; }

  // Reads the fields above from config.json. feed_forward_proj is "relu" | "gelu" | "gated-gelu"
  // | "gated-relu" | "gated-silu" ...: "gated-" prefix selects the gated FFN; the activation is
  // HF's ACT2FN name with "gated-gelu" meaning gelu_new (tanh). INVALID_ARGUMENT on an unknown
  // activation or a non-positive dimension.
  static StatusOr<T5Config> FromJson(const JsonConfig& json);

  // INVALID_ARGUMENT naming the field when a dimension is out of range.
  Status Validate() const;

  // T5-base-shaped v1.1 config (d 768, 12 + 12 layers, 12 heads, d_ff 2048 gated-GELU), used by
  // the benchmark with random weights.
  static T5Config BaseV11();
};

// Maps an HF activation name ("relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "silu", "swish")
// to a kernel activation. INVALID_ARGUMENT otherwise.
StatusOr<Activation> ParseHfActivation(const std::string& name);

}  // namespace memoria
