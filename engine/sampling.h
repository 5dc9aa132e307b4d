// Choosing the next token from a row of logits: greedy, or sampling with temperature, top-k and
// top-p (nucleus), reproducible for a fixed seed.
//
// Order of operations (as Hugging Face's logits warpers): temperature scaling, then top-k, then
// top-p over the softmax of what remains, then a draw from the renormalised distribution.
// temperature == 0 means greedy (argmax; ties go to the lowest id).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "base/status.h"

namespace memoria {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy; otherwise > 0 (typical 0.7-1.0)
  int top_k = 0;             // 0 = no top-k cut; otherwise keep the k most likely tokens
  float top_p = 1.0f;        // 1 = no nucleus cut; otherwise in (0, 1]
  uint64_t seed = 0;         // same seed + same logits = same tokens

  // INVALID_ARGUMENT stating the bad value: temperature < 0 or not finite, top_k < 0,
  // top_p outside (0, 1].
  Status Validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks a token id from logits[0, vocab). Uses per-sampler scratch (no allocation after the
  // first call for a given vocab size).
  int Sample(const float* logits, int64_t vocab);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int>> candidates_;
};

// Index of the largest value (lowest index on ties).
int Argmax(const float* values, int64_t n);

}  // namespace memoria
