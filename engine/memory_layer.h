// Product-key memory layers ("Memory Layers at Scale", Meta 2024; reference implementation
// facebookresearch/memory, lingua/product_key/memory.py) used in place of the feed-forward network
// of chosen LLaMA blocks.
//
// Forward for one token x (d floats), with the lookup of kernels/product_key.h:
//   q      = query_proj(x)                                  [heads * k_dim]  (Linear, bias opt.)
//   m      = sum_h softmax-weighted rows of the value table  [v_dim]
//   Memory+ (swilu):      y = value_proj(m * silu(swilu_projection(x)))
//   value_proj only:      y = value_proj(m)   (when memory_v_dim is given and swilu is off)
//   neither:              y = m               (v_dim == d)
//   gated:                y = sigmoid(gate(x)) * y        (gate: Linear(d, 1))
// The caller adds the residual: the block computes h + y with x = post_attention_layernorm(h),
// exactly where the FFN output would go.
//
// config.json keys (all optional; without "memory_layers" the model has no memory layer):
//   memory_layers        [int]  block indices whose FFN is a memory layer, e.g. [4, 12, 20]
//   memory_n_keys        1024   half-keys per set; n_keys^2 value slots. Slots grow the value table
//                               (n_keys^2 * v_dim * 4 bytes f32), not the FLOPs.
//   memory_heads         4      read heads; each adds knn value rows read per token
//   memory_knn           32     value rows read per head (and per-half candidates kept)
//   memory_k_dim         512    query/key size per head (two halves of k_dim/2)
//   memory_v_dim         -1     value row size; -1 means hidden_size
//   memory_swilu         true   Memory+: gate the lookup by silu(swilu_projection(x)) and project
//   memory_gated         false  multiply the output by sigmoid(gate(x))
//   memory_share_values  true   one value table for all memory layers (Memory+); false gives each
//                               layer its own table
//   memory_query_bias    true   query_proj has a bias
//   memory_proj_bias     true   value_proj, swilu_projection and gate have biases
// plus hidden_size (d) and num_hidden_layers (to check the block indices).
//
// Tensor names ({i} = block index), f32, bf16 or f16 on disk, shapes as PyTorch stores them:
//   model.layers.{i}.memory.query_proj.weight        [heads * k_dim, d]
//   model.layers.{i}.memory.query_proj.bias          [heads * k_dim]          (memory_query_bias)
//   model.layers.{i}.memory.keys                     [heads, 2, n_keys, k_dim / 2]
//   model.memory_values.weight                       [n_keys^2, v_dim]        (shared table)
//   model.layers.{i}.memory.values.weight            [n_keys^2, v_dim]        (not shared)
//   model.layers.{i}.memory.value_proj.weight        [d, v_dim]               (swilu or v_dim set)
//   model.layers.{i}.memory.value_proj.bias          [d]
//   model.layers.{i}.memory.swilu_projection.weight  [v_dim, d]               (swilu)
//   model.layers.{i}.memory.swilu_projection.bias    [v_dim]
//   model.layers.{i}.memory.gate.weight              [1, d]                   (gated)
//   model.layers.{i}.memory.gate.bias                [1]
// Biases follow memory_query_bias / memory_proj_bias. A memory block has no mlp.* tensors; it keeps
// input_layernorm, self_attn.* and post_attention_layernorm.
//
// Memory: the value table is held in RAM (memory-mapped when f32 on disk and kept f32); it needs
// n_keys^2 * v_dim * 4 bytes as f32 (4 GiB at the defaults with v_dim 1024) or half that as bf16.
// Tables larger than RAM are not supported.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/json_config.h"
#include "engine/weights.h"
#include "kernels/dtype.h"
#include "kernels/product_key.h"
#include "kernels/thread_pool.h"

namespace memoria {

struct MemoryConfig {
  std::vector<int> layers;  // sorted, distinct, in [0, num_hidden_layers)
  int64_t d = 0;            // hidden_size
  int64_t n_keys = 1024;
  int64_t heads = 4;
  int64_t knn = 32;
  int64_t k_dim = 512;
  int64_t v_dim = 0;        // resolved: memory_v_dim, or d when -1
  bool swilu = true;
  bool value_proj = true;   // resolved: swilu || memory_v_dim > 0 (as in the reference)
  bool gated = false;
  bool share_values = true;
  bool query_bias = true;
  bool proj_bias = true;
  // Run-time choice, not from config.json: the element type the value table is kept in. kBF16
  // halves the table's RAM and the bytes read per token (values are rounded to bf16 at load);
  // kF32 keeps f32 tables on disk as zero-copy views.
  DType value_dtype = DType::kF32;

