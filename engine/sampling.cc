#include "engine/sampling.h"

#include <algorithm>
#include <cmath>
#include <string>

#include <fmt/format.h>

namespace memoria {

Status SamplingParams::Validate() const {
  if (!std::isfinite(temperature) || temperature < 0) {
    return InvalidArgumentError(fmt::format("temperature must be a finite number >= 0, got {}", temperature));
  }
  if (top_k < 0) return InvalidArgumentError("top_k must be >= 0, got " + std::to_string(top_k));
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    return InvalidArgumentError(fmt::format("top_p must be in (0, 1], got {}", top_p));
  }
  return Status::Ok();
}

int Argmax(const float* values, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (values[i] > values[best]) best = i;
  }
  return static_cast<int>(best);
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

int Sampler::Sample(const float* logits, int64_t vocab) {
  if (params_.temperature == 0.0f) return Argmax(logits, vocab);

  candidates_.resize(vocab);
  for (int64_t i = 0; i < vocab; ++i) candidates_[i] = {logits[i] / params_.temperature, static_cast<int>(i)};
  auto by_logit = [](const std::pair<float, int>& a, const std::pair<float, int>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  int64_t keep = vocab;
  if (params_.top_k > 0 && params_.top_k < vocab) {
    keep = params_.top_k;
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  // Softmax over the kept candidates (sorted, so candidates_[0] holds the max).
  const float max_logit = candidates_[0].first;
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) {
    candidates_[i].first = std::exp(candidates_[i].first - max_logit);
    total += candidates_[i].first;
  }
  if (params_.top_p < 1.0f) {
    // Smallest prefix whose probability mass reaches top_p (always at least one token).
    double mass = 0;
    int64_t cut = 0;
    while (cut < keep) {
      mass += candidates_[cut].first / total;
      ++cut;
      if (mass >= params_.top_p) break;
    }
    keep = cut;
    total = 0;
    for (int64_t i = 0; i < keep; ++i) total += candidates_[i].first;
  }
  std::uniform_real_distribution<double> uniform(0.0, total);
  double r = uniform(rng_);
  for (int64_t i = 0; i < keep; ++i) {
    r -= candidates_[i].first;
    if (r <= 0) return candidates_[i].second;
  }
  return candidates_[keep - 1].second;
}

}  // namespace memoria
