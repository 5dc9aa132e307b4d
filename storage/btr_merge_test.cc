#include "storage/btr_merge.h"

#include <gtest/gtest.h>

#include <random>

#include "base/testing.h"

namespace memoria {
namespace {

constexpr int64_t kDim = 60;  // not a multiple of 8: padding bits must stay 0 through merging

std::vector<float> Gaussian(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = g(rng);
  return x;
}

std::unique_ptr<Codec> Calibrated(const std::string& text) {
  auto codec = std::move(CreateCodec(*CodecSpec::Parse(text, kDim))).value();
  const auto x = Gaussian(500 * kDim, 1);
  EXPECT_TRUE(codec->Train(ThreadPool(1), 500, x.data(), kDim, {}, nullptr).ok());
  return codec;
}

std::string Encode(const Codec& codec, const std::vector<float>& x) {
  const int64_t n = int64_t(x.size()) / kDim;
  std::string codes(size_t(codec.code_size(n)), '\0');
  EXPECT_TRUE(codec.Encode(ThreadPool(1), n, x.data(), kDim, reinterpret_cast<uint8_t*>(codes.data())).ok());
  return codes;
}

std::vector<float> Decode(const Codec& codec, int64_t n, const std::string& codes) {
  std::vector<float> x(static_cast<size_t>(n * kDim));
  EXPECT_TRUE(codec.Decode(ThreadPool(1), n, reinterpret_cast<const uint8_t*>(codes.data()),
                           int64_t(codes.size()), x.data(), kDim).ok());
  return x;
}

StatusOr<BtrMergedPassage> Merge(const Codec& codec, int64_t n, const std::string& codes, double ratio) {
  return BtrMergeTokens(codec, n, reinterpret_cast<const uint8_t*>(codes.data()), int64_t(codes.size()), ratio);
}

// A passage whose odd tokens repeat the preceding even token with small noise: the matching must
// pair exactly those, and merging them loses almost nothing.
TEST(BtrMergeTest, MergesNearDuplicatePairsAndKeepsTheMap) {
  for (const std::string spec : {"btr", "btr:scale=f32"}) {
    SCOPED_TRACE(spec);
    auto codec = Calibrated(spec);
    const int64_t n = 20;
    auto x = Gaussian(n * kDim, 2);
    const auto noise = Gaussian(n * kDim, 3);
    for (int64_t t = 1; t < n; t += 2) {
      for (int64_t j = 0; j < kDim; ++j) x[t * kDim + j] = x[(t - 1) * kDim + j] + 0.01f * noise[t * kDim + j];
    }
    const std::string codes = Encode(*codec, x);
    auto merged = Merge(*codec, n, codes, 0.5);
    ASSERT_TRUE(merged.ok()) << merged.status().ToString();
    EXPECT_EQ(merged->num_tokens, n);
    EXPECT_EQ(merged->merged_tokens, n / 2);
    EXPECT_EQ(int64_t(merged->codes.size()), codec->code_size(n / 2));
    for (int64_t t = 0; t < n; ++t) EXPECT_EQ(merged->merge_map[t], uint32_t(t / 2)) << t;

    std::vector<float> restored(static_cast<size_t>(n * kDim));
    const auto rows = Decode(*codec, merged->merged_tokens, merged->codes);
    ASSERT_TRUE(BtrUnmerge(merged->merge_map, merged->merged_tokens, kDim, rows.data(), restored.data()).ok());
    const auto unmerged = Decode(*codec, n, codes);
    const double merged_err = testing::Nmse(restored.data(), x.data(), long(x.size()));
    const double plain_err = testing::Nmse(unmerged.data(), x.data(), long(x.size()));
    EXPECT_LT(merged_err, plain_err + 0.02) << "plain " << plain_err << ", merged " << merged_err;
  }
}

// On unrelated tokens at BTR's ratio 0.2: the token count drops by floor(0.2 n), every merged row
// is used, untouched tokens keep their exact codes, and merging costs accuracy (it is lossy).
TEST(BtrMergeTest, RatioControlsTheTokenCountAndUntouchedTokensAreExact) {
  auto codec = Calibrated("btr");
  const int64_t n = 37;
  const auto x = Gaussian(n * kDim, 4);
  const std::string codes = Encode(*codec, x);
  auto merged = Merge(*codec, n, codes, 0.2);
  ASSERT_TRUE(merged.ok());
  EXPECT_EQ(merged->merged_tokens, n - 7);  // floor(0.2 * 37) = 7
  std::vector<int> count(size_t(merged->merged_tokens), 0);
  for (uint32_t r : merged->merge_map) ++count.at(r);
  const auto rows = Decode(*codec, merged->merged_tokens, merged->codes);
  const auto plain = Decode(*codec, n, codes);
  int singles = 0;
  for (int64_t t = 0; t < n; ++t) {
    const uint32_t r = merged->merge_map[t];
    if (count[r] != 1) continue;
    ++singles;
    for (int64_t j = 0; j < kDim; ++j) ASSERT_EQ(rows[r * kDim + j], plain[t * kDim + j]) << t;
  }
  EXPECT_GE(singles, int(n - 2 * 7));
  for (int c : count) EXPECT_GE(c, 1);
  // Kept tokens stay in their original order: rows of untouched tokens increase with position.
  int64_t last = -1;
  for (int64_t t = 0; t < n; ++t) {
    const uint32_t r = merged->merge_map[t];
    if (count[r] != 1) continue;
    EXPECT_GT(int64_t(r), last) << t;
    last = r;
  }

  auto none = Merge(*codec, n, codes, 0.0);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->merged_tokens, n);
  EXPECT_EQ(none->codes, codes);
}

TEST(BtrMergeTest, BlobRoundTrips) {
  auto codec = Calibrated("btr");
  const int64_t n = 16;
  const std::string codes = Encode(*codec, Gaussian(n * kDim, 5));
  auto merged = Merge(*codec, n, codes, 0.25);
  ASSERT_TRUE(merged.ok());
  const std::string blob = EncodeBtrMergedPassage(*merged);
  EXPECT_EQ(blob.size(), size_t(8 + 4 * n + codec->code_size(merged->merged_tokens)));
  auto back = DecodeBtrMergedPassage(*codec, blob);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->num_tokens, n);
  EXPECT_EQ(back->merged_tokens, merged->merged_tokens);
  EXPECT_EQ(back->merge_map, merged->merge_map);
  EXPECT_EQ(back->codes, merged->codes);
}

