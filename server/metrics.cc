#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace memoria {
namespace {

// Latency buckets from 1 ms to 60 s: covers a tiny model's single token up to long generations.
std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

// Store reads and codec decodes of a request's passages take tens of microseconds to a few ms.
std::vector<double> FastBuckets() {
  return {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
          0.005,   0.01,     0.025,   0.05,   0.1,     0.25,   1};
}

const char* const kFailureReasons[] = {"invalid",   "overloaded",  "deadline",
                                       "cancelled", "unavailable", "unimplemented",
                                       "storage",   "internal",    "unauthenticated"};

std::string FormatDouble(double v) { return fmt::format("{:.9g}", v); }

void Header(const std::string& name, const char* type, const char* help, std::string* out) {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::Render(const std::string& name, const std::string& labels, std::string* out) const {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    *out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep,
                        FormatDouble(bounds_[i]), cumulative);
  }
  *out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, count_);
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  *out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braces, FormatDouble(sum_), name,
                      braces, count_);
}

Metrics::Metrics()
    : queue_seconds_(LatencyBuckets()),
      prefill_seconds_(LatencyBuckets()),
      decode_seconds_(LatencyBuckets()),
      store_read_seconds_(FastBuckets()),
      decompress_seconds_(FastBuckets()),
      live_encoder_seconds_(LatencyBuckets()),
      decoder_seconds_(LatencyBuckets()),
      attention_seconds_(LatencyBuckets()) {
  for (const char* reason : kFailureReasons) failures_[reason] = 0;
}

void Metrics::RecordRequest(const std::string& method, const std::string& code,
                            const std::string& reason, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{method, code}];
  if (!reason.empty()) ++failures_[reason];
  auto it = request_seconds_.find(method);
  if (it == request_seconds_.end())
    it = request_seconds_.emplace(method, Histogram(LatencyBuckets())).first;
  it->second.Observe(seconds);
}

void Metrics::ObserveQueueWait(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  queue_seconds_.Observe(seconds);
}

void Metrics::RecordGeneration(int64_t prompt_tokens, int64_t generated_tokens,
                               double prefill_seconds, double decode_seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  prompt_tokens_ += static_cast<uint64_t>(std::max<int64_t>(prompt_tokens, 0));
  generated_tokens_ += static_cast<uint64_t>(std::max<int64_t>(generated_tokens, 0));
  prefill_seconds_.Observe(prefill_seconds);
  decode_seconds_.Observe(decode_seconds);
  // decode_seconds covers the tokens after the first (llama_generator.h).
  if (generated_tokens > 1 && decode_seconds > 0) {
    last_decode_tokens_per_second_ = double(generated_tokens - 1) / decode_seconds;
  }
}

void Metrics::ObserveLumen(double store_read_seconds, double decompress_seconds,
                           double live_encoder_seconds, double decoder_seconds,
                           int64_t encoder_tokens, int64_t generated_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  store_read_seconds_.Observe(store_read_seconds);
  decompress_seconds_.Observe(decompress_seconds);
  live_encoder_seconds_.Observe(live_encoder_seconds);
  decoder_seconds_.Observe(decoder_seconds);
  prompt_tokens_ += static_cast<uint64_t>(std::max<int64_t>(encoder_tokens, 0));
  generated_tokens_ += static_cast<uint64_t>(std::max<int64_t>(generated_tokens, 0));
}

void Metrics::SetStoreSize(int64_t disk_bytes, int64_t tokens, int64_t d_model) {
  std::lock_guard<std::mutex> lock(mu_);
  store_bytes_ = disk_bytes;
  store_tokens_ = tokens;
  store_d_model_ = d_model;
}

void Metrics::ObserveAttention(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  attention_seconds_.Observe(seconds);
}

