#include "server/completion_runner.h"

#include <algorithm>
#include <latch>

namespace memoria {

CompletionRunner::CompletionRunner(std::shared_ptr<const LlamaModel> model,
                                   const Tokenizer* tokenizer, int workers, int queue_capacity,
                                   int threads_per_worker, Metrics* metrics)
    : model_(std::move(model)),
      tokenizer_(tokenizer),
      threads_per_worker_(threads_per_worker),
      metrics_(metrics) {
  workers_.resize(workers);
  for (Worker& w : workers_) {
    w.threads = std::make_unique<ThreadPool>(threads_per_worker);
    w.session = std::make_unique<LlamaSession>(model_, w.threads.get());
  }
  pool_ = std::make_unique<WorkerPool>(
      workers, queue_capacity, [this](int worker) { workers_[worker].threads->BindOpenMp(); },
      [metrics](int64_t waiting, int64_t running) {
        if (metrics == nullptr) return;
        metrics->SetQueueSize(waiting);
        metrics->SetWorkersBusy(running);
      });
}

Status CompletionRunner::WarmUp() {
  // One job per worker, held at a latch until all have started, so that every worker thread (its
  // OpenMP team, KV cache pages, oneDNN primitives for a prefill and a decode shape) is warmed.
  const int n = static_cast<int>(workers_.size());
  std::latch all_started(n);
  std::vector<Status> results(n);
  std::vector<std::shared_ptr<WorkerPool::Ticket>> tickets;
  const int bos = model_->config().bos_token_id;
  const std::vector<int> prompt(std::min<int64_t>(8, model_->max_sequence_length() - 2),
                                bos >= 0 ? bos : 0);
  for (int i = 0; i < n; ++i) {
    auto ticket = pool_->Submit([&, i](int worker) {
      all_started.arrive_and_wait();
      LlamaSession& session = *workers_[worker].session;
      session.Reset();
      CompletionOptions options;
      options.max_new_tokens = 2;
      options.stop_at_eos = false;
      auto result = Generate(session, tokenizer_, prompt, options);
      session.Reset();
      results[i] = result.status();
    });
    if (!ticket.ok()) return ticket.status().WithContext("warm-up");
    tickets.push_back(*ticket);
  }
  for (auto& ticket : tickets) RETURN_IF_ERROR(ticket->Wait(nullptr));
  for (const Status& status : results) RETURN_IF_ERROR(status.WithContext("warm-up generation"));
  return Status::Ok();
}

StatusOr<CompletionRunner::Outcome> CompletionRunner::Run(const std::vector<int>& prompt_ids,
                                                          const CompletionOptions& options,
                                                          const std::function<Status()>& check,
                                                          const TokenCallback& on_token) {
  Outcome outcome;
  Status status;
  auto job = [&](int worker) {
    // The deadline may have passed or the client left while the request waited.
    status = check();
    if (!status.ok()) return;
    LlamaSession& session = *workers_[worker].session;
    session.Reset();
    Status stop;
    auto result =
        Generate(session, tokenizer_, prompt_ids, options, [&](int id, const std::string& piece) {
          stop = check();
          if (!stop.ok()) return false;
          if (on_token && !on_token(id, piece)) {
            stop = CancelledError("the client closed the stream");
            return false;
          }
          return true;
        });
    session.Reset();
    if (!result.ok()) {
      status = result.status();
      return;
    }
    if (metrics_ != nullptr) {
      metrics_->RecordGeneration(result->prompt_tokens,
                                 static_cast<int64_t>(result->output_ids.size()),
                                 result->prefill_seconds, result->decode_seconds);
      metrics_->ObserveAttention(result->attention_seconds);
    }
    if (result->stop_reason == StopReason::kCancelled) {
      status = stop.ok() ? CancelledError("generation cancelled") : stop;
      return;
    }
    outcome.result = std::move(result).value();
  };
  ASSIGN_OR_RETURN(auto ticket, pool_->Submit(job));
  RETURN_IF_ERROR(ticket->Wait(check));
  outcome.queue_seconds = ticket->queue_seconds();
  if (metrics_ != nullptr) metrics_->ObserveQueueWait(outcome.queue_seconds);
  RETURN_IF_ERROR(status);
  return outcome;
}

}  // namespace memoria
