// T5 encoder-decoder (Hugging Face T5ForConditionalGeneration layout), both families:
// original T5 (ReLU FFN, tied head with the d_model^-0.5 rescale) and T5 v1.1 / Flan-T5
// (gated-GELU FFN, untied lm_head). See engine/t5_config.h.
//
// Encoder block:  h += o(Attn(q(n), k(n), v(n)) + bias_enc)   n = RMSNorm_1(h)
//                 h += FFN(RMSNorm_2(h))
// Decoder block:  self-attention (causal, bias_dec), cross-attention over the encoder output (no
// position bias), FFN; each with its own RMSNorm and residual. Attention is NOT scaled by
// 1/sqrt(d_kv) (T5 folds the scale into the weights). The relative position bias table lives in
// layer 0 of each stack ("...block.0.layer.0.SelfAttention.relative_attention_bias.weight",
// [num_buckets, num_heads]) and is shared by all layers of that stack; buckets are bidirectional
// in the encoder and causal in the decoder (HF _relative_position_bucket, float32 log as HF).
//
// Sequences are handled packed, without padding: a batch of encoder sequences is one
// [total_tokens, d_model] row-major matrix, sequence s occupying rows [offsets[s], offsets[s+1]).
// Linear layers run as one GEMM over all rows of the batch; attention runs per sequence through
// the blocked Attention kernel (no [len x len] score matrix). This equals HF with padding masks.
//
// Weights are immutable once loaded; a T5Model is shared (std::shared_ptr<const T5Model>) by any
// number of concurrent requests, each with its own T5EncoderScratch / T5DecoderState.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/beam_search.h"
#include "engine/t5_config.h"
#include "engine/weights.h"
#include "kernels/attention.h"
#include "kernels/iceformer_attention.h"
#include "kernels/thread_pool.h"

namespace memoria {

// HF T5Attention._relative_position_bucket for r = key_pos - query_pos. Bidirectional: half the
// buckets for r > 0; causal: r > 0 maps to bucket 0 (those keys are masked anyway). Distances
// below num_buckets/2 (or /4 bidirectional) get their own bucket, larger ones log-spaced up to
// max_distance, beyond which the bucket saturates.
int T5RelativeBucket(int64_t r, bool bidirectional, int num_buckets, int max_distance);

// Reusable buffers for encoder passes; grown on demand, never shrunk. One per thread of control.
struct T5EncoderScratch {
  std::vector<float> norm;  // [rows, d_model]
  std::vector<float> qkv;   // [rows, 3 * inner]
  std::vector<float> attn;  // [rows, inner]
  std::vector<float> ff;    // [ffn_chunk, (gated ? 2 : 1) * d_ff]
};

class T5Model;

// IceFormer for the decoder's cross-attention (kernels/iceformer_attention.h): when the encoder
// memory has at least min_keys keys (FiD/LUMEN: passages x tokens, e.g. 100 x 200 = 20,000),
// StartDecoder builds one IceformerKeyIndex per decoder layer over that layer's cross K (once
// per request) and every DecoderStep queries it, so each step's cross-attention costs O(k) value
// rows per query instead of O(enc_len). Cross-attention has no position bias, so the search's
// top-k by q.k is the true top-k of the scores; what is lost is the attention mass outside the
// top-k (see the kernel's header). All sequences (beams) share the index: beam reordering only
// touches self-attention state. Below min_keys, or when disabled, the exact kernel runs.
struct T5IceformerSettings {
  bool enabled = false;
  int64_t min_keys = 4096;
  IceformerOptions options;
};

// Per-request decoder state: the cross-attention K/V of every layer (computed once from the
// encoder output), the self-attention KV cache of `num_seqs` sequences (beams) and scratch.
// Memory (f32): cross  2 * layers * enc_len * inner
//               cache  2 * layers * num_seqs * max_len * inner
//               scratch O(num_seqs * max_step_tokens * (d_ff + vocab)).
// Not thread-safe; created by T5Model::StartDecoder and reused for the whole generation.
class T5DecoderState {
 public:
  int num_seqs() const { return num_seqs_; }
  int64_t max_len() const { return max_len_; }
  int64_t enc_len() const { return enc_len_; }
  // Tokens already in each sequence's self-attention cache (the same for all sequences).
  int64_t length() const { return length_; }
  // Wall seconds spent in the attention kernels (self + cross, all layers) of the DecoderStep
  // calls since StartDecoder: two clock reads per attention call, far below the kernel's cost.
  double attention_seconds() const { return attention_seconds_; }
  // True when this request's cross-attention queries IceFormer indices (see T5IceformerSettings).
  bool cross_iceformer() const { return cross_iceformer_; }
  // IceFormer index builds (one per decoder layer) done by the last StartDecoder: the indices
  // are built there, once per request, and never by DecoderStep.
  int64_t cross_index_builds() const { return cross_index_builds_; }

