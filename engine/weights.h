// A model directory in the Hugging Face layout: config.json + one or more *.safetensors files
// (model.safetensors, or shards listed by model.safetensors.index.json).
//
// Tensors are looked up by name across all files and handed out as f32 (or bf16 when asked and
// stored so). f32 tensors are zero-copy views of the mapping; f16/bf16 are converted once into
// owned buffers. Errors name the tensor and both shapes:
//   NOT_FOUND        "tensor 'lm_head.weight' is missing from <dir>"
//   INVALID_ARGUMENT "tensor 'model.norm.weight' has shape [32], expected [64]"
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/json_config.h"
#include "engine/safetensors.h"

namespace memoria {

// An immutable weight tensor: a view into the mapping or an owned converted copy.
struct Weight {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  // Keeps converted data alive; null for mapped views, which stay valid while the ModelDir lives.
  std::shared_ptr<const void> owner;
  const float* f32() const { return static_cast<const float*>(data); }
};

// XXH64 (Yann Collet's xxHash, 64-bit) of `len` bytes; the per-tensor hash in Fingerprint().
uint64_t Xxh64(const void* data, size_t len, uint64_t seed);

// Thread-safety: immutable after Open; all const methods may be called concurrently.
class ModelDir {
 public:
  // Opens <dir>/config.json and the safetensors files. Errors as in safetensors.h, plus
  // NOT_FOUND for a missing directory, config.json or safetensors file; DATA_LOSS when the
  // shard index names a file that lacks the tensor or a tensor appears in two shards.
  static StatusOr<std::unique_ptr<ModelDir>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const JsonConfig& config() const { return *config_; }
  bool Has(const std::string& name) const;

  // The tensor as f32 with exactly `expected_shape` (a zero-copy view when stored as aligned f32).
  StatusOr<Weight> GetF32(const std::string& name, const std::vector<int64_t>& expected_shape) const;
  // The tensor for use as a matmul weight: bf16 kept as bf16 when WantBf16Weights(), else f32.
  StatusOr<Weight> GetMatmulWeight(const std::string& name,
                                   const std::vector<int64_t>& expected_shape) const;

  // Sum of bytes of all tensors (as stored), and a 64-bit fingerprint of config.json and all
  // tensor bytes (for storage metadata: which model produced a memory).
  //
  // Fingerprint = FNV-1a-64 over the byte stream
  //   config().text() NUL, then for each tensor in name order (over all shards):
  //   name NUL, dtype name ("f32") NUL, ShapeToString(shape) NUL, XXH64(data, seed 0) as 8 bytes LE.
  // It depends on the settings in config.json (not on its key order or whitespace), the tensor
  // names, dtypes, shapes and bytes, and not on how tensors are sharded. It reads every tensor
  // byte (about memory bandwidth: ~0.1 s per GB), so compute it once per load.
  int64_t total_bytes() const;
  uint64_t Fingerprint() const;

 private:
  ModelDir() = default;
  const TensorView* Find(const std::string& name) const;
  std::string dir_;
  std::unique_ptr<JsonConfig> config_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
};

}  // namespace memoria
