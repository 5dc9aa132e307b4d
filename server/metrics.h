// The server's metrics, rendered in the Prometheus text exposition format (version 0.0.4) for
// GET /metrics. One prefix ("memoria_"), base units (seconds, tokens), "_total" on counters.
//
//   memoria_requests_total{method,code}              counter, every finished RPC
//   memoria_request_failures_total{reason}           counter; reasons of FailureReason()
//                                                    (status_map.h), all present from the start
//   memoria_request_duration_seconds{method}         histogram, admission to reply
//   memoria_queue_wait_seconds                       histogram, waiting for a worker
//   memoria_prefill_seconds, memoria_decode_seconds  histograms per generation
//   memoria_prompt_tokens_total, memoria_generated_tokens_total   counters
//   memoria_queue_size                               gauge, requests waiting for a worker
//   memoria_workers_busy                             gauge
//   memoria_decode_tokens_per_second                 gauge, of the last finished generation
//   memoria_ready                                    gauge, 1 when /readyz is 200
//   T5/LUMEN path (per answered request):
//   memoria_store_read_seconds                       histogram, RocksDB MultiGet of the memory
//   memoria_decompress_seconds                       histogram, codec decode of the memory
//   memoria_live_encoder_seconds                     histogram, MemEnc(Q) + live encoder
//   memoria_decoder_seconds                          histogram, T5 generation (greedy / beam)
//   memoria_data_loss_total                          counter, detections of stored records
//                                                    that failed verification or decoding: by
//                                                    the store check at start (server.cc; a
//                                                    corrupt text record also by the BM25
//                                                    rebuild) and whenever a request reads one
//   memoria_attention_seconds                        histogram, per generation: time in the
//                                                    attention kernels of all layers and tokens:
//                                                    LLaMA prefill + decode (exact or IceFormer),
//                                                    T5 decoder self + cross (part of
//                                                    memoria_decoder_seconds). The T5 live
//                                                    encoder's attention is not timed (its
//                                                    kernels run inside one engine call per
//                                                    layer stack, with no timer)
//   memoria_ingested_passages_total                  counter, passages durably ingested
//   memoria_store_passages                           gauge, passages in the store
//   memoria_store_bytes                              gauge, the store's RocksDB files on disk
//                                                    (live SST + blob + WAL), all column families
//   memoria_store_reopens_total                      counter, reopens of the store's database after
//                                                    a failed write (storage/passage_store.h)
//   memoria_store_tokens                             gauge, memory tokens stored
//   memoria_store_bytes_per_token                    gauge, store_bytes / store_tokens
//   memoria_store_compression_ratio                  gauge, f32 memory of the same tokens
//                                                    (4 * d_model * store_tokens) / store_bytes;
//                                                    texts, token ids and the WAL count in the
//                                                    denominator, so "none" shows below 1
//   (store gauges: T5 servers with a store, set at start and after every Ingest / Delete; 0
//   otherwise)
//
// Thread-safety: every method may be called concurrently (one mutex; updates are a few adds).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace memoria {

// Cumulative histogram with fixed upper bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);
  // Appends the _bucket/_sum/_count lines; `labels` is "" or `method="Generate"` style.
  void Render(const std::string& name, const std::string& labels, std::string* out) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); last = +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();

  // One finished RPC: its method ("Generate"), gRPC code name ("OK", "RESOURCE_EXHAUSTED") and
  // failure reason ("" when OK), and its wall time from arrival to reply.
  void RecordRequest(const std::string& method, const std::string& code, const std::string& reason,
                     double seconds);
  void ObserveQueueWait(double seconds);
  // One finished generation (also partial ones: cancelled work still used the cores).
  void RecordGeneration(int64_t prompt_tokens, int64_t generated_tokens, double prefill_seconds,
                        double decode_seconds);
  void SetQueueSize(int64_t waiting) { queue_size_.store(waiting); }
  void SetWorkersBusy(int64_t busy) { workers_busy_.store(busy); }
  void SetReady(bool ready) { ready_.store(ready ? 1 : 0); }
  // One answered T5/LUMEN request: its stage times (seconds) and tokens (encoder input tokens
  // count as prompt tokens).
  void ObserveLumen(double store_read_seconds, double decompress_seconds,
                    double live_encoder_seconds, double decoder_seconds, int64_t encoder_tokens,
                    int64_t generated_tokens);
  void CountDataLoss() { data_loss_.fetch_add(1); }
  void AddIngested(int64_t passages) { ingested_.fetch_add(passages); }
  void SetStorePassages(int64_t passages) { store_passages_.store(passages); }
  // Reopens of the store's database after failed writes (PassageStore::reopen_attempts()).
  void SetStoreReopens(int64_t reopens) { store_reopens_.store(reopens); }
  // The store's size: disk_bytes (see memoria_store_bytes), memory tokens, and the model's
  // d_model (the f32 comparison of the compression ratio).
  void SetStoreSize(int64_t disk_bytes, int64_t tokens, int64_t d_model);
  // Attention time of one request (seconds).
  void ObserveAttention(double seconds);

  std::string RenderPrometheus() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> requests_;  // (method, code)
  std::map<std::string, uint64_t> failures_;                          // reason
  std::map<std::string, Histogram> request_seconds_;                  // method
  Histogram queue_seconds_;
  Histogram prefill_seconds_;
  Histogram decode_seconds_;
  uint64_t prompt_tokens_ = 0;
  uint64_t generated_tokens_ = 0;
  double last_decode_tokens_per_second_ = 0;
  std::atomic<int64_t> queue_size_{0};
  std::atomic<int64_t> workers_busy_{0};
  std::atomic<int> ready_{0};
  Histogram store_read_seconds_;
  Histogram decompress_seconds_;
  Histogram live_encoder_seconds_;
  Histogram decoder_seconds_;
  std::atomic<int64_t> data_loss_{0};
  std::atomic<int64_t> ingested_{0};
  std::atomic<int64_t> store_passages_{0};
  std::atomic<int64_t> store_reopens_{0};
  Histogram attention_seconds_;
  int64_t store_bytes_ = 0;
  int64_t store_tokens_ = 0;
  int64_t store_d_model_ = 0;
};

}  // namespace memoria