 private:
  friend class T5Model;
  int num_seqs_ = 0;
  int64_t max_len_ = 0;
  int64_t max_step_tokens_ = 0;
  int64_t enc_len_ = 0;
  int64_t length_ = 0;
  double attention_seconds_ = 0;
  std::vector<std::vector<float>> cross_kv_;  // [layer][enc_len, 2 * inner]: K cols, then V
  // [layer] indices over cross_kv_[layer]'s K columns, when cross_iceformer_ (they reference
  // cross_kv_ in place, which is not resized until the next StartDecoder rebuilds them).
  std::vector<IceformerKeyIndex> cross_index_;
  bool cross_iceformer_ = false;
  int64_t cross_index_builds_ = 0;
  std::vector<std::vector<float>> self_k_;    // [layer][num_seqs, max_len, inner]
  std::vector<std::vector<float>> self_v_;
  std::vector<float> reorder_tmp_;  // [num_seqs, max_len, inner]
  std::vector<float> x_, norm_, qkv_, attn_, ff_, last_;
};

class T5Model {
 public:
  // Loads <dir>/config.json + safetensors (HF tensor names). Errors from ModelDir and
  // T5Config::FromJson (NOT_FOUND / INVALID_ARGUMENT / DATA_LOSS), with the directory as context.
  static StatusOr<std::shared_ptr<const T5Model>> Load(const std::string& dir);

  // Random weights of the given shape (tests and benchmarks): shared ~ N(0, 1), linear weights
  // ~ N(0, 1/fan_in), norm weights 1 + N(0, 0.1), position bias N(0, 0.5). Deterministic in seed.
  static StatusOr<std::shared_ptr<const T5Model>> CreateRandom(const T5Config& config,
                                                               uint64_t seed);

  const T5Config& config() const { return config_; }

  // ---- Encoder -------------------------------------------------------------------------------

  // h[i, :] = shared.weight[ids[i]] for i < n; h: [n, d_model]. INVALID_ARGUMENT for an id
  // outside [0, vocab_size), naming it and its position.
  Status Embed(const int* ids, int64_t n, float* h) const;

  // Runs encoder layers [first, last) in place over the packed batch h [offsets.back(), d_model]
  // (see the header comment for `offsets`). 0 <= first <= last <= num_layers (checked).
  void EncoderLayers(const ThreadPool& pool, int first, int last,
                     const std::vector<int64_t>& offsets, float* h,
                     T5EncoderScratch* scratch) const;
  // Same, calling `check` (when non-empty) before each layer: its first non-OK status stops the
  // pass there and is returned (h then holds the output of the layers already run). The hook
  // for deadlines and cancellation; an empty check costs one branch per layer.
  Status EncoderLayers(const ThreadPool& pool, int first, int last,
                       const std::vector<int64_t>& offsets, float* h, T5EncoderScratch* scratch,
                       const std::function<Status()>& check) const;

  // encoder.final_layer_norm over rows of h [rows, d_model], in place.
  void EncoderFinalNorm(const ThreadPool& pool, float* h, int64_t rows) const;

  // The whole encoder over one sequence: [ids.size(), d_model] after the final norm.
  StatusOr<std::vector<float>> Encode(const ThreadPool& pool, const std::vector<int>& ids) const;

  // ---- Decoder -------------------------------------------------------------------------------

  // Prepares `state` for generation against the encoder output enc [enc_len, d_model] (already
  // final-normed): computes the cross-attention K/V of all layers once and sizes the caches for
  // num_seqs sequences of up to max_len tokens, each step feeding up to max_step_tokens tokens per
  // sequence. With iceformer.enabled and enc_len >= iceformer.min_keys it also builds each
  // layer's cross-attention index (see T5IceformerSettings). INVALID_ARGUMENT for non-positive
  // sizes. The state keeps no pointer to enc.
  Status StartDecoder(const ThreadPool& pool, const float* enc, int64_t enc_len, int num_seqs,
                      int64_t max_len, int64_t max_step_tokens, T5DecoderState* state,
                      const T5IceformerSettings& iceformer = T5IceformerSettings()) const;

