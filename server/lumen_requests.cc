#include "server/lumen_requests.h"

#include <chrono>

namespace memoria {

Status AnswerLumenRequest(LumenServing& serving, const RequestLimits& limits,
                          const v1::GenerateRequest& request, const std::function<Status()>& check,
                          const TokenCallback& on_token, v1::GenerateReply* reply) {
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
  ASSIGN_OR_RETURN(const int codec_index, serving.store->FindCodecByFlag(request.codec()));

  std::vector<std::string> ids(request.passage_ids().begin(), request.passage_ids().end());
  if (ids.empty()) {
    const auto t0 = std::chrono::steady_clock::now();
    ASSIGN_OR_RETURN(const std::vector<Bm25Hit> hits,
                     serving.store->Search(request.question(), request.retrieve_top_k()));
    reply->mutable_timings()->set_retrieve_seconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (hits.empty()) {
      return NotFoundError(
          "the retriever found no stored passage holding a word of the question (" +
          std::to_string(serving.store->passage_count()) + " passages indexed)");
    }
    for (const auto& hit : hits) {
      ids.push_back(hit.id);
      reply->add_retrieval_scores(hit.score);
    }
  }

  const int eos = serving.lumen->model().config().eos_token_id;
  // The streamed pieces: incremental decoding so that they concatenate to the reply's text.
  std::vector<int> sent;
  auto send = [&](int id) -> Status {
    if (options.stop_at_eos && id == eos) return Status::Ok();  // ends the answer, not part of it
    ASSIGN_OR_RETURN(std::string piece, serving.tokenizer->DecodeIncrement(sent, id));
    sent.push_back(id);
    if (!on_token(id, piece)) return CancelledError("the client closed the stream");
    return Status::Ok();
  };
  const bool stream_live = on_token && options.num_beams == 1;
  ASSIGN_OR_RETURN(LumenRunner::AnswerOutcome outcome,
                   serving.runner->Answer(question_ids, ids, options, check,
                                          stream_live ? std::function<Status(int)>(send)
                                                      : std::function<Status(int)>(),
                                          codec_index));
  reply->set_codec(serving.store->codec(codec_index).spec().ToFlag());
  std::vector<int> tokens = outcome.result.tokens;
  const bool at_eos = options.stop_at_eos && !tokens.empty() && tokens.back() == eos;
  if (at_eos) tokens.pop_back();
  if (on_token && !stream_live) {
    // Beam search: the tokens are final only now.
    for (int id : tokens) RETURN_IF_ERROR(send(id));
  }
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
