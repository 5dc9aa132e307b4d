#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "base/testing.h"

namespace memoria {
namespace {

using ::memoria::testing::Nmse;

constexpr double kF32Nmse = 1e-7;

std::vector<float> Random(size_t n, uint32_t seed, float amp = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-amp, amp);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

struct AttnCase {
  const char* name;
  int64_t q_len, kv_len;
  int n_heads, n_kv_heads, head_dim;
  bool causal;
  int64_t q_offset;
  bool bias;
  int64_t pad;  // extra row stride for q, k, v, out
};

void PrintTo(const AttnCase& c, std::ostream* os) { *os << c.name; }

class AttentionTest : public ::testing::TestWithParam<std::tuple<AttnCase, int>> {};

TEST_P(AttentionTest, MatchesReference) {
  const auto [c, threads] = GetParam();
  ThreadPool pool(threads);
  AttentionParams p;
  p.q_len = c.q_len;
  p.kv_len = c.kv_len;
  p.n_heads = c.n_heads;
  p.n_kv_heads = c.n_kv_heads;
  p.head_dim = c.head_dim;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  p.causal = c.causal;
  p.q_offset = c.q_offset;
  std::vector<float> bias_table;
  if (c.bias) {
    // T5-like: relative positions -40..40, saturating beyond.
    p.bias.min_relative = -40;
    p.bias.length = 81;
    bias_table = Random(static_cast<size_t>(c.n_heads) * 81, 9, 3.0f);
    p.bias.values = bias_table.data();
  }
  const int64_t qs = static_cast<int64_t>(c.n_heads) * c.head_dim + c.pad;
  const int64_t ks = static_cast<int64_t>(c.n_kv_heads) * c.head_dim + c.pad;
  // Scores of a few units, as in trained models, so the softmax is neither flat nor one-hot.
  const std::vector<float> q = Random(c.q_len * qs, 1, 2.0f);
  const std::vector<float> k = Random(std::max<int64_t>(1, c.kv_len) * ks, 2, 2.0f);
  const std::vector<float> v = Random(std::max<int64_t>(1, c.kv_len) * ks, 3);
  std::vector<float> out(c.q_len * qs, 5.0f), ref(c.q_len * qs, 5.0f);
  Attention(pool, p, q.data(), qs, k.data(), ks, v.data(), ks, out.data(), qs);
  AttentionReference(p, q.data(), qs, k.data(), ks, v.data(), ks, ref.data(), qs);
  EXPECT_LE(Nmse(out.data(), ref.data(), static_cast<long>(out.size())), kF32Nmse);
  // Per row too, so one wrong row among many cannot hide.
  const int64_t width = static_cast<int64_t>(c.n_heads) * c.head_dim;
  for (int64_t i = 0; i < c.q_len; ++i) {
    const float* a = out.data() + i * qs;
    const float* b = ref.data() + i * qs;
    double err = 0, norm = 0;
    for (int64_t j = 0; j < width; ++j) {
      err += (a[j] - b[j]) * static_cast<double>(a[j] - b[j]);
      norm += static_cast<double>(b[j]) * b[j];
    }
    ASSERT_LE(err, kF32Nmse * std::max(norm, 1e-6)) << "row " << i;
    for (int64_t j = width; j < qs; ++j) ASSERT_EQ(a[j], 5.0f) << "padding written, row " << i;
  }
}

const AttnCase kCases[] = {
    {"tiny", 1, 1, 1, 1, 8, false, 0, false, 0},
    {"bidir_small", 5, 7, 2, 2, 16, false, 0, false, 3},
    {"causal_square", 100, 100, 4, 4, 64, true, 0, false, 0},
    {"causal_gqa", 200, 200, 8, 2, 32, true, 0, false, 8},
    {"bidir_gqa_long", 70, 2000, 8, 2, 64, false, 0, false, 0},
    {"decode_gqa", 1, 1999, 8, 2, 128, true, 1998, false, 0},
    {"decode_mha_one_head", 1, 2000, 1, 1, 128, true, 1999, false, 0},
    {"decode_mha", 1, 777, 4, 4, 64, true, 776, false, 4},
    {"chunked_prefill", 37, 1037, 8, 2, 64, true, 1000, false, 0},
    {"chunked_prefill_mha", 130, 1500, 2, 2, 128, true, 1370, false, 0},
    {"t5_encoder_bias", 50, 50, 4, 4, 64, false, 0, true, 0},
    {"t5_decoder_bias_causal", 30, 30, 4, 4, 64, true, 0, true, 2},
    {"t5_decode_step_bias", 1, 64, 4, 4, 64, true, 63, true, 0},
    {"cross_attention", 20, 300, 4, 4, 64, false, 0, false, 0},
    {"head_dim_odd", 19, 23, 3, 1, 5, true, 4, false, 1},
    {"head_dim_12_bias", 9, 40, 2, 1, 12, false, 0, true, 0},
    {"rows_see_no_key", 10, 10, 2, 1, 16, true, -4, false, 0},
    {"no_keys", 3, 0, 2, 2, 16, false, 0, false, 0},
    {"many_rows_small_kv", 300, 3, 2, 2, 24, false, 0, false, 0},
    {"short_chunk_gqa", 3, 500, 4, 2, 64, true, 497, false, 0},
    {"short_chunk_gqa_bias", 2, 120, 6, 2, 32, true, 118, true, 0},
    {"decode_head_dim_8", 1, 300, 8, 8, 8, true, 299, false, 0},
    {"prefill_head_dim_8", 40, 40, 8, 4, 8, true, 0, false, 0},
    {"head_dim_24_offset", 65, 130, 2, 2, 24, true, 65, false, 4},
};

INSTANTIATE_TEST_SUITE_P(Cases, AttentionTest,
                         ::testing::Combine(::testing::ValuesIn(kCases), ::testing::Values(1, 2)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_t" +
                                  std::to_string(std::get<1>(info.param));
                         });

TEST(AttentionTest, RowWithoutVisibleKeyIsZero) {
  ThreadPool pool(2);
  AttentionParams p;
  p.q_len = 4;
  p.kv_len = 4;
  p.n_heads = 1;
  p.n_kv_heads = 1;
  p.head_dim = 8;
  p.causal = true;
  p.q_offset = -2;  // queries 0 and 1 come before every key
  const std::vector<float> q = Random(32, 1), k = Random(32, 2), v = Random(32, 3);
  std::vector<float> out(32, 9.0f);
  Attention(pool, p, q.data(), 8, k.data(), 8, v.data(), 8, out.data(), 8);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(out[i], 0.0f);
  for (int i = 16; i < 32; ++i) EXPECT_TRUE(std::isfinite(out[i]));
  // Query 2 sees only key 0: its output is v[0].
  for (int d = 0; d < 8; ++d) EXPECT_NEAR(out[16 + d], v[d], 1e-6f);
}

int64_t PeakRssKb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// q_len = kv_len = 16384 with one head: a materialised score matrix would be 16384^2 * 4 bytes
// = 1 GiB. The blocked kernel needs O(block) per thread, so the peak RSS may grow only by the
// inputs and output (4 x 16384 x 128 x 4 bytes = 32 MiB) plus small scratch.
TEST(AttentionTest, LongSequenceNeedsNoQuadraticMemory) {
  constexpr int64_t n = 16384;
  constexpr int D = 128;
  ThreadPool pool(2);
  const int64_t before_kb = PeakRssKb();
  ASSERT_GT(before_kb, 0);
  std::vector<float> q = Random(n * D, 1, 0.5f), k = Random(n * D, 2, 0.5f), v = Random(n * D, 3);
  std::vector<float> out(n * D, 0.0f);
  AttentionParams p;
  p.q_len = n;
  p.kv_len = n;
  p.n_heads = 1;
  p.n_kv_heads = 1;
  p.head_dim = D;
  p.scale = 1.0f / std::sqrt(static_cast<float>(D));
  p.causal = true;
  const auto t0 = std::chrono::steady_clock::now();
  Attention(pool, p, q.data(), D, k.data(), D, v.data(), D, out.data(), D);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t growth_kb = PeakRssKb() - before_kb;
  RecordProperty("seconds", std::to_string(seconds));
  EXPECT_LT(growth_kb, 96 * 1024) << "peak RSS grew by " << growth_kb << " KiB";
  // Spot-check a few rows against the reference (the full reference would take minutes).
  for (int64_t i : {int64_t{0}, int64_t{1}, int64_t{4097}, n - 1}) {
    AttentionParams one = p;
    one.q_len = 1;
    one.q_offset = i;
    one.kv_len = i + 1;
    std::vector<float> ref(D);
    AttentionReference(one, q.data() + i * D, D, k.data(), D, v.data(), D, ref.data(), D);
    EXPECT_LE(Nmse(out.data() + i * D, ref.data(), D), kF32Nmse) << "row " << i;
  }
}

}  // namespace
}  // namespace memoria
