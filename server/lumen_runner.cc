#include "server/lumen_runner.h"

#include <chrono>
#include <latch>

#include "engine/span_constraint.h"

namespace memoria {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

Status NoStore() { return FailedPreconditionError("this server has no passage store (store_dir)"); }

}  // namespace

LumenRunner::LumenRunner(std::shared_ptr<const LumenModel> lumen, PassageStore* store, int workers,
                         int queue_capacity, int threads_per_worker, Metrics* metrics,
                         std::vector<uint8_t> piece_kinds)
    : lumen_(std::move(lumen)),
      store_(store),
      threads_per_worker_(threads_per_worker),
      metrics_(metrics),
      piece_kinds_(std::move(piece_kinds)) {
  workers_.resize(workers);
  for (Worker& w : workers_) {
    w.threads = std::make_unique<ThreadPool>(threads_per_worker);
    w.scratch = std::make_unique<LumenScratch>();
  }
  pool_ = std::make_unique<WorkerPool>(
      workers, queue_capacity, [this](int worker) { workers_[worker].threads->BindOpenMp(); },
      [metrics](int64_t waiting, int64_t running) {
        if (metrics == nullptr) return;
        metrics->SetQueueSize(waiting);
        metrics->SetWorkersBusy(running);
      });
}

Status LumenRunner::RunJob(const std::function<void(int worker)>& job,
                           const std::function<Status()>& check, double* queue_seconds) {
  ASSIGN_OR_RETURN(auto ticket, pool_->Submit(job));
  RETURN_IF_ERROR(ticket->Wait(check));
  *queue_seconds = ticket->queue_seconds();
  if (metrics_ != nullptr) metrics_->ObserveQueueWait(*queue_seconds);
  return Status::Ok();
}

Status LumenRunner::WarmUp() {
  // One job per worker, held at a latch until all have started, so that every worker is warmed.
  const int n = static_cast<int>(workers_.size());
  std::latch all_started(n);
  std::vector<Status> results(n);
  std::vector<std::shared_ptr<WorkerPool::Ticket>> tickets;
  const T5Config& c = lumen_->model().config();
  const int id = c.eos_token_id >= 0 && c.eos_token_id < c.vocab_size ? c.eos_token_id : 0;
  for (int i = 0; i < n; ++i) {
    auto ticket = pool_->Submit([&, i](int worker) {
      all_started.arrive_and_wait();
      Worker& w = workers_[worker];
      results[i] = [&]() -> Status {
        std::vector<std::vector<float>> memory;
        RETURN_IF_ERROR(
            lumen_->MemoryEncode(*w.threads, {std::vector<int>(8, id)}, &memory, w.scratch.get()));
        MemoryVectors m{DType::kF32, memory[0].data(), 8, c.d_model};
        T5GenerationOptions options;
        options.max_new_tokens = 2;
        options.stop_at_eos = false;
        return lumen_->Answer(*w.threads, std::vector<int>(4, id), {m}, options, w.scratch.get())
            .status();
      }();
    });
    if (!ticket.ok()) return ticket.status().WithContext("warm-up");
    tickets.push_back(*ticket);
  }
  for (auto& ticket : tickets) RETURN_IF_ERROR(ticket->Wait(nullptr));
  for (const Status& status : results) RETURN_IF_ERROR(status.WithContext("LUMEN warm-up"));
  return Status::Ok();
}