  // Feeds q_len tokens to each sequence (tokens: [num_seqs, q_len], sequence-major) at positions
  // [length(), length() + q_len) and appends them to the caches.
  // Logits: all_rows ? [num_seqs * q_len, vocab] : [num_seqs, vocab] for each sequence's last
  // token. INVALID_ARGUMENT for a bad id; OUT_OF_RANGE when length() + q_len > max_len or q_len >
  // max_step_tokens. The state is unchanged on error.
  Status DecoderStep(const ThreadPool& pool, const int* tokens, int64_t q_len, bool all_rows,
                     T5DecoderState* state, float* logits) const;

  // Beam reordering: sequence i continues from the cache of sequence parents[i] (parents.size()
  // == num_seqs, each in range; checked).
  void ReorderCache(const std::vector<int>& parents, T5DecoderState* state) const;

 private:
  T5Model() = default;
  using Getter = std::function<StatusOr<Weight>(const std::string& name,
                                                const std::vector<int64_t>& shape, bool matmul)>;
  Status Init(const T5Config& config, const Getter& get);

  struct Ffn {
    Weight wi;  // [d_ff, d] or gated [2 d_ff, d]: wi_0 rows then wi_1 rows (one GEMM)
    Weight wo;  // [d, d_ff]
  };
  struct EncoderLayer {
    Weight attn_norm, ffn_norm;  // [d]
    Weight qkv;                  // [3 inner, d]: q, k, v rows stacked
    Weight o;                    // [d, inner]
    Ffn ffn;
  };
  struct DecoderLayer {
    Weight self_norm, cross_norm, ffn_norm;  // [d]
    Weight self_qkv;                         // [3 inner, d]
    Weight self_o;                           // [d, inner]
    Weight cross_q;                          // [inner, d]
    Weight cross_kv;                         // [2 inner, d]: k rows then v rows
    Weight cross_o;                          // [d, inner]
    Ffn ffn;
  };

  // out += FFN(x) for rows of x [rows, d] (x is the normed input), in row chunks of the scratch.
  void FfnAccumulate(const ThreadPool& pool, const Ffn& ffn, const float* x, int64_t rows,
                     float* out, std::vector<float>* scratch) const;

  T5Config config_;
  std::unique_ptr<ModelDir> model_dir_;  // owns the mapping that weights may view
  Weight shared_;                        // [vocab, d] f32
  Weight lm_head_;                       // [vocab, d] (shared_ when tied)
  Weight enc_final_norm_, dec_final_norm_;
  std::vector<EncoderLayer> enc_layers_;
  std::vector<DecoderLayer> dec_layers_;
  // Bias tables for the Attention kernel, [num_heads, length] each (see kernels/attention.h).
  std::vector<float> enc_bias_values_, dec_bias_values_;
  RelativeBias enc_bias_, dec_bias_;
};

struct T5GenerationOptions {
  int max_new_tokens = 20;      // >= 1
  int num_beams = 1;            // 1: greedy (argmax); > 1: beam search (engine/beam_search.h)
  float length_penalty = 1.0f;  // beam search only
  bool stop_at_eos = true;      // false: always generate max_new_tokens (greedy only)
  // Answer with a span of the passages read (engine/span_constraint.h): T5Generate then needs
  // the constraint that holds their token ids (the caller that has them builds it).
  bool extractive = false;
  T5IceformerSettings iceformer;  // approximate cross-attention over long memories (default off)
};

// Generates from the encoder output enc [enc_len, d_model] (final-normed), starting from
// decoder_start_token_id, with an incremental decoder (self-attention KV cache, cross K/V computed
// once). `state` is (re)initialised here and may be reused across requests to keep its buffers.
// on_step (optional) is the searches' per-token hook (SearchStepHook in engine/beam_search.h):
// greedy passes each new token as it is generated; beam search passes the beams' tokens, which
// are final only when the search ends. Its non-OK status stops generation and is returned.
// constraint (optional, not owned) restricts the ids chosen (engine/beam_search.h); it is
// required when options.extractive is set (INVALID_ARGUMENT otherwise, and for extractive
// without stop_at_eos) and used whenever given.
StatusOr<GenerationResult> T5Generate(const T5Model& model, const ThreadPool& pool,
                                      const float* enc, int64_t enc_len,
                                      const T5GenerationOptions& options, T5DecoderState* state,
                                      const SearchStepHook* on_step = nullptr,
                                      const TokenConstraint* constraint = nullptr);

}  // namespace memoria
