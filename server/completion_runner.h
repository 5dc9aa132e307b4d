// Runs LLaMA completions on a fixed set of workers, each with its own LlamaSession (KV cache) and
// ThreadPool share, behind the bounded admission of WorkerPool.
//
// Cancellation: `check` is called while the request waits for a worker (every 2 ms) and after
// every generated token; a non-OK status (DEADLINE_EXCEEDED, CANCELLED) withdraws the queued
// request or stops generation at that token, frees the worker and is returned. The prompt's
// prefill is one engine call (LlamaSession::Forward chunks it internally), so a deadline that
// passes during prefill is noticed right after it (the server bounds prompts by
// max_prompt_tokens).
//
// Thread-safety: Run may be called concurrently from any number of threads.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "base/status.h"
#include "engine/llama_generator.h"
#include "engine/llama_model.h"
#include "engine/tokenizer.h"
#include "server/metrics.h"
#include "server/worker_pool.h"

namespace memoria {

class CompletionRunner {
 public:
  // threads_per_worker >= 1. Sessions are allocated here (KV cache of the model's maximum
  // sequence length each).
  CompletionRunner(std::shared_ptr<const LlamaModel> model, const Tokenizer* tokenizer, int workers,
                   int queue_capacity, int threads_per_worker, Metrics* metrics);

  // Generates a few tokens from BOS on every worker (first-touch of the KV caches, OpenMP teams,
  // oneDNN primitives), so that the first real request is not the slow one. Errors are the
  // engine's.
  Status WarmUp();

  // `check` returns OK to go on, or the status to stop with. `on_token` (may be null) sees each
  // token; returning false stops with CANCELLED (the client stream is gone).
  // RESOURCE_EXHAUSTED at once when the admission queue is full.
  struct Outcome {
    CompletionResult result;
    double queue_seconds = 0;
  };
  StatusOr<Outcome> Run(const std::vector<int>& prompt_ids, const CompletionOptions& options,
                        const std::function<Status()>& check, const TokenCallback& on_token);

  int workers() const { return pool_->workers(); }
  int queue_capacity() const { return pool_->queue_capacity(); }
  int threads_per_worker() const { return threads_per_worker_; }

 private:
  struct Worker {
    std::unique_ptr<ThreadPool> threads;
    std::unique_ptr<LlamaSession> session;
  };

  std::shared_ptr<const LlamaModel> model_;
  const Tokenizer* tokenizer_;
  int threads_per_worker_;
  Metrics* metrics_;
  std::vector<Worker> workers_;
  std::unique_ptr<WorkerPool> pool_;  // last: its threads stop before the workers' state goes
};

}  // namespace memoria
