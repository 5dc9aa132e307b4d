// LLaMA-architecture decoder-only model (LLaMA 1/2/3, TinyLlama, llama2.c checkpoints after
// conversion), in the Hugging Face layout (LlamaForCausalLM config.json + safetensors).
//
// Per block:  h = x + o_proj(Attention(RoPE(q_proj(n1)), RoPE(k_proj(n1)), v_proj(n1)))
//             x' = h + down_proj(silu(gate_proj(n2)) * up_proj(n2))
// with n1 = RMSNorm(x), n2 = RMSNorm(h); final RMSNorm and lm_head (or the tied embedding).
// Blocks named by config.json's "memory_layers" replace the FFN by a product-key memory layer
// (engine/memory_layer.h): x' = h + MemoryLayer(n2).
// RoPE uses HF's rotate_half pairing (kernels/rope.h); attention is grouped-query (query head h
// reads KV head h / (n_heads / n_kv_heads)), scaled by 1/sqrt(head_dim), causal.
//
// LlamaModel holds immutable weights and is shared (std::shared_ptr<const LlamaModel>) by any
// number of LlamaSessions; a session owns one sequence's KV cache and scratch buffers and is used
// by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/memory_layer.h"
#include "engine/weights.h"
#include "kernels/attention.h"
#include "kernels/iceformer_attention.h"
#include "kernels/rope.h"
#include "kernels/thread_pool.h"

namespace memoria {

struct LlamaConfig {
  int64_t hidden_size = 0;        // d
  int64_t intermediate_size = 0;  // FFN width
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;           // == num_heads without GQA
  int head_dim = 0;               // hidden_size / num_heads unless "head_dim" is given
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 2048;
  float rms_norm_eps = 1e-6f;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  int bos_token_id = 1;
  std::vector<int> eos_token_ids = {2};

  // Reads a LlamaForCausalLM config.json. INVALID_ARGUMENT for missing or inconsistent sizes
  // (e.g. "num_attention_heads 6 is not a multiple of num_key_value_heads 4"), and UNIMPLEMENTED
  // for features we do not serve (rope_scaling, attention/mlp biases).
  static StatusOr<LlamaConfig> FromJson(const JsonConfig& json);
  int64_t q_dim() const { return int64_t(num_heads) * head_dim; }
  int64_t kv_dim() const { return int64_t(num_kv_heads) * head_dim; }
};

// IceFormer (kernels/iceformer_attention.h: top-k attention over a Prioritized DCI index) in
// place of exact attention for long prefill chunks. Off by default: the engine then computes
// exactly what it did before this option existed.
struct LlamaIceformerSettings {
  bool enabled = false;
  // Exact attention while the keys visible to a chunk (KV-cache length + chunk length) are fewer
  // than this: below a few thousand keys the exact blocked kernel is at least as fast.
  int64_t min_kv_len = 4096;
  // Layers (0-based) that use IceFormer; empty = the upper half [num_layers / 2, num_layers), as
  // in the paper (lower layers attend more diffusely). Load fails with INVALID_ARGUMENT for an
  // index outside [0, num_layers).
  std::vector<int> layers;
  // Top-k schedule, DCI structure and search budget. Queries that see at most
  // attention.exact_up_to keys are computed exactly inside IceformerAttention as well.
  IceformerOptions attention;
};

struct LlamaLoadOptions {
  // Longest sequence a session may hold (prompt + generated); 0 = max_position_embeddings.
  // The RoPE table and each session's KV cache are sized by it.
  int64_t max_sequence_length = 0;
  // Element type of product-key memory value tables (kBF16 halves their RAM and bytes read).
  DType memory_value_dtype = DType::kF32;
  // IceFormer for long prefill chunks (off by default).
  LlamaIceformerSettings iceformer;
};

// Optional per-layer view of attention inputs and outputs (tests and analysis capture real
// queries/keys with it). Called by LlamaSession::ForwardChunk right after each layer's attention,
// on the calling thread; the pointers are valid only during the call.
//   q:   [p.q_len, n_heads * head_dim], row stride q_stride (after RoPE, before scaling)
//   k,v: [p.kv_len, n_kv_heads * head_dim], row stride kv_stride (the layer's KV cache: positions
//        0 .. kv_len - 1, this chunk's keys included, after RoPE)
//   out: [p.q_len, n_heads * head_dim], row stride out_stride (the attention output)
// `iceformer` tells which kernel produced `out`.
class LlamaAttentionObserver {
 public:
  virtual ~LlamaAttentionObserver() = default;
  virtual void OnAttention(int layer, const AttentionParams& p, const float* q, int64_t q_stride,
                           const float* k, const float* v, int64_t kv_stride, const float* out,
                           int64_t out_stride, bool iceformer) = 0;
};

class LlamaModel {
 public:
  // Loads <dir>/config.json + safetensors. Errors from ModelDir (NOT_FOUND / INVALID_ARGUMENT /
  // DATA_LOSS) and LlamaConfig::FromJson are returned with the directory as context.
  static StatusOr<std::shared_ptr<const LlamaModel>> Load(const std::string& dir,
                                                          const LlamaLoadOptions& options = {});

