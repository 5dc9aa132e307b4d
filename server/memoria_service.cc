#include "server/memoria_service.h"

#include <chrono>
#include <filesystem>
#include <set>

#include "base/logging.h"
#include "server/lumen_requests.h"
#include "server/status_map.h"

namespace memoria {
namespace {

constexpr char kVersion[] = "0.1.0";

v1::StopReason ToProto(StopReason reason) {
  switch (reason) {
    case StopReason::kEos:
      return v1::STOP_REASON_EOS;
    case StopReason::kStopString:
      return v1::STOP_REASON_STOP_STRING;
    case StopReason::kMaxTokens:
      return v1::STOP_REASON_MAX_TOKENS;
    case StopReason::kContextFull:
      return v1::STOP_REASON_CONTEXT_FULL;
    case StopReason::kCancelled:
      break;  // never a successful reply's reason
  }
  return v1::STOP_REASON_UNSPECIFIED;
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Deadline first: gRPC also marks a call cancelled when its deadline passes, and the client must
// see DEADLINE_EXCEEDED (and the metric count "deadline") then. gRPC's deadline timer runs on
// its own clock and may fire a fraction of a millisecond before system_clock reaches
// deadline(): a cancellation within kDeadlineSlack of the deadline is the deadline's.
Status CheckCall(grpc::ServerContext* context) {
  constexpr auto kDeadlineSlack = std::chrono::milliseconds(5);
  const auto deadline = context->deadline();
  const bool has_deadline = deadline != std::chrono::system_clock::time_point::max();
  const auto now = std::chrono::system_clock::now();
  if (has_deadline && now >= deadline) return DeadlineExceededError("the request's deadline passed");
  if (context->IsCancelled()) {
    if (has_deadline && now + kDeadlineSlack >= deadline) {
      return DeadlineExceededError("the request's deadline passed");
    }
    return CancelledError("the client cancelled the request");
  }
  return Status::Ok();
}

// Bytes of the RocksDB files that hold the store's data: live SST files, blob files and the WAL
// (*.log; the info log is LOG, without the extension). One directory listing, no reads.
int64_t StoreDiskBytes(const std::string& dir) {
  std::error_code ec;
  int64_t total = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string ext = entry.path().extension().string();
    if (ext != ".sst" && ext != ".blob" && ext != ".log") continue;
    std::error_code size_ec;
    const uintmax_t size = entry.file_size(size_ec);  // a file compacted away meanwhile: skipped
    if (!size_ec) total += static_cast<int64_t>(size);
  }
  return total;
}

}  // namespace

MemoriaService::MemoriaService(const v1::ServerConfig& config, Metrics* metrics)
    : config_(config), metrics_(metrics) {}

MemoriaService::~MemoriaService() = default;

void MemoriaService::StartServing(std::unique_ptr<ServingModel> serving) {
  serving_ = std::move(serving);
  UpdateStoreGauges(*serving_);
  // A drain that began during loading wins: the server never turns ready then.
  State expected = State::kLoading;
  state_.compare_exchange_strong(expected, State::kServing);
}

void MemoriaService::StartDraining() { state_.store(State::kDraining); }

StatusOr<ServingModel*> MemoriaService::Serving() const {
  switch (state_.load()) {
    case State::kLoading:
      return UnavailableError("the model is loading");
    case State::kDraining:
      return UnavailableError("the server is shutting down");
    case State::kServing:
      break;
  }
  return serving_.get();
}

void MemoriaService::UpdateStoreGauges(const ServingModel& serving) {
  if (!serving.lumen || serving.lumen->store == nullptr) return;
  metrics_->SetStoreSize(StoreDiskBytes(serving.lumen->store->dir()), serving.store_tokens.load(),
                         serving.lumen->lumen->model().config().d_model);
  metrics_->SetStoreReopens(serving.lumen->store->reopen_attempts());
}

grpc::Status MemoriaService::Finish(const char* method, grpc::ServerContext* context,
                                    Clock::time_point start, const Status& status,
                                    const std::string& detail) {
  const double seconds = Seconds(Clock::now() - start);
  metrics_->RecordRequest(method, StatusCodeName(status.code()), FailureReason(status.code()),
                          seconds);
  const uint64_t id = next_request_id_.fetch_add(1);
  if (status.ok()) {
    MEMORIA_LOG(kInfo, "request {} {} from {}: OK in {:.1f} ms {}", id, method, context->peer(),
                seconds * 1e3, detail);
  } else {
    MEMORIA_LOG(kInfo, "request {} {} from {}: {} in {:.1f} ms", id, method, context->peer(),
                status.ToString(), seconds * 1e3);
  }
  return ToGrpcStatus(status);
}

Status MemoriaService::Complete(grpc::ServerContext* context, const v1::GenerateRequest& request,
                                const TokenCallback& on_token, v1::GenerateReply* reply) {
  const auto start = Clock::now();
  ASSIGN_OR_RETURN(ServingModel * serving, Serving());
  if (serving->lumen) {
    RETURN_IF_ERROR(AnswerLumenRequest(
        *serving->lumen, serving->limits, request, [context] { return CheckCall(context); },
        on_token, reply));
    reply->mutable_timings()->set_total_seconds(Seconds(Clock::now() - start));
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(CompletionOptions options, ValidateGenerateRequest(request, serving->limits));
  const std::vector<int> ids =
      serving->tokenizer->Encode(request.prompt(), /*add_bos=*/!request.no_bos(),
                                 /*add_eos=*/false);
  RETURN_IF_ERROR(ValidatePromptTokens(ids, serving->limits, serving->model->config().vocab_size));
  ASSIGN_OR_RETURN(CompletionRunner::Outcome outcome,
                   serving->runner->Run(
                       ids, options, [context] { return CheckCall(context); }, on_token));
  const CompletionResult& r = outcome.result;
  reply->set_text(r.text);
  for (int id : r.output_ids) reply->add_token_ids(id);
  reply->set_stop_reason(ToProto(r.stop_reason));
  reply->set_prompt_tokens(static_cast<int32_t>(r.prompt_tokens));
  reply->set_completion_tokens(static_cast<int32_t>(r.output_ids.size()));
  v1::Timings* t = reply->mutable_timings();
  t->set_queue_seconds(outcome.queue_seconds);
  t->set_prefill_seconds(r.prefill_seconds);
  t->set_decode_seconds(r.decode_seconds);
  t->set_total_seconds(Seconds(Clock::now() - start));
  return Status::Ok();
}

grpc::Status MemoriaService::Generate(grpc::ServerContext* context,
                                      const v1::GenerateRequest* request,
                                      v1::GenerateReply* reply) {
  InFlight in_flight(&in_flight_);
  const auto start = Clock::now();
  Status status = Complete(context, *request, nullptr, reply);
  return Finish("Generate", context, start, status,
                "prompt " + std::to_string(reply->prompt_tokens()) + " tokens, generated " +
                    std::to_string(reply->completion_tokens()));
}

grpc::Status MemoriaService::GenerateStream(grpc::ServerContext* context,
                                            const v1::GenerateRequest* request,
                                            grpc::ServerWriter<v1::GenerateStreamReply>* writer) {
  InFlight in_flight(&in_flight_);
  const auto start = Clock::now();
  v1::GenerateReply reply;
  v1::GenerateStreamReply message;
  // Runs on the worker thread while this handler thread waits: writes never overlap.
  auto on_token = [&](int id, const std::string& piece) {
    message.set_token_id(id);
    message.set_text(piece);
    return writer->Write(message);  // false: the client is gone
  };
  Status status = Complete(context, *request, on_token, &reply);
  if (status.ok()) {
    v1::GenerateStreamReply last;
    *last.mutable_done() = reply;
    if (!writer->Write(last))
      status = CancelledError("the client closed the stream before the summary");
  }
  return Finish("GenerateStream", context, start, status,
                "prompt " + std::to_string(reply.prompt_tokens()) + " tokens, generated " +
                    std::to_string(reply.completion_tokens()));
}

grpc::Status MemoriaService::ServerInfo(grpc::ServerContext* context, const v1::ServerInfoRequest*,
                                        v1::ServerInfoReply* reply) {
  InFlight in_flight(&in_flight_);
  const auto start = Clock::now();
  auto serving = Serving();
  if (serving.ok()) {
    const ServingModel& s = **serving;
    reply->set_version(kVersion);
    reply->set_model_dir(config_.model_dir());
    reply->set_max_prompt_tokens(static_cast<int32_t>(s.limits.max_prompt_tokens));
    reply->set_max_new_tokens(static_cast<int32_t>(s.limits.max_new_tokens));
    if (s.lumen) {
      const T5Config& c = s.lumen->lumen->model().config();
      reply->set_model_type("t5");
      reply->set_vocab_size(static_cast<int32_t>(c.vocab_size));
      reply->set_num_layers(c.num_layers);
      reply->set_hidden_size(static_cast<int32_t>(c.d_model));
      reply->set_alpha(s.lumen->alpha);
      reply->set_memory_layers(s.lumen->lumen->memory_layers());
      reply->set_workers(s.lumen->runner->workers());
      reply->set_queue_capacity(s.lumen->runner->queue_capacity());
      reply->set_threads_per_worker(s.lumen->runner->threads_per_worker());
      if (s.lumen->store != nullptr) {
        reply->set_store_passages(s.lumen->store->passage_count());
        reply->set_retriever("bm25 (index in the store, updated with every ingest and delete)");
      }
      if (s.lumen->store != nullptr) {
        const int64_t bytes = StoreDiskBytes(s.lumen->store->dir());
        const int64_t tokens = s.store_tokens.load();
        reply->set_store_bytes(bytes);
        reply->set_store_tokens(tokens);
        if (tokens > 0) reply->set_store_bytes_per_token(double(bytes) / double(tokens));
      }
    } else {
      const LlamaConfig& c = s.model->config();
      reply->set_model_type("llama");
      reply->set_vocab_size(static_cast<int32_t>(c.vocab_size));
      reply->set_num_layers(c.num_layers);
      reply->set_hidden_size(static_cast<int32_t>(c.hidden_size));
      reply->set_max_sequence_length(s.model->max_sequence_length());
      reply->set_workers(s.runner->workers());
      reply->set_queue_capacity(s.runner->queue_capacity());
      reply->set_threads_per_worker(s.runner->threads_per_worker());
    }
    reply->set_store_configured(s.store != nullptr);
    if (s.store) {
      reply->set_store_identity(s.store->identity().ToString());
      for (int i = 0; i < s.store->num_codecs(); ++i) {
        const CodecSpec& spec = s.store->codec(i).spec();
        v1::StoreCodec* info = reply->add_store_codecs();
        info->set_codec(spec.ToFlag());
        info->set_description(spec.ToString());
        info->set_bytes_per_token(spec.BytesPerToken());
        info->set_compression_ratio(spec.CompressionRatio());
        info->set_primary(i == 0);
      }
      // The primary codec's figures also in the top-level fields.
      const v1::StoreCodec& primary = reply->store_codecs(0);
      reply->set_codec(primary.description());
      reply->set_bytes_per_token(primary.bytes_per_token());
      reply->set_compression_ratio(primary.compression_ratio());
    }
  }
  return Finish("ServerInfo", context, start, serving.status(), "");
}

grpc::Status MemoriaService::GetPassage(grpc::ServerContext* context,
                                        const v1::GetPassageRequest* request, v1::Passage* reply) {
  InFlight in_flight(&in_flight_);
  const auto start = Clock::now();
  auto run = [&]() -> Status {
    ASSIGN_OR_RETURN(ServingModel * serving, Serving());
    if (!serving->store)
      return FailedPreconditionError("no passage store is configured (store_dir is empty)");
    if (request->id().empty()) return InvalidArgumentError("passage id is empty");
    auto texts = serving->store->GetText({request->id()});
    RETURN_IF_ERROR(texts[0].status());
    reply->set_id(request->id());
    reply->set_title(texts[0]->title);
    reply->set_text(texts[0]->text);
    for (int32_t id : texts[0]->token_ids) reply->add_token_ids(id);
    return Status::Ok();
  };
  return Finish("GetPassage", context, start, run(), "");
}

grpc::Status MemoriaService::DeletePassages(grpc::ServerContext* context,
                                            const v1::DeletePassagesRequest* request,
                                            v1::DeletePassagesReply* reply) {
  InFlight in_flight(&in_flight_);
  const auto start = Clock::now();
  auto run = [&]() -> Status {
    ASSIGN_OR_RETURN(ServingModel * serving, Serving());
    if (!serving->store)
      return FailedPreconditionError("no passage store is configured (store_dir is empty)");
    if (request->ids_size() == 0) return InvalidArgumentError("no passage ids given");
    std::vector<std::string> ids(request->ids().begin(), request->ids().end());
    // All-or-nothing: unknown ids fail the whole call (NOT_FOUND naming them) before deleting.
    auto texts = serving->store->GetText(ids);
    std::string missing;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (texts[i].ok()) continue;
      if (texts[i].status().code() != StatusCode::kNotFound) return texts[i].status();
      missing += (missing.empty() ? "'" : ", '") + ids[i] + "'";
    }
    if (!missing.empty()) return NotFoundError("unknown passage ids: " + missing);
    RETURN_IF_ERROR(serving->store->Delete(ids));
    if (serving->lumen) {
      metrics_->SetStorePassages(serving->store->passage_count());
      int64_t tokens = 0;  // a passage's memory tokens are its stored token ids
      std::set<std::string> counted;
      for (size_t i = 0; i < ids.size(); ++i) {
        if (counted.insert(ids[i]).second)
          tokens += static_cast<int64_t>(texts[i]->token_ids.size());
      }
      serving->store_tokens.fetch_sub(tokens);
      UpdateStoreGauges(*serving);
    }
    reply->set_deleted(static_cast<int32_t>(ids.size()));
    return Status::Ok();
  };
  return Finish("DeletePassages", context, start, run(), "");
}

Status MemoriaService::IngestPassages(grpc::ServerContext* context,
                                      grpc::ServerReader<v1::IngestRequest>* reader,
                                      v1::IngestReply* reply) {
  ASSIGN_OR_RETURN(ServingModel * serving, Serving());
  if (!serving->lumen) {
    return UnimplementedError(
        "Ingest memory-encodes passages with a T5 model; this server serves a LLaMA model");
  }
  LumenServing& lumen = *serving->lumen;
  if (lumen.store == nullptr) return FailedPreconditionError(lumen.no_store_reason);
  const int eos = lumen.lumen->model().config().eos_token_id;
  const size_t batch_size = static_cast<size_t>(lumen.settings.ingest_batch_passages());
  const int64_t max_tokens = lumen.settings.max_passage_tokens();
  std::vector<LumenRunner::IngestItem> batch;
  int64_t received = 0;
  // Writes the batch (and its retrieval-index entries) durably, then counts it.
  auto flush = [&]() -> Status {
    if (batch.empty()) return Status::Ok();
    auto outcome = lumen.runner->Ingest(batch, [context] { return CheckCall(context); });
    if (!outcome.ok()) {
      return outcome.status().WithContext(std::to_string(reply->ingested()) +
                                          " passages of this call were stored before this batch");
    }
    reply->set_ingested(reply->ingested() + static_cast<int32_t>(batch.size()));
    reply->set_tokens(reply->tokens() + outcome->tokens);
    reply->set_code_bytes(reply->code_bytes() + outcome->code_bytes);
    reply->set_encode_seconds(reply->encode_seconds() + outcome->encode_seconds);
    reply->set_write_seconds(reply->write_seconds() + outcome->write_seconds);
    metrics_->AddIngested(static_cast<int64_t>(batch.size()));
    metrics_->SetStorePassages(lumen.store->passage_count());
    serving->store_tokens.fetch_add(outcome->tokens - outcome->replaced_tokens);
    UpdateStoreGauges(*serving);
    batch.clear();
    return Status::Ok();
  };
  v1::IngestRequest message;
  while (reader->Read(&message)) {
    const v1::Passage& p = message.passage();
    RETURN_IF_ERROR(ValidateIngestPassage(p, received));
    // One WriteBatch may not hold an id twice (PassageStore::Ingest); a later batch may (the
    // later passage then wins, as a re-sent id overwrites).
    bool repeated = false;
    for (const auto& item : batch) repeated = repeated || item.id == p.id();
    if (repeated) RETURN_IF_ERROR(flush());
    LumenRunner::IngestItem item{
        p.id(), p.title(), p.text(),
        FidPassageIds(*lumen.tokenizer, lumen.fid, p.title(), p.text(), eos)};
    // Same cut as `memoria build-store`: max_passage_tokens ids, EOS kept last.
    if (static_cast<int64_t>(item.ids.size()) > max_tokens) {
      item.ids.resize(static_cast<size_t>(max_tokens));
      item.ids.back() = eos;
      reply->set_truncated(reply->truncated() + 1);
    }
    batch.push_back(std::move(item));
    ++received;
    if (batch.size() >= batch_size) RETURN_IF_ERROR(flush());
  }
  RETURN_IF_ERROR(CheckCall(context));  // a stream cut short by the client is not a whole ingest
  RETURN_IF_ERROR(flush());
  if (received == 0) return InvalidArgumentError("no passages were sent");
  return Status::Ok();
}

grpc::Status MemoriaService::Ingest(grpc::ServerContext* context,
                                    grpc::ServerReader<v1::IngestRequest>* reader,
                                    v1::IngestReply* reply) {
  InFlight in_flight(&in_flight_);
  const auto start = Clock::now();
  Status status = IngestPassages(context, reader, reply);
  return Finish("Ingest", context, start, status,
                std::to_string(reply->ingested()) + " passages, " +
                    std::to_string(reply->tokens()) + " tokens");
}

}  // namespace memoria
