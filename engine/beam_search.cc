#include "engine/beam_search.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace memoria {
namespace {

// log(sum(exp(x))) of one row, stable.
double LogSumExp(const float* x, int64_t n) {
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(x[i] - mx));
  return static_cast<double>(mx) + std::log(s);
}

// HF BeamHypotheses: the num_beams best finished sequences by length-penalised score.
class Hypotheses {
 public:
  Hypotheses(int num_beams, double length_penalty)
      : num_beams_(num_beams), length_penalty_(length_penalty) {}

  int size() const { return static_cast<int>(hyps_.size()); }

  // tokens include the start token (their count is the length); with_eos: append EOS on output.
  void Add(const std::vector<int>& tokens, double sum_logprobs, bool with_eos) {
    const double score =
        sum_logprobs / std::pow(static_cast<double>(tokens.size()), length_penalty_);
    if (size() < num_beams_ || score > worst_) {
      hyps_.push_back({score, tokens, with_eos});
      if (size() > num_beams_) {
        auto worst = std::min_element(hyps_.begin(), hyps_.end(),
                                      [](const Hyp& a, const Hyp& b) { return a.score < b.score; });
        hyps_.erase(worst);
        worst_ = std::min_element(hyps_.begin(), hyps_.end(), [](const Hyp& a, const Hyp& b) {
                   return a.score < b.score;
                 })->score;
      } else {
        worst_ = std::min(score, worst_);
      }
    }
  }

  bool IsDone(double best_sum_logprobs, int64_t cur_len) const {
    if (size() < num_beams_) return false;
    return worst_ >= best_sum_logprobs / std::pow(static_cast<double>(cur_len), length_penalty_);
  }

  GenerationResult Best(int eos_token_id) const {
    // Highest score; among equal scores the one added last, as HF's sorted(...).pop() does.
    const Hyp* best = &hyps_[0];
    for (const Hyp& h : hyps_) {
      if (h.score >= best->score) best = &h;
    }
    GenerationResult r;
    r.tokens.assign(best->tokens.begin() + 1, best->tokens.end());
    if (best->with_eos) r.tokens.push_back(eos_token_id);
    r.score = best->score;
    return r;
  }

 private:
  struct Hyp {
    double score;
    std::vector<int> tokens;
    bool with_eos;
  };
  int num_beams_;
  double length_penalty_;
  double worst_ = 1e9;
  std::vector<Hyp> hyps_;
};

constexpr double kDead = -std::numeric_limits<double>::infinity();

Status CheckConstraintEos(const TokenConstraint* constraint, int eos_token_id) {
  if (constraint == nullptr || constraint->eos_id() == eos_token_id) return Status::Ok();
  return InvalidArgumentError(fmt::format(
      "constrained search: the constraint ends sequences with id {}, the search with {}",
      constraint->eos_id(), eos_token_id));
}

Status NothingAllowed(int64_t generated) {
  return InvalidArgumentError(fmt::format(
      "constrained search: no token is allowed after {} generated (no passage span to copy?)",
      generated));
}

}  // namespace