  const LlamaConfig& config() const { return config_; }
  // Product-key memory layers (empty layers list when the model has none).
  const MemoryConfig& memory_config() const { return memory_config_; }
  int64_t max_sequence_length() const { return max_sequence_length_; }
  // Bytes of weights read per decoded token (all matrices + embedding row), for bandwidth figures.
  int64_t weight_bytes() const { return weight_bytes_; }
  uint64_t fingerprint() const { return model_dir_->Fingerprint(); }
  const LlamaIceformerSettings& iceformer() const { return iceformer_; }
  // True when layer `layer` uses IceFormer for a prefill chunk of q_len tokens that sees kv_len
  // keys: enabled, the layer selected, q_len > 1 (a single decoded token would build an index of
  // kv_len keys to answer one query, slower than the exact scan) and kv_len >= min_kv_len.
  bool UsesIceformer(int layer, int64_t q_len, int64_t kv_len) const;

 private:
  friend class LlamaSession;
  LlamaModel() = default;

  struct Layer {
    Weight input_norm;   // [d]
    Weight post_norm;    // [d]
    Weight qkv;          // [q_dim + 2 kv_dim, d]: q_proj, k_proj, v_proj rows stacked (one GEMM)
    Weight o_proj;       // [d, q_dim]
    Weight gate_up;      // [2 ff, d]: gate_proj rows then up_proj rows (one GEMM); unset for
                         // memory blocks
    Weight down_proj;    // [d, ff]; unset for memory blocks
    std::unique_ptr<MemoryLayer> memory;  // set for the blocks in memory_layers, replacing the FFN
  };

  LlamaConfig config_;
  MemoryConfig memory_config_;
  int64_t max_sequence_length_ = 0;
  int64_t weight_bytes_ = 0;
  std::unique_ptr<ModelDir> model_dir_;  // owns the mapping the weights may point into
  Weight embed_tokens;                   // [vocab, d], f32
  Weight final_norm;                     // [d]
  Weight lm_head;                        // [vocab, d] (the embedding when tied)
  std::vector<Layer> layers_;
  std::unique_ptr<RopeTable> rope_;
  LlamaIceformerSettings iceformer_;
  std::vector<bool> iceformer_layer_;  // [num_layers]; all false when IceFormer is off
};

// One sequence: its KV cache (f32, [layers][max_sequence_length][kv_dim] for K and V) and
// scratch buffers sized for `prefill_chunk` tokens. Not thread-safe; compute uses `pool`.
class LlamaSession {
 public:
  // prefill_chunk: prompt tokens processed per forward step (bounds scratch memory; longer
  // prompts are processed in chunks with identical results).
  LlamaSession(std::shared_ptr<const LlamaModel> model, const ThreadPool* pool,
               int64_t prefill_chunk = 512);

  const LlamaModel& model() const { return *model_; }
  // Tokens currently in the KV cache.
  int64_t length() const { return length_; }
  void Reset() {
    length_ = 0;
    attention_seconds_ = 0;
  }
  // Wall seconds spent in the attention kernels (exact or IceFormer, all layers) by Forward calls
  // since construction or the last Reset(): two clock reads per layer and call.
  double attention_seconds() const { return attention_seconds_; }
  // Observer of every layer's attention (nullptr = none, the default); not owned, must outlive
  // its use. Adds no work when unset.
  void set_attention_observer(LlamaAttentionObserver* observer) { observer_ = observer; }

  // Appends `ids` at positions [length(), length() + n) and runs them through the model.
  // Writes the logits of the last `logits_rows` of these tokens (0 <= logits_rows <= n) to
  // `logits` as [logits_rows, vocab] (may be null when logits_rows == 0).
  // INVALID_ARGUMENT: empty input, an id outside [0, vocab) (naming it and its position);
  // OUT_OF_RANGE: length() + n > max_sequence_length (stating both numbers). On error the
  // session is unchanged.
  Status Forward(const int* ids, int64_t n, int64_t logits_rows, float* logits);
  Status Forward(const std::vector<int>& ids, int64_t logits_rows, float* logits) {
    return Forward(ids.data(), static_cast<int64_t>(ids.size()), logits_rows, logits);
  }

 private:
  void ForwardChunk(const int* ids, int64_t n, int64_t logits_rows, float* logits);

  std::shared_ptr<const LlamaModel> model_;
  const ThreadPool* pool_;
  int64_t prefill_chunk_;
  int64_t length_ = 0;
  std::vector<float> k_cache_, v_cache_;  // [layers, max_seq, kv_dim]
  // Scratch, sized for prefill_chunk tokens.
  std::vector<float> x_, normed_, qkv_, attn_, gate_up_, act_;
  std::vector<float> memory_out_;        // [prefill_chunk, d], models with memory layers only
  MemoryLayer::Scratch memory_scratch_;
  LlamaAttentionObserver* observer_ = nullptr;
  double attention_seconds_ = 0;
};

}  // namespace memoria