StatusOr<LumenRunner::AnswerOutcome> LumenRunner::Answer(
    const std::vector<int>& question_ids, const std::vector<std::string>& passage_ids,
    const T5GenerationOptions& options, const std::function<Status()>& check,
    const std::function<Status(int id)>& on_token, int codec_index) {
  if (store_ == nullptr) return NoStore();
  if (on_token && options.num_beams != 1) {
    return InvalidArgumentError("per-token streaming needs greedy decoding, got num_beams " +
                                std::to_string(options.num_beams));
  }
  if (options.extractive && piece_kinds_.empty()) {
    return FailedPreconditionError("extractive answers need the tokenizer's piece kinds (LumenRunner built without them)");
  }
  // After every greedy token / beam step: the deadline, then the stream.
  const SearchStepHook on_step = [&](int, const std::vector<int>& tokens) -> Status {
    RETURN_IF_ERROR(check());
    if (on_token) {
      for (int id : tokens) RETURN_IF_ERROR(on_token(id));
    }
    return Status::Ok();
  };
  AnswerOutcome out;
  Status status;
  auto job = [&](int worker) {
    status = [&]() -> Status {
      RETURN_IF_ERROR(check());  // the deadline may have passed while the request waited
      Worker& w = workers_[worker];
      const ThreadPool& pool = *w.threads;
      const int64_t d = lumen_->model().config().d_model;

      auto t0 = Clock::now();
      std::vector<StatusOr<PassageCodes>> codes = store_->GetCodes(passage_ids, codec_index);
      out.store_read_seconds = Since(t0);
      // Unknown ids first, all named at once: the client's mistake, whatever else is wrong.
      std::string missing;
      for (size_t i = 0; i < codes.size(); ++i) {
        if (!codes[i].ok() && codes[i].status().code() == StatusCode::kNotFound)
          missing += (missing.empty() ? "'" : ", '") + passage_ids[i] + "'";
      }
      if (!missing.empty()) return NotFoundError("unknown passage ids: " + missing);
      for (size_t i = 0; i < codes.size(); ++i) {
        if (codes[i].ok()) continue;
        if (codes[i].status().code() == StatusCode::kDataLoss && metrics_ != nullptr)
          metrics_->CountDataLoss();
        return codes[i].status();
      }

      t0 = Clock::now();
      std::vector<std::vector<float>> memory(codes.size());
      std::vector<MemoryVectors> views(codes.size());
      for (size_t i = 0; i < codes.size(); ++i) {
        const PassageCodes& pc = *codes[i];
        memory[i].resize(static_cast<size_t>(pc.num_tokens * d));
        Status st = store_->codec(codec_index).DecodePassage(
            pool, pc.num_tokens, reinterpret_cast<const uint8_t*>(pc.codes.data()),
            static_cast<int64_t>(pc.codes.size()), memory[i].data(), d);
        if (!st.ok()) {
          if (st.code() == StatusCode::kDataLoss && metrics_ != nullptr) metrics_->CountDataLoss();
          return st.WithContext("passage '" + passage_ids[i] + "'");
        }
        views[i] = MemoryVectors{DType::kF32, memory[i].data(), pc.num_tokens, d};
        out.passage_tokens += pc.num_tokens;
        out.encoder_tokens += pc.num_tokens + static_cast<int64_t>(question_ids.size());
      }
      out.decompress_seconds = Since(t0);
      RETURN_IF_ERROR(check());

      std::unique_ptr<PassageSpanConstraint> spans;
      if (options.extractive) {
        t0 = Clock::now();
        std::vector<StatusOr<PassageText>> texts = store_->GetText(passage_ids);
        std::vector<std::vector<int>> passages(texts.size());
        for (size_t i = 0; i < texts.size(); ++i) {
          if (!texts[i].ok()) {
            if (texts[i].status().code() == StatusCode::kDataLoss && metrics_ != nullptr)
              metrics_->CountDataLoss();
            return texts[i].status().WithContext("passage '" + passage_ids[i] + "'");
          }
          passages[i].assign(texts[i]->token_ids.begin(), texts[i]->token_ids.end());
        }
        spans = std::make_unique<PassageSpanConstraint>(
            std::move(passages), piece_kinds_, lumen_->model().config().eos_token_id);
        out.store_read_seconds += Since(t0);
      }

      t0 = Clock::now();
      LiveEncoding enc;
      RETURN_IF_ERROR(lumen_->LiveEncode(pool, question_ids, views, &enc, w.scratch.get(), check));
      out.live_encoder_seconds = Since(t0);

      // Exactly LumenModel::Answer's second half (lumen.cc): generation from the live encoding.
      t0 = Clock::now();
      ASSIGN_OR_RETURN(out.result,
                       T5Generate(lumen_->model(), pool, enc.h.data(), enc.offsets.back(), options,
                                  &w.scratch->decoder, &on_step, spans.get()));
      out.decoder_seconds = Since(t0);
      out.attention_seconds = w.scratch->decoder.attention_seconds();
      if (metrics_ != nullptr) {
        metrics_->ObserveLumen(out.store_read_seconds, out.decompress_seconds,
                               out.live_encoder_seconds, out.decoder_seconds, out.encoder_tokens,
                               static_cast<int64_t>(out.result.tokens.size()));
        metrics_->ObserveAttention(out.attention_seconds);
      }
      return Status::Ok();
    }();
  };
  RETURN_IF_ERROR(RunJob(job, check, &out.queue_seconds));
  RETURN_IF_ERROR(status);
  return out;
}

StatusOr<LumenRunner::IngestOutcome> LumenRunner::Ingest(const std::vector<IngestItem>& batch,
                                                         const std::function<Status()>& check) {
  if (store_ == nullptr) return NoStore();
  IngestOutcome out;
  Status status;
  double queue_seconds = 0;
  auto job = [&](int worker) {
    status = [&]() -> Status {
      RETURN_IF_ERROR(check());
      Worker& w = workers_[worker];
      auto t0 = Clock::now();
      std::vector<std::vector<int>> ids;
      ids.reserve(batch.size());
      for (const IngestItem& item : batch) ids.push_back(item.ids);
      std::vector<std::vector<float>> memory;
      RETURN_IF_ERROR(lumen_->MemoryEncode(*w.threads, ids, &memory, w.scratch.get(), check));
      out.encode_seconds = Since(t0);
      // No check() past this point: a batch that is encoded gets written (the client may be gone,
      // but a half-acknowledged stream is re-sent whole and overwrites by id).
      t0 = Clock::now();
      std::vector<PassageInput> inputs(batch.size());
      for (size_t i = 0; i < batch.size(); ++i) {
        PassageInput& in = inputs[i];
        in.id = batch[i].id;
        in.title = batch[i].title;
        in.text = batch[i].text;
        in.token_ids.assign(batch[i].ids.begin(), batch[i].ids.end());
        in.num_tokens = static_cast<int64_t>(batch[i].ids.size());
        in.memory = memory[i].data();
        out.tokens += in.num_tokens;
        for (int c = 0; c < store_->num_codecs(); ++c) out.code_bytes += store_->codec(c).code_size(in.num_tokens);
      }
      // The stored size of the passages this batch overwrites (store gauges keep running sums;
      // one MultiGet of the text records, far smaller than the memory just encoded).
      std::vector<std::string> batch_ids;
      for (const IngestItem& item : batch) batch_ids.push_back(item.id);
      for (const auto& old : store_->GetText(batch_ids)) {
        if (old.ok()) out.replaced_tokens += static_cast<int64_t>(old->token_ids.size());
      }
      RETURN_IF_ERROR(store_->Ingest(*w.threads, inputs));
      out.write_seconds = Since(t0);
      return Status::Ok();
    }();
  };
  RETURN_IF_ERROR(RunJob(job, check, &queue_seconds));
  RETURN_IF_ERROR(status);
  return out;
}

}  // namespace memoria
