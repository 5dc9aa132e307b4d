#include "server/metrics.h"

#include <gtest/gtest.h>

namespace memoria {
namespace {

TEST(MetricsTest, PrometheusTextHasCumulativeBucketsAndAllFailureReasons) {
  Metrics metrics;
  metrics.RecordRequest("Generate", "OK", "", 0.003);
  metrics.RecordRequest("Generate", "DEADLINE_EXCEEDED", "deadline", 0.2);
  metrics.RecordGeneration(5, 10, 0.01, 0.09);
  metrics.SetQueueSize(3);
  const std::string text = metrics.RenderPrometheus();
  auto has = [&](const std::string& line) { return text.find(line + "\n") != std::string::npos; };
  EXPECT_TRUE(has("memoria_requests_total{method=\"Generate\",code=\"OK\"} 1")) << text;
  EXPECT_TRUE(has("memoria_request_failures_total{reason=\"deadline\"} 1"));
  EXPECT_TRUE(has("memoria_request_failures_total{reason=\"overloaded\"} 0"));
  EXPECT_TRUE(has("memoria_request_duration_seconds_bucket{method=\"Generate\",le=\"0.0025\"} 0"));
  EXPECT_TRUE(has("memoria_request_duration_seconds_bucket{method=\"Generate\",le=\"0.005\"} 1"));
  EXPECT_TRUE(has("memoria_request_duration_seconds_bucket{method=\"Generate\",le=\"0.25\"} 2"));
  EXPECT_TRUE(has("memoria_request_duration_seconds_bucket{method=\"Generate\",le=\"+Inf\"} 2"));
  EXPECT_TRUE(has("memoria_request_duration_seconds_count{method=\"Generate\"} 2"));
  EXPECT_TRUE(has("memoria_generated_tokens_total 10"));
  EXPECT_TRUE(has("memoria_prompt_tokens_total 5"));
  EXPECT_TRUE(has("memoria_decode_tokens_per_second 100"));
  EXPECT_TRUE(has("memoria_queue_size 3"));
  EXPECT_TRUE(has("# TYPE memoria_queue_wait_seconds histogram"));
}

TEST(MetricsTest, StoreGaugesAndAttentionHistogram) {
  Metrics metrics;
  const std::string empty = metrics.RenderPrometheus();
  EXPECT_NE(empty.find("memoria_store_bytes_per_token 0\n"), std::string::npos) << empty;
  EXPECT_NE(empty.find("memoria_store_compression_ratio 0\n"), std::string::npos);
  // 1000 tokens of d 64 in 32000 bytes on disk: 32 bytes per token, f32 256 / 32 = 8x.
  metrics.SetStoreSize(32000, 1000, 64);
  metrics.ObserveAttention(0.004);
  const std::string text = metrics.RenderPrometheus();
  auto has = [&](const std::string& line) { return text.find(line + "\n") != std::string::npos; };
  EXPECT_TRUE(has("memoria_store_bytes 32000")) << text;
  EXPECT_TRUE(has("memoria_store_tokens 1000"));
  EXPECT_TRUE(has("memoria_store_bytes_per_token 32"));
  EXPECT_TRUE(has("memoria_store_compression_ratio 8"));
  EXPECT_TRUE(has("memoria_attention_seconds_bucket{le=\"0.0025\"} 0"));
  EXPECT_TRUE(has("memoria_attention_seconds_bucket{le=\"0.005\"} 1"));
  EXPECT_TRUE(has("memoria_attention_seconds_count 1"));
}

}  // namespace
}  // namespace memoria
