#include "server/lumen_requests.h"

#include <chrono>
#include <set>

namespace memoria {

StatusOr<T5GenerationOptions> ValidateLumenRequest(const v1::GenerateRequest& request,
                                                   const v1::T5Settings& settings,
                                                   const RequestLimits& limits) {
  if (!request.prompt().empty()) {
    return UnimplementedError(
        "this server serves a T5 model (LUMEN): send `question` with passage_ids or "
        "retrieve_top_k; `prompt` completion needs a server of a LLaMA model");
  }
  if (request.question().empty()) return InvalidArgumentError("question is empty");
  const int given = request.passage_ids_size();
  const int top_k = request.retrieve_top_k();
  if (top_k < 0)
    return InvalidArgumentError("retrieve_top_k must be >= 0, got " + std::to_string(top_k));
  if (given == 0 && top_k == 0)
    return InvalidArgumentError("give passage_ids or retrieve_top_k > 0 (neither was given)");
  if (given > 0 && top_k > 0) {
    return InvalidArgumentError("give passage_ids or retrieve_top_k, not both (got " +
                                std::to_string(given) + " ids and retrieve_top_k " +
                                std::to_string(top_k) + ")");
  }
  const int n = given > 0 ? given : top_k;
  if (n > settings.max_passages()) {
    return InvalidArgumentError(std::to_string(n) + " passages requested, more than the limit of " +
                                std::to_string(settings.max_passages()));
  }
  std::set<std::string> seen;
  for (int i = 0; i < given; ++i) {
    const std::string& id = request.passage_ids(i);
    if (id.empty()) return InvalidArgumentError("passage id " + std::to_string(i) + " is empty");
    if (!seen.insert(id).second)
      return InvalidArgumentError("passage id '" + id + "' is given twice");
  }

  const v1::DecodingParams& p = request.params();
  if (p.temperature() != 0 || p.top_k() != 0 || (p.top_p() != 0 && p.top_p() != 1) ||
      p.stop_size() > 0) {
    return InvalidArgumentError(
        "the T5 path decodes greedy or by beam search (num_beams): temperature, top_k, top_p and "
        "stop must be unset");
  }
  if (p.max_new_tokens() < 0 || p.max_new_tokens() > limits.max_new_tokens) {
    return InvalidArgumentError("max_new_tokens must be in [0, " +
                                std::to_string(limits.max_new_tokens) + "], got " +
                                std::to_string(p.max_new_tokens()));
  }
  if (p.num_beams() < 0 || p.num_beams() > kMaxBeams) {
    return InvalidArgumentError("num_beams must be in [0, " + std::to_string(kMaxBeams) +
                                "] (0 or 1 = greedy), got " + std::to_string(p.num_beams()));
  }
  if (p.length_penalty() < 0)
    return InvalidArgumentError("length_penalty must be >= 0, got " +
                                std::to_string(p.length_penalty()));
  T5GenerationOptions options;
  options.max_new_tokens = static_cast<int>(
      p.max_new_tokens() == 0 ? std::min(limits.default_new_tokens, limits.max_new_tokens)
                              : p.max_new_tokens());
  options.num_beams = std::max(1, p.num_beams());
  options.length_penalty = p.length_penalty() == 0 ? 1.0f : p.length_penalty();
  options.stop_at_eos = !p.ignore_eos();
  if (!options.stop_at_eos && options.num_beams > 1)
    return InvalidArgumentError("ignore_eos works with greedy decoding only (num_beams <= 1)");
  return options;
}

Status AnswerLumenRequest(LumenServing& serving, const RequestLimits& limits,
                          const v1::GenerateRequest& request, const std::function<Status()>& check,
                          v1::GenerateReply* reply) {
  ASSIGN_OR_RETURN(T5GenerationOptions options,
                   ValidateLumenRequest(request, serving.settings, limits));
  if (serving.store == nullptr) return FailedPreconditionError(serving.no_store_reason);
  const std::vector<int> question_ids =
      FidQuestionIds(*serving.tokenizer, serving.fid, request.question());
  if (static_cast<int64_t>(question_ids.size()) > serving.settings.max_question_tokens()) {
    return InvalidArgumentError("question part has " + std::to_string(question_ids.size()) +
                                " tokens, more than the limit of " +
                                std::to_string(serving.settings.max_question_tokens()));
  }
  if (question_ids.empty()) return InvalidArgumentError("question is empty after tokenization");

  std::vector<std::string> ids(request.passage_ids().begin(), request.passage_ids().end());
  if (ids.empty()) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto hits = serving.retriever->Search(request.question(), request.retrieve_top_k());
    reply->mutable_timings()->set_retrieve_seconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (hits.empty()) {
      return NotFoundError(
          "the retriever found no stored passage holding a word of the question (" +
          std::to_string(serving.retriever->size()) + " passages indexed)");
    }
    for (const auto& hit : hits) {
      ids.push_back(hit.id);
      reply->add_retrieval_scores(hit.score);
    }
  }

  ASSIGN_OR_RETURN(LumenRunner::AnswerOutcome outcome,
                   serving.runner->Answer(question_ids, ids, options, check));
  std::vector<int> tokens = outcome.result.tokens;
  const int eos = serving.lumen->model().config().eos_token_id;
  const bool at_eos = options.stop_at_eos && !tokens.empty() && tokens.back() == eos;
  if (at_eos) tokens.pop_back();
  ASSIGN_OR_RETURN(std::string text, serving.tokenizer->Decode(tokens));
  reply->set_text(text);
  for (int t : tokens) reply->add_token_ids(t);
  reply->set_stop_reason(at_eos ? v1::STOP_REASON_EOS : v1::STOP_REASON_MAX_TOKENS);
  reply->set_prompt_tokens(static_cast<int32_t>(outcome.encoder_tokens));
  reply->set_question_tokens(static_cast<int32_t>(question_ids.size()));
  reply->set_passage_tokens(static_cast<int32_t>(outcome.passage_tokens));
  reply->set_completion_tokens(static_cast<int32_t>(tokens.size()));
  for (const std::string& id : ids) reply->add_passage_ids(id);
  v1::Timings* t = reply->mutable_timings();
  t->set_queue_seconds(outcome.queue_seconds);
  t->set_store_read_seconds(outcome.store_read_seconds);
  t->set_decompress_seconds(outcome.decompress_seconds);
  t->set_live_encoder_seconds(outcome.live_encoder_seconds);
  t->set_decoder_seconds(outcome.decoder_seconds);
  return Status::Ok();
}

}  // namespace memoria
