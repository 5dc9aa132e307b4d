// The T5/LUMEN side of Generate/GenerateStream: validate the request, tokenize the question,
// pick the passages (the client's ids, or the BM25 retriever's top k), run LumenRunner::Answer
// and fill the reply.
//
// Errors (each message states the numbers or names the ids):
//   UNIMPLEMENTED       a `prompt` on a T5 server (prompts are the LLaMA path)
//   INVALID_ARGUMENT    empty question; neither or both of passage_ids / retrieve_top_k > 0;
//                       an empty or duplicated passage id; more passages than t5.max_passages;
//                       a question part longer than t5.max_question_tokens; max_new_tokens out of
//                       [0, limit]; sampling fields (temperature, top_k, top_p, stop) set, since
//                       the T5 path decodes greedy or by beam search only; num_beams outside
//                       [0, 16]; ignore_eos with beams; a codec the store does not hold (the
//                       message lists those it holds)
//   FAILED_PRECONDITION the server has no store (the reason says why)
//   NOT_FOUND           unknown passage ids (all named); the retriever found no passage holding a
//                       word of the question
//   DATA_LOSS           a stored passage that fails verification; RESOURCE_EXHAUSTED,
//                       DEADLINE_EXCEEDED, CANCELLED as in LumenRunner.
#pragma once

#include <functional>

#include "base/status.h"
#include "engine/llama_generator.h"
#include "engine/t5_model.h"
#include "memoria.pb.h"
#include "server/lumen_loader.h"
#include "server/request_validation.h"

namespace memoria {

// ValidateLumenRequest (server/request_validation.h) checks the request first.
// Answers one request. Fills text, token_ids (EOS excluded), stop_reason (EOS or MAX_TOKENS),
// prompt/question/passage/completion token counts, passage_ids (+ retrieval_scores when
// retrieved), the codec read and every timing except total_seconds.
// on_token (may be null: unary) receives each answer token (EOS excluded) with the text it adds:
// greedy answers as they are generated (on the worker thread), beam answers once the search is
// done (on the calling thread); returning false stops with CANCELLED (the stream is gone).
Status AnswerLumenRequest(LumenServing& serving, const RequestLimits& limits,
                          const v1::GenerateRequest& request, const std::function<Status()>& check,
                          const TokenCallback& on_token, v1::GenerateReply* reply);

}  // namespace memoria
