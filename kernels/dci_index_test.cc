#include "kernels/dci_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace memoria {
namespace {

constexpr int kDim = 64;

// Gaussian keys whose norms span 0.25x .. 1x (uniform), the hard case for the norm embedding.
std::vector<float> VariedNormKeys(int64_t n, int d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  std::uniform_real_distribution<float> u(0.25f, 1.0f);
  std::vector<float> keys(n * d);
  for (int64_t j = 0; j < n; ++j) {
    float norm2 = 0.0f;
    for (int i = 0; i < d; ++i) {
      keys[j * d + i] = g(rng);
      norm2 += keys[j * d + i] * keys[j * d + i];
    }
    const float s = 5.0f * u(rng) / std::sqrt(norm2);
    for (int i = 0; i < d; ++i) keys[j * d + i] *= s;
  }
  return keys;
}

float MaxNorm(const std::vector<float>& keys, int d) {
  float best = 0.0f;
  for (size_t j = 0; j < keys.size() / d; ++j) {
    double s = 0.0;
    for (int i = 0; i < d; ++i) s += double{keys[j * d + i]} * keys[j * d + i];
    best = std::max(best, static_cast<float>(std::sqrt(s)));
  }
  return best;
}

// Brute-force top-k ids by inner product among ids < limit, ties to the smaller id.
std::vector<int32_t> TopK(const float* q, const std::vector<float>& keys, int d, int64_t limit,
                          int k) {
  std::vector<std::pair<float, int32_t>> all(limit);
  for (int64_t j = 0; j < limit; ++j) {
    double s = 0.0;
    for (int i = 0; i < d; ++i) s += double{q[i]} * keys[j * d + i];
    all[j] = {static_cast<float>(s), static_cast<int32_t>(j)};
  }
  const int n = static_cast<int>(std::min<int64_t>(k, limit));
  std::partial_sort(all.begin(), all.begin() + n, all.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  std::vector<int32_t> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = all[i].second;
  return ids;
}

struct Config {
  const char* name;
  DciOptions options;
};

std::vector<Config> Configs() {
  DciOptions plain;  // one band, the paper's reduction
  DciOptions official;
  official.num_simple = 4;
  official.num_composite = 2;
  DciOptions banded;
  banded.num_simple = 2;
  banded.num_bands = 16;
  banded.band_ratio = 0.95f;
  banded.band_height = 0.7f;
  DciOptions scan = banded;  // the IceformerOptions defaults
  scan.search = DciSearch::kScan;
  scan.num_simple = 6;
  scan.num_bands = 24;
  scan.band_ratio = 0.97f;
  DciOptions scan_plain;
  scan_plain.search = DciSearch::kScan;
  return {{"plain", plain},
          {"official_m4", official},
          {"banded", banded},
          {"scan_banded", scan},
          {"scan_plain", scan_plain}};
}

class DciIndexTest : public ::testing::TestWithParam<int> {
 protected:
  DciOptions options() const { return Configs()[GetParam()].options; }
};

// With a budget that covers every key, the walk must return exactly the brute-force top-k: this
// checks the sorted arrays, the priority walk, the band pruning bound and the final ranking.
TEST_P(DciIndexTest, ExhaustiveBudgetIsExact) {
  const int64_t n = 3000;
  const auto keys = VariedNormKeys(n, kDim, 1);
  const auto queries = VariedNormKeys(20, kDim, 2);
  ThreadPool pool(2);
  DciIndex index(kDim, options());
  ASSERT_TRUE(index.Reset(keys.data(), kDim, n, MaxNorm(keys, kDim)).ok());
  index.Add(pool, n);
  DciQueryOptions qo;
  qo.k = 25;
  qo.max_candidates = 1 << 30;
  qo.max_visits = 1 << 30;
  DciScratch scratch;
  std::vector<int32_t> ids(qo.k);
  std::vector<float> scores(qo.k);
  for (int i = 0; i < 20; ++i) {
    const float* q = &queries[i * kDim];
    const int found = index.Query(q, n, qo, &scratch, ids.data(), scores.data());
    ASSERT_EQ(found, qo.k);
    const auto want = TopK(q, keys, kDim, n, qo.k);
    for (int r = 0; r < qo.k; ++r) {
      EXPECT_EQ(ids[r], want[r]) << "query " << i << " rank " << r;
      double s = 0.0;
      for (int t = 0; t < kDim; ++t) s += double{q[t]} * keys[ids[r] * kDim + t];
      EXPECT_NEAR(scores[r], s, 1e-4 * std::max(1.0, std::abs(s)));
    }
  }
}

// Adding keys block by block (the causal path) builds the same arrays as one bulk Add, so every
// query returns the same answer; `limit` hides keys at or past it.
TEST_P(DciIndexTest, IncrementalAddMatchesBulkAndLimitHidesFutureKeys) {
  const int64_t n = 2500;
  const auto keys = VariedNormKeys(n, kDim, 3);
  const auto queries = VariedNormKeys(16, kDim, 4);
  const float c = MaxNorm(keys, kDim);
  ThreadPool pool(2);
  DciIndex bulk(kDim, options()), incremental(kDim, options());
  ASSERT_TRUE(bulk.Reset(keys.data(), kDim, n, c).ok());
  ASSERT_TRUE(incremental.Reset(keys.data(), kDim, n, c).ok());
  bulk.Add(pool, n);
  for (int64_t added = 0; added < n;) {
    const int64_t step = std::min<int64_t>(n - added, 1 + (added * 7919) % 300);
    incremental.Add(pool, step);
    added += step;
  }
  ASSERT_EQ(incremental.size(), n);
  DciQueryOptions qo;
  qo.k = 10;
  qo.max_candidates = 60;
  qo.max_visits = 600;
  DciScratch s1, s2;
  std::vector<int32_t> a(qo.k), b(qo.k);
  std::vector<float> sa(qo.k), sb(qo.k);
  for (int i = 0; i < 16; ++i) {
    const int64_t limit = 1 + (i * 977) % n;
    const float* q = &queries[i * kDim];
    const int fa = bulk.Query(q, limit, qo, &s1, a.data(), sa.data());
    const int fb = incremental.Query(q, limit, qo, &s2, b.data(), sb.data());
    ASSERT_EQ(fa, fb);
    for (int r = 0; r < fa; ++r) {
      EXPECT_EQ(a[r], b[r]);
      EXPECT_LT(a[r], limit);
    }
    // Exhaustive budget over the prefix: exactly the brute-force top-k of keys < limit.
    DciQueryOptions all = qo;
    all.max_candidates = all.max_visits = 1 << 30;
    const int f = incremental.Query(q, limit, all, &s2, b.data(), sb.data());
    const auto want = TopK(q, keys, kDim, limit, qo.k);
    ASSERT_EQ(f, static_cast<int>(want.size()));
    for (int r = 0; r < f; ++r) EXPECT_EQ(b[r], want[r]) << "limit " << limit;
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, DciIndexTest, ::testing::Values(0, 1, 2, 3, 4),
                         [](const auto& info) { return std::string(Configs()[info.param].name); });

// Clustered keys (the regime where attention is peaked): 64 tight clusters whose norms span
// 0.5x .. 1x, +-10% per key; queries aim at a cluster. The banded index, walked or scanned,
// reaches the k-NN recall target with a budget far below the key count; the single-band
// reduction does not (its aligned keys sit far from the query when their norm is below the
// bound).
TEST(DciIndexRecallTest, BandsFindNeighboursOfVariedNorms) {
  const int d = 128, n = 8192, clusters = 64, k = 40, nq = 100;
  std::mt19937 rng(5);
  std::normal_distribution<float> g;
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> centers(clusters * d), cnorm(clusters);
  for (int c = 0; c < clusters; ++c) {
    float s = 0.0f;
    for (int i = 0; i < d; ++i) {
        centers[c * d + i] = g(rng);
        s += centers[c * d + i] * centers[c * d + i];
      }
    for (int i = 0; i < d; ++i) centers[c * d + i] /= std::sqrt(s);
    cnorm[c] = 0.5f + 0.5f * u(rng);
  }
  std::vector<float> keys(static_cast<size_t>(n) * d), queries(nq * d);
  std::uniform_int_distribution<int> pick(0, clusters - 1);
  const float sigma = 0.1f / std::sqrt(static_cast<float>(d));
  for (int j = 0; j < n; ++j) {
    const int c = pick(rng);
    float s = 0.0f;
    for (int i = 0; i < d; ++i) {
      keys[j * d + i] = centers[c * d + i] + sigma * g(rng);
      s += keys[j * d + i] * keys[j * d + i];
    }
    const float scale = 10.0f * cnorm[c] * (1.0f + 0.1f * g(rng)) / std::sqrt(s);
    for (int i = 0; i < d; ++i) keys[j * d + i] *= scale;
  }
  for (int i = 0; i < nq; ++i) {
    const int c = pick(rng);
    for (int t = 0; t < d; ++t) queries[i * d + t] = centers[c * d + t] + sigma * g(rng);
  }
  ThreadPool pool(2);
  DciQueryOptions qo;
  qo.k = k;
  qo.max_candidates = 16 * k;  // the IceformerOptions defaults
  qo.max_visits = 160 * k;
  auto recall = [&](const DciOptions& options) {
    DciIndex index(d, options);
    EXPECT_TRUE(index.Reset(keys.data(), d, n, MaxNorm(keys, d)).ok());
    index.Add(pool, n);
    DciScratch scratch;
    std::vector<int32_t> ids(k);
    std::vector<float> scores(k);
    int hits = 0;
    for (int i = 0; i < nq; ++i) {
      const int f = index.Query(&queries[i * d], n, qo, &scratch, ids.data(), scores.data());
      const auto want = TopK(&queries[i * d], keys, d, n, k);
      for (int r = 0; r < f; ++r) hits += std::count(want.begin(), want.end(), ids[r]);
    }
    return static_cast<double>(hits) / (nq * k);
  };
  const double banded = recall(Configs()[2].options);
  const double plain = recall(Configs()[0].options);
  // The scan (m = 6) at the IceformerOptions default of 5 k candidates: its budget buys a quarter
  // of the walk's candidates and no visit limit.
  qo.max_candidates = 5 * k;
  const double scan = recall(Configs()[3].options);
  RecordProperty("recall_banded", std::to_string(banded));
  RecordProperty("recall_plain", std::to_string(plain));
  RecordProperty("recall_scan", std::to_string(scan));
  EXPECT_GE(banded, 0.99);
  EXPECT_LT(plain, banded);
  EXPECT_GE(scan, 0.99);
}

// first_keys: keys 0 .. first_keys - 1 are scored even when the walk's budget is spent before it
// reaches them, and still enter the answer only by score (a hidden one never does). Setup: key 2
// is the best key for the query by norm (5) at a moderate angle (cosine 0.6), among 200 other
// keys of norm 5 in random directions and 3800 keys of norm <= 2.5, so a walk of one round
// (budget 1) does not reach it in most queries.
TEST(DciIndexEdgeTest, FirstKeysAreAlwaysScored) {
  const int d = 32;
  const int64_t n = 4000;
  auto keys = VariedNormKeys(n, d, 11);
  for (auto& x : keys) x *= 0.5f;  // norms 0.625 .. 2.5
  std::mt19937 rng(13);
  std::normal_distribution<float> g;
  auto random_unit = [&](float* out) {
    float s = 0.0f;
    for (int t = 0; t < d; ++t) {
      out[t] = g(rng);
      s += out[t] * out[t];
    }
    for (int t = 0; t < d; ++t) out[t] /= std::sqrt(s);
  };
  for (int64_t j = 10; j < 210; ++j) {
    random_unit(&keys[j * d]);
    for (int t = 0; t < d; ++t) keys[j * d + t] *= 5.0f;
  }
  ThreadPool pool(1);
  DciOptions options;
  options.num_simple = 2;
  options.num_bands = 4;
  int missed_without = 0;
  for (int i = 0; i < 10; ++i) {
    std::vector<float> q(d), r(d);
    random_unit(q.data());
    random_unit(r.data());
    // Key 2 = 5 (0.6 q + 0.8 r_perp), r_perp: r made orthogonal to q.
    float qr = 0.0f, rn = 0.0f;
    for (int t = 0; t < d; ++t) qr += q[t] * r[t];
    for (int t = 0; t < d; ++t) r[t] -= qr * q[t];
    for (int t = 0; t < d; ++t) rn += r[t] * r[t];
    for (int t = 0; t < d; ++t) keys[2 * d + t] = 5.0f * (0.6f * q[t] + 0.8f * r[t] / std::sqrt(rn));
    ASSERT_EQ(TopK(q.data(), keys, d, n, 1)[0], 2);
    DciIndex index(d, options);
    ASSERT_TRUE(index.Reset(keys.data(), d, n, MaxNorm(keys, d)).ok());
    index.Add(pool, n);
    DciQueryOptions qo;
    qo.k = 5;
    qo.max_candidates = 1;
    qo.max_visits = 1;
    DciScratch scratch;
    std::vector<int32_t> ids(qo.k);
    std::vector<float> scores(qo.k);
    int found = index.Query(q.data(), n, qo, &scratch, ids.data(), scores.data());
    missed_without += found == 0 || ids[0] != 2;
    qo.first_keys = 4;
    found = index.Query(q.data(), n, qo, &scratch, ids.data(), scores.data());
    ASSERT_GE(found, 1);
    EXPECT_EQ(ids[0], 2) << "query " << i;
    // Hidden by the limit: key 2 is not returned even though it is among the first keys.
    found = index.Query(q.data(), 2, qo, &scratch, ids.data(), scores.data());
    EXPECT_EQ(std::count(ids.begin(), ids.begin() + found, 2), 0) << "query " << i;
  }
  // The setup does hide key 2 from the budget-1 walk (else this test would prove nothing).
  EXPECT_GE(missed_without, 5);
}

TEST(DciIndexEdgeTest, SmallLimitZeroQueryAndErrors) {
  const int d = 8;
  const auto keys = VariedNormKeys(100, d, 9);
  ThreadPool pool(1);
  DciIndex index(d, DciOptions());
  EXPECT_EQ(index.Reset(keys.data(), d - 1, 100, 1.0f).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index.Reset(keys.data(), d, -1, 1.0f).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index.Reset(keys.data(), d, 100, 0.0f).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index.Reset(keys.data(), d, 100, NAN).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index.Reset(nullptr, d, 100, 1.0f).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(index.Reset(keys.data(), d, 100, MaxNorm(keys, d)).ok());
  index.Add(pool, 100);
  DciQueryOptions qo;
  qo.k = 5;
  DciScratch scratch;
  int32_t ids[5];
  float scores[5];
  // limit <= k: every visible key, best first.
  const int f = index.Query(&keys[0], 3, qo, &scratch, ids, scores);
  ASSERT_EQ(f, 3);
  const auto want = TopK(&keys[0], keys, d, 3, 3);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(ids[r], want[r]);
  EXPECT_EQ(index.Query(&keys[0], 0, qo, &scratch, ids, scores), 0);
  // Zero query: all scores tie at 0, smallest ids first.
  std::vector<float> zero(d, 0.0f);
  ASSERT_EQ(index.Query(zero.data(), 100, qo, &scratch, ids, scores), 5);
  for (int r = 0; r < 5; ++r) {
    EXPECT_EQ(ids[r], r);
    EXPECT_EQ(scores[r], 0.0f);
  }
  EXPECT_GT(index.IndexBytes(), 0);
}

}  // namespace
}  // namespace memoria