  bool enabled() const { return !layers.empty(); }
  bool IsMemoryLayer(int block) const;
  ProductKeyParams kernel_params() const;
  // Bytes of the value table in value_dtype.
  int64_t value_table_bytes() const { return n_keys * n_keys * v_dim * DTypeSize(value_dtype); }
};

// Reads the memory_* keys (see the header comment) plus hidden_size and num_hidden_layers.
// INVALID_ARGUMENT names the key and value: "memory_knn 2000 outside [1, memory_n_keys = 1024]",
// "memory_layers entry 40 outside [0, num_hidden_layers = 32)", "memory_layers lists block 4
// twice", and so on.
StatusOr<MemoryConfig> ParseMemoryConfig(const JsonConfig& json);

// The value table, shared (std::shared_ptr<const>) by every memory layer that reads it.
class SharedValues {
 public:
  // Loads `name` ([n_keys^2, v_dim]) as config.value_dtype. Errors from ModelDir (NOT_FOUND,
  // INVALID_ARGUMENT with both shapes).
  static StatusOr<std::shared_ptr<const SharedValues>> Load(
      const ModelDir& dir, const MemoryConfig& config,
      const std::string& name = "model.memory_values.weight");
  // Wraps memory the caller keeps alive (tests, benchmarks). data: [rows, v_dim] of dtype.
  static std::shared_ptr<const SharedValues> View(const void* data, DType dtype, int64_t rows,
                                                  int64_t v_dim);

  const void* data() const { return data_; }
  DType dtype() const { return dtype_; }
  int64_t rows() const { return rows_; }
  int64_t v_dim() const { return v_dim_; }
  int64_t bytes() const { return rows_ * v_dim_ * DTypeSize(dtype_); }

 private:
  const void* data_ = nullptr;
  DType dtype_ = DType::kF32;
  int64_t rows_ = 0, v_dim_ = 0;
  Weight f32_;                           // the loaded tensor (a view of the mapping or a copy)
  std::shared_ptr<const void> owned_;    // the bf16 copy, when value_dtype is kBF16
};

class MemoryLayer {
 public:
  // Buffers reused across Forward calls (grow to the largest token count seen, then stay). One
  // per concurrent caller (e.g. per session); Forward allocates nothing once they have grown.
  struct Scratch {
    std::vector<float> query;   // [tokens, heads * k_dim]
    std::vector<float> lookup;  // [tokens, v_dim]
    std::vector<float> swilu;   // [tokens, v_dim]
    std::vector<float> gate;    // [tokens]
    ProductKeyScratch pk;
  };

  // Loads block `block`'s memory tensors (names above). `values` is the shared table when
  // config.share_values (required then), and must be null otherwise: the layer then loads
  // model.layers.{block}.memory.values.weight itself. INVALID_ARGUMENT if `block` is not a memory
  // layer of `config` or the table's shape does not match; ModelDir errors name the tensor.
  static StatusOr<std::unique_ptr<MemoryLayer>> Load(const ModelDir& dir, int block,
                                                     const MemoryConfig& config,
                                                     std::shared_ptr<const SharedValues> values);

  // out[t, :] = the layer's output for x[t, :] (tokens x d each, row-major, row stride d); the
  // caller adds the residual. x and out must not overlap. Thread-safe for distinct scratches.
  void Forward(const ThreadPool& pool, const float* x, int64_t tokens, float* out,
               Scratch* scratch) const;

  const MemoryConfig& config() const { return config_; }
  int block() const { return block_; }
  // Multiply-adds per token (projections, key scores, value reads), for benchmarks.
  int64_t MacsPerToken() const;
  // Bytes of weights read per decoded token: every projection and key, plus heads * knn value rows.
  int64_t BytesPerDecodedToken() const;

 private:
  MemoryLayer() = default;

  MemoryConfig config_;
  int block_ = 0;
  Weight query_proj_, query_bias_;   // [heads * k_dim, d], [heads * k_dim]
  Weight keys_;                      // [heads, 2, n_keys, k_dim / 2], f32
  Weight value_proj_, value_bias_;   // [d, v_dim], [d]
  Weight swilu_proj_, swilu_bias_;   // [v_dim, d], [v_dim]
  Weight gate_, gate_bias_;          // [1, d] f32, [1]
  std::shared_ptr<const SharedValues> values_;
};

}  // namespace memoria