TEST(BtrMergeTest, MalformedOrCorruptBlobsAreDataLoss) {
  auto codec = Calibrated("btr");
  const int64_t n = 16;
  auto merged = Merge(*codec, n, Encode(*codec, Gaussian(n * kDim, 6)), 0.25);
  ASSERT_TRUE(merged.ok());
  const std::string blob = EncodeBtrMergedPassage(*merged);
  auto expect_loss = [&](const std::string& bad, const std::string& what) {
    auto r = DecodeBtrMergedPassage(*codec, bad);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << what << ": " << r.status().ToString();
  };
  expect_loss(blob.substr(0, 5), "shorter than the header");
  expect_loss(blob.substr(0, blob.size() - 1), "truncated codes");
  expect_loss(blob + "x", "trailing byte");
  std::string bad = blob;
  bad[8 + 4 * 3] = char(0x7f);  // map entry 3 -> 127 >= m
  expect_loss(bad, "map entry out of range");
  bad = blob;
  bad[4] = char(n + 1);  // m > n
  expect_loss(bad, "more merged rows than tokens");
  bad = blob;
  for (int64_t t = 0; t < n; ++t) bad[8 + 4 * t] = 0;  // every token -> row 0: other rows unused
  expect_loss(bad, "unreferenced merged row");
}

TEST(BtrMergeTest, MalformedArgumentsAreRejected) {
  auto btr = Calibrated("btr");
  const std::string codes = Encode(*btr, Gaussian(4 * kDim, 7));
  EXPECT_EQ(Merge(*btr, 4, codes, 1.0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Merge(*btr, 4, codes, -0.1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Merge(*btr, 5, codes, 0.2).status().code(), StatusCode::kInvalidArgument);
  auto none = std::move(CreateCodec(*CodecSpec::Parse("none", kDim))).value();
  EXPECT_EQ(Merge(*none, 4, std::string(size_t(none->code_size(4)), '\0'), 0.2).status().code(),
            StatusCode::kInvalidArgument);
  auto untrained = std::move(CreateCodec(*CodecSpec::Parse("btr", kDim))).value();
  EXPECT_EQ(Merge(*untrained, 4, codes, 0.2).status().code(), StatusCode::kInvalidArgument);
  std::vector<float> out(2 * kDim), rows(kDim);
  EXPECT_EQ(BtrUnmerge({0, 1}, 1, kDim, rows.data(), out.data()).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace memoria