StatusOr<GenerationResult> BeamSearch(const BeamSearchOptions& o, StepModel* model,
                                      const SearchStepHook* on_step,
                                      const TokenConstraint* constraint) {
  if (o.num_beams < 1 || o.max_new_tokens < 1) {
    return InvalidArgumentError(
        fmt::format("beam search: num_beams {} and max_new_tokens {} must be >= 1", o.num_beams,
                    o.max_new_tokens));
  }
  const int B = o.num_beams;
  const int64_t V = model->vocab_size();
  const int K = 2 * B;
  if (V < K) {
    return InvalidArgumentError(
        fmt::format("beam search: vocabulary {} smaller than 2 * num_beams = {}", V, K));
  }
  RETURN_IF_ERROR(CheckConstraintEos(constraint, o.eos_token_id));
  std::vector<int> allowed;
  std::vector<float> logits(static_cast<size_t>(B * V));
  std::vector<double> beam_scores(B, -1e9);
  beam_scores[0] = 0.0;
  std::vector<std::vector<int>> seqs(B, std::vector<int>{o.start_token_id});
  std::vector<std::vector<int>> next_seqs(B);
  // Token lists are copied between beams every step; reserved so that this never allocates.
  for (auto& s : seqs) s.reserve(o.max_new_tokens + 1);
  for (auto& s : next_seqs) s.reserve(o.max_new_tokens + 1);
  std::vector<int> step_tokens(B, o.start_token_id);
  std::vector<int> parents(B);
  std::vector<double> next_scores(B);
  std::vector<int> next_tokens(B);
  // Candidates (score, flat index) kept as a min-heap of the K best.
  std::vector<std::pair<double, int64_t>> heap;
  heap.reserve(K + 1);
  auto cmp = [](const std::pair<double, int64_t>& a, const std::pair<double, int64_t>& b) {
    // min-heap on score; on equal scores the larger index is "smaller" so the lowest index wins.
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  Hypotheses hyps(B, o.length_penalty);
  bool done = false;
  int64_t cur_len = 1;
  const int64_t max_length = 1 + o.max_new_tokens;

  while (cur_len < max_length) {
    RETURN_IF_ERROR(model->Step(step_tokens, logits.data()));
    heap.clear();
    auto consider = [&](double s, int64_t flat) {
      if (static_cast<int>(heap.size()) < K) {
        heap.emplace_back(s, flat);
        std::push_heap(heap.begin(), heap.end(), cmp);
      } else if (s > heap.front().first) {
        std::pop_heap(heap.begin(), heap.end(), cmp);
        heap.back() = {s, flat};
        std::push_heap(heap.begin(), heap.end(), cmp);
      }
    };
    for (int b = 0; b < B; ++b) {
      if (beam_scores[b] == kDead) continue;
      const float* row = logits.data() + b * V;
      const double base = beam_scores[b] - LogSumExp(row, V);
      if (constraint == nullptr) {
        for (int64_t t = 0; t < V; ++t) consider(base + row[t], b * V + t);
        continue;
      }
      constraint->Allowed(seqs[b].data() + 1, cur_len - 1, &allowed);
      for (int t : allowed) {
        if (t >= 0 && t < V) consider(base + row[t], b * V + t);
      }
    }
    if (heap.empty()) {
      if (cur_len == 1) return NothingAllowed(0);
      break;  // nothing allowed after any live beam (a span constraint never does this: every
              // prefix it allows either continues or ends)
    }
    std::sort_heap(heap.begin(), heap.end(), cmp);  // best first
    int filled = 0;
    for (int rank = 0; rank < static_cast<int>(heap.size()) && filled < B; ++rank) {
      const int beam = static_cast<int>(heap[rank].second / V);
      const int token = static_cast<int>(heap[rank].second % V);
      if (o.eos_token_id >= 0 && token == o.eos_token_id) {
        if (rank >= B) continue;
        hyps.Add(seqs[beam], heap[rank].first, /*with_eos=*/true);
      } else {
        next_scores[filled] = heap[rank].first;
        next_tokens[filled] = token;
        parents[filled] = beam;
        ++filled;
      }
    }
    MEMORIA_CHECK(filled == B || constraint != nullptr,
                  "beam search: fewer than num_beams non-EOS candidates");
    if (filled == 0) {
      done = true;  // only EOS candidates: the constraint left nothing to extend
      break;
    }
    for (int b = filled; b < B; ++b) {  // too few candidates (constrained): dead beams
      next_scores[b] = kDead;
      next_tokens[b] = next_tokens[0];
      parents[b] = parents[0];
    }
    done = done || hyps.IsDone(heap[0].first, cur_len);
    for (int b = 0; b < B; ++b) {
      next_seqs[b] = seqs[parents[b]];
      next_seqs[b].push_back(next_tokens[b]);
      beam_scores[b] = next_scores[b];
      step_tokens[b] = next_tokens[b];
    }
    std::swap(seqs, next_seqs);
    if (on_step != nullptr) {
      RETURN_IF_ERROR((*on_step)(static_cast<int>(cur_len - 1), step_tokens));
    }
    ++cur_len;
    if (done) break;
    // The state is only needed for another step.
    if (cur_len < max_length) model->Reorder(parents);
  }
  if (!done) {
    for (int b = 0; b < B; ++b) {
      if (beam_scores[b] != kDead) hyps.Add(seqs[b], beam_scores[b], /*with_eos=*/false);
    }
  }
  return hyps.Best(o.eos_token_id);
}

StatusOr<GenerationResult> GreedySearch(int start_token_id, int eos_token_id, int max_new_tokens,
                                        StepModel* model, const SearchStepHook* on_step,
                                        const TokenConstraint* constraint) {
  if (max_new_tokens < 1) {
    return InvalidArgumentError(
        fmt::format("greedy: max_new_tokens {} must be >= 1", max_new_tokens));
  }
  RETURN_IF_ERROR(CheckConstraintEos(constraint, eos_token_id));
  const int64_t V = model->vocab_size();
  std::vector<float> logits(static_cast<size_t>(V));
  std::vector<int> token{start_token_id};
  std::vector<int> allowed;
  GenerationResult r;
  r.tokens.reserve(max_new_tokens);
  for (int step = 0; step < max_new_tokens; ++step) {
    RETURN_IF_ERROR(model->Step(token, logits.data()));
    int64_t best = -1;
    if (constraint == nullptr) {
      best = std::max_element(logits.begin(), logits.end()) - logits.begin();
    } else {
      constraint->Allowed(r.tokens.data(), static_cast<int64_t>(r.tokens.size()), &allowed);
      for (int t : allowed) {  // ascending, so the lowest id wins ties
        if (t >= 0 && t < V && (best < 0 || logits[t] > logits[best])) best = t;
      }
      if (best < 0) return NothingAllowed(static_cast<int64_t>(r.tokens.size()));
    }
    r.score += logits[best] - LogSumExp(logits.data(), V);
    token[0] = static_cast<int>(best);
    r.tokens.push_back(token[0]);
    if (on_step != nullptr) RETURN_IF_ERROR((*on_step)(step, token));
    if (eos_token_id >= 0 && token[0] == eos_token_id) break;
  }
  return r;
}

}  // namespace memoria