std::string Metrics::RenderPrometheus() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  Header("memoria_requests_total", "counter", "Finished RPCs by method and gRPC status code.",
         &out);
  for (const auto& [key, n] : requests_) {
    out += fmt::format("memoria_requests_total{{method=\"{}\",code=\"{}\"}} {}\n", key.first,
                       key.second, n);
  }
  Header("memoria_request_failures_total", "counter", "Failed RPCs by reason.", &out);
  for (const auto& [reason, n] : failures_) {
    out += fmt::format("memoria_request_failures_total{{reason=\"{}\"}} {}\n", reason, n);
  }
  Header("memoria_request_duration_seconds", "histogram", "RPC time from arrival to reply.", &out);
  for (const auto& [method, h] : request_seconds_) {
    h.Render("memoria_request_duration_seconds", "method=\"" + method + "\"", &out);
  }
  Header("memoria_queue_wait_seconds", "histogram", "Time admitted requests waited for a worker.",
         &out);
  queue_seconds_.Render("memoria_queue_wait_seconds", "", &out);
  Header("memoria_prefill_seconds", "histogram", "Prompt forward pass time per generation.", &out);
  prefill_seconds_.Render("memoria_prefill_seconds", "", &out);
  Header("memoria_decode_seconds", "histogram",
         "Decode time per generation (tokens after the first).", &out);
  decode_seconds_.Render("memoria_decode_seconds", "", &out);
  Header("memoria_prompt_tokens_total", "counter", "Prompt tokens processed.", &out);
  out += fmt::format("memoria_prompt_tokens_total {}\n", prompt_tokens_);
  Header("memoria_generated_tokens_total", "counter", "Tokens generated.", &out);
  out += fmt::format("memoria_generated_tokens_total {}\n", generated_tokens_);
  Header("memoria_queue_size", "gauge", "Requests waiting for a worker.", &out);
  out += fmt::format("memoria_queue_size {}\n", queue_size_.load());
  Header("memoria_workers_busy", "gauge", "Workers computing a request.", &out);
  out += fmt::format("memoria_workers_busy {}\n", workers_busy_.load());
  Header("memoria_decode_tokens_per_second", "gauge",
         "Decode speed of the last finished generation.", &out);
  out += fmt::format("memoria_decode_tokens_per_second {}\n",
                     FormatDouble(last_decode_tokens_per_second_));
  Header("memoria_ready", "gauge", "1 when the server is ready to serve (model loaded, warmed up).",
         &out);
  out += fmt::format("memoria_ready {}\n", ready_.load());
  Header("memoria_store_read_seconds", "histogram",
         "T5/LUMEN: RocksDB MultiGet of a request's passage memory.", &out);
  store_read_seconds_.Render("memoria_store_read_seconds", "", &out);
  Header("memoria_decompress_seconds", "histogram",
         "T5/LUMEN: codec decode of a request's passage memory.", &out);
  decompress_seconds_.Render("memoria_decompress_seconds", "", &out);
  Header("memoria_live_encoder_seconds", "histogram",
         "T5/LUMEN: question memory encoder + live encoder over all passages.", &out);
  live_encoder_seconds_.Render("memoria_live_encoder_seconds", "", &out);
  Header("memoria_decoder_seconds", "histogram", "T5/LUMEN: answer generation (greedy or beam).",
         &out);
  decoder_seconds_.Render("memoria_decoder_seconds", "", &out);
  Header("memoria_attention_seconds", "histogram",
         "Attention kernels per generation: LLaMA prefill + decode, T5 decoder self + cross.", &out);
  attention_seconds_.Render("memoria_attention_seconds", "", &out);
  Header("memoria_data_loss_total", "counter",
         "Stored passages that failed verification or decoding when read.", &out);
  out += fmt::format("memoria_data_loss_total {}\n", data_loss_.load());
  Header("memoria_ingested_passages_total", "counter", "Passages durably ingested.", &out);
  out += fmt::format("memoria_ingested_passages_total {}\n", ingested_.load());
  Header("memoria_store_passages", "gauge", "Passages in the store.", &out);
  out += fmt::format("memoria_store_passages {}\n", store_passages_.load());
  Header("memoria_store_bytes", "gauge", "Passage store files on disk (SST + blob + WAL).", &out);
  out += fmt::format("memoria_store_bytes {}\n", store_bytes_);
  Header("memoria_store_reopens_total", "counter",
         "Reopens of the passage store's database after a failed write.", &out);
  out += fmt::format("memoria_store_reopens_total {}\n", store_reopens_.load());
  Header("memoria_store_tokens", "gauge", "Memory tokens in the passage store.", &out);
  out += fmt::format("memoria_store_tokens {}\n", store_tokens_);
  Header("memoria_store_bytes_per_token", "gauge", "Store bytes on disk per memory token.", &out);
  out += fmt::format("memoria_store_bytes_per_token {}\n",
                     FormatDouble(store_tokens_ > 0 ? double(store_bytes_) / store_tokens_ : 0));
  Header("memoria_store_compression_ratio", "gauge",
         "f32 memory bytes of the stored tokens / store bytes on disk.", &out);
  out += fmt::format("memoria_store_compression_ratio {}\n",
                     FormatDouble(store_bytes_ > 0 ? 4.0 * double(store_d_model_) *
                                                         double(store_tokens_) / store_bytes_
                                                   : 0));
  return out;
}

}  // namespace memoria
