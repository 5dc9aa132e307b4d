// Greedy and beam-search decoding over any model that advances one token per beam per step.
//
// Beam search follows Hugging Face transformers' BeamSearchScorer (the classic v4 algorithm, one
// input, early_stopping = false), so that results can be compared with HF generate():
//   - beams start from [start_token]; only beam 0 is live at the first step (the others start at
//     score -1e9, so the first expansion comes from one beam);
//   - per step: scores = log_softmax(logits) + beam score, top 2 * num_beams over beams x vocab;
//     walking candidates best first, an EOS candidate among the first num_beams ranks closes a
//     hypothesis (the beam's tokens without the EOS) with score sum_logprobs / len^length_penalty,
//     where len counts the start token and excludes the EOS; other candidates fill the next beams;
//   - the search is done once num_beams hypotheses exist and the best candidate score / cur_len^lp
//     cannot beat the worst kept one (cur_len = tokens per beam before the step, start included);
//   - at max_new_tokens, every running beam is added as a hypothesis with its score.
// length_penalty > 0 favours longer sequences, < 0 shorter ones (HF semantics).
//
// With a TokenConstraint (engine/span_constraint.h) each beam chooses among the ids the constraint
// allows after its tokens, scored with the model's log-probabilities over the whole vocabulary
// (not renormalised over the allowed ids). When fewer than num_beams non-EOS candidates remain, the
// missing beams are dead (score -inf, never expanded, never a hypothesis); when none remains the
// search ends with the hypotheses it has. Without a constraint nothing changes.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "base/status.h"
#include "engine/span_constraint.h"

namespace memoria {

// What the searches need from a model: feed one token per beam, get each beam's next-token logits.
class StepModel {
 public:
  virtual ~StepModel() = default;
  virtual int64_t vocab_size() const = 0;
  // tokens: [num_beams] (one new token per beam); logits: [num_beams, vocab_size] out.
  virtual Status Step(const std::vector<int>& tokens, float* logits) = 0;
  // Beam i continues from the state of beam parents[i].
  virtual void Reorder(const std::vector<int>& parents) = 0;
};

struct GenerationResult {
  // Generated ids without the start token; ends with the EOS id when generation stopped there.
  std::vector<int> tokens;
  // Greedy: sum of log-probabilities of `tokens`. Beam: the hypothesis score (length-penalised).
  double score = 0.0;
};

struct BeamSearchOptions {
  int num_beams = 4;            // >= 1; 1 is greedy with HF's beam bookkeeping
  float length_penalty = 1.0f;  // exponent on the hypothesis length (HF default 1.0)
  int max_new_tokens = 20;      // >= 1
  int start_token_id = 0;       // decoder_start_token_id
  int eos_token_id = 1;         // < 0: never stop early
};

// Called by a search after each of its steps (one model->Step), with the step index (0-based)
// and the tokens that step chose:
//   greedy  the one new token, in order: the calls' tokens are exactly GenerationResult::tokens
//           (EOS included when generation stops there), so a caller can stream them;
//   beam    each running beam's new token after the step (num_beams ids). Not final: beams
//           reorder and hypotheses close, so a beam result is known only when the search ends.
// A non-OK status stops the search at once (no further Step) and is the search's status: the
// hook for deadlines and cancellation. Null hook: nothing is called.
using SearchStepHook = std::function<Status(int step, const std::vector<int>& new_tokens)>;

// Runs beam search; the model must hold options.num_beams beams. INVALID_ARGUMENT for bad
// options, for a constraint whose eos_id() is not options.eos_token_id, and when the constraint
// allows nothing at the first step; errors from model->Step and from on_step are returned as they
// are. constraint (optional, not owned): see the header comment.
StatusOr<GenerationResult> BeamSearch(const BeamSearchOptions& options, StepModel* model,
                                      const SearchStepHook* on_step = nullptr,
                                      const TokenConstraint* constraint = nullptr);

// Greedy decoding of one sequence (argmax, lowest id on ties), stopping after the EOS id when
// eos_token_id >= 0 or after max_new_tokens. With a constraint the argmax is over the allowed ids
// (INVALID_ARGUMENT as for BeamSearch when its EOS differs or nothing is allowed at a step).
// Errors of model->Step and on_step as they are.
StatusOr<GenerationResult> GreedySearch(int start_token_id, int eos_token_id, int max_new_tokens,
                                        StepModel* model, const SearchStepHook* on_step = nullptr,
                                        const TokenConstraint* constraint = nullptr);

}  // namespace memoria
