// A model directory in the Hugging Face layout: config.json + one or more *.safetensors files
// (model.safetensors, or shards listed by model.safetensors.index.json).
//
// Tensors are looked up by name across all files and handed out as f32 (or bf16 when asked and
// stored so). f32 tensors are zero-copy views of the mapping; f16/bf16 are converted once into
// owned buffers. Errors name the tensor and both shapes:
//   NOT_FOUND        "tensor 'lm_head.weight' is missing from <dir>"
//   INVALID_ARGUMENT "tensor 'model.norm.weight' has shape [32], expected [64]"
#pragma once

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
  std::shared_ptr<const void> owner;  // keeps converted data alive; null for mapped views
  const float* f32() const { return static_cast<const float*>(data); }
};

class ModelDir {
 public:
  // Opens <dir>/config.json and the safetensors files. Errors as in safetensors.h, plus
  // NOT_FOUND for a missing config.json / no safetensors file.
  static StatusOr<std::unique_ptr<ModelDir>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const JsonConfig& config() const { return *config_; }
  bool Has(const std::string& name) const;

  // The tensor as f32 with exactly `expected_shape`.
  StatusOr<Weight> GetF32(const std::string& name, const std::vector<int64_t>& expected_shape) const;
  // The tensor for use as a matmul weight: bf16 kept as bf16 when WantBf16Weights(), else f32.
  StatusOr<Weight> GetMatmulWeight(const std::string& name,
                                   const std::vector<int64_t>& expected_shape) const;

  // Sum of bytes of all tensors (as stored), and a 64-bit fingerprint of config.json and all
  // tensor bytes (for storage metadata: which model produced a memory).
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
