// Runs LUMEN work of a T5 server on a fixed set of workers (each with its own ThreadPool share
// and LumenScratch), behind the same bounded admission as the LLaMA path (WorkerPool):
//
//   Answer   passage ids -> PassageStore::GetCodes (one RocksDB MultiGet) -> codec Decode per
//            passage -> LumenModel::LiveEncode over [MemEnc(Q); memory_i] (all passages batched)
//            -> T5Generate (greedy or beam). The same computation as LumenModel::Answer on the
//            store's decoded memory (PassageStore::GetMemory), split only to time each stage.
//   Ingest   FiD passage ids -> LumenModel::MemoryEncode (one batched call) ->
//            PassageStore::Ingest (codec encode + one durable WriteBatch): when it returns OK the
//            batch survives a process kill (and a power loss with sync, the store's default).
//
// Cancellation: `check` is called while the request waits for a worker (WorkerPool), between the
// stages, before every encoder layer (MemEnc(Q), live encoder, memory encoder) and after every
// generated token (greedy) or beam step. Its first non-OK status (DEADLINE_EXCEEDED, CANCELLED)
// stops the work there, frees the worker and is returned; so a deadline is noticed within one
// encoder layer or one decoder step of passing.
//
// Units: token counts are SentencePiece ids; memory rows are d_model f32; times are wall seconds.
// Errors: RESOURCE_EXHAUSTED when admission is full; `check`'s status as above; NOT_FOUND naming
// every unknown passage id; DATA_LOSS naming a passage whose stored memory fails verification or
// decoding (counted in Metrics::CountDataLoss); on_token's status; engine and store errors as
// they are.
// Thread-safety: Answer and Ingest may be called concurrently from any number of threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/lumen.h"
#include "engine/t5_model.h"
#include "server/metrics.h"
#include "server/worker_pool.h"
#include "storage/passage_store.h"

namespace memoria {

class LumenRunner {
 public:
  // `store` may be null (Answer and Ingest then fail FAILED_PRECONDITION); it must outlive this.
  // piece_kinds: PieceKinds of the tokenizer, for extractive answers (options.extractive);
  // empty: those are refused FAILED_PRECONDITION.
  LumenRunner(std::shared_ptr<const LumenModel> lumen, PassageStore* store, int workers,
              int queue_capacity, int threads_per_worker, Metrics* metrics,
              std::vector<uint8_t> piece_kinds = {});

  // One small memory-encode + live-encode + 2-token generation on every worker (OpenMP teams,
  // oneDNN primitives, scratch pages), so the first real request is not the slow one.
  Status WarmUp();

  struct AnswerOutcome {
    GenerationResult result;     // generated ids (EOS excluded) and score
    int64_t passage_tokens = 0;  // stored memory tokens over all passages
    int64_t encoder_tokens = 0;  // sum over passages of question + passage tokens
    double queue_seconds = 0;
    double store_read_seconds = 0;
    double decompress_seconds = 0;
    double live_encoder_seconds = 0;
    double decoder_seconds = 0;
    double attention_seconds = 0;  // decoder self + cross attention kernels (in decoder_seconds)
  };
  // question_ids: the FiD question part (non-empty); passage_ids: non-empty, no duplicates.
  // on_token (optional) is called on the worker thread with each generated id as it is produced,
  // greedy decoding only (options.num_beams == 1; beams reorder until the search ends, so their
  // tokens are final only in the outcome): the ids it sees are exactly result.tokens, EOS
  // included when generation stopped there. A non-OK status from it stops generation and is
  // returned (e.g. CANCELLED when the client's stream is gone). codec_index: which of the store's
  // codecs the memory is read in (PassageStore::GetCodes; 0 = the primary one).
  // options.extractive: the answer is a span of the passages' stored token ids
  // (PassageSpanConstraint; their text records are read beside the codes).
  StatusOr<AnswerOutcome> Answer(const std::vector<int>& question_ids,
                                 const std::vector<std::string>& passage_ids,
                                 const T5GenerationOptions& options,
                                 const std::function<Status()>& check,
                                 const std::function<Status(int id)>& on_token = {},
                                 int codec_index = 0);

  struct IngestItem {
    std::string id, title, text;
    std::vector<int> ids;  // FiD passage part, EOS last
  };
  struct IngestOutcome {
    int64_t tokens = 0;
    int64_t replaced_tokens = 0;  // tokens of the stored passages this batch overwrote
    int64_t code_bytes = 0;
    double encode_seconds = 0;
    double write_seconds = 0;
  };
  // Memory-encodes and durably writes one batch (all of it or none).
  StatusOr<IngestOutcome> Ingest(const std::vector<IngestItem>& batch,
                                 const std::function<Status()>& check);

  const LumenModel& lumen() const { return *lumen_; }
  int workers() const { return pool_->workers(); }
  int queue_capacity() const { return pool_->queue_capacity(); }
  int threads_per_worker() const { return threads_per_worker_; }

 private:
  struct Worker {
    std::unique_ptr<ThreadPool> threads;
    std::unique_ptr<LumenScratch> scratch;
  };
  // Submits `job` and waits for it (withdrawn from the queue when check fails there).
  Status RunJob(const std::function<void(int worker)>& job, const std::function<Status()>& check,
                double* queue_seconds);

  std::shared_ptr<const LumenModel> lumen_;
  PassageStore* store_;
  int threads_per_worker_;
  Metrics* metrics_;
  std::vector<uint8_t> piece_kinds_;
  std::vector<Worker> workers_;
  std::unique_ptr<WorkerPool> pool_;  // last: its threads stop before the workers' state goes
};

}  // namespace memoria
