#include "storage/btr_merge.h"

#include <gtest/gtest.h>

#include <algorithm>
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
  const std::string blob = EncodeBtrMergedPassage(*merged).value();
  // 16 tokens, 4 merged: 8-byte header, 1 byte of flags for 8 A tokens, 4 u16 partners.
  ASSERT_EQ(merged->merged_tokens, 12);
  EXPECT_EQ(blob.size(), size_t(8 + 1 + 2 * 4 + codec->code_size(12)));
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
  const std::string blob = EncodeBtrMergedPassage(*merged).value();
  ASSERT_EQ(merged->merged_tokens, 12);  // flags at byte 8, partners at 9..16
  auto expect_loss = [&](const std::string& bad, const std::string& what) {
    auto r = DecodeBtrMergedPassage(*codec, bad);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << what << ": " << r.status().ToString();
  };
  expect_loss(blob.substr(0, 5), "shorter than the header");
  expect_loss(blob.substr(0, blob.size() - 1), "truncated codes");
  expect_loss(blob + "x", "trailing byte");
  std::string bad = blob;
  bad[9] = char(8);  // first partner: B token 8 of 8
  expect_loss(bad, "partner out of range");
  bad = blob;
  bad[4] = char(n + 1);  // m > n
  expect_loss(bad, "more merged rows than tokens");
  bad = blob;
  bad[4] = char(13);  // m = 13 but 4 tokens flagged as merged
  expect_loss(bad, "rows inconsistent with the flags");
  bad = blob;
  bad[8] = char(uint8_t(bad[8]) ^ 0x01);  // one more or one fewer merged A token: sizes do not add up
  expect_loss(bad, "flag flipped");
  bad = blob;
  bad[0] = char(0x01);
  bad[1] = char(0x20);  // n = 8193 > kMaxBtrMergeTokens
  expect_loss(bad, "too many tokens");
  // A 3-token passage has 2 A tokens: a flag for a third is outside.
  BtrMergedPassage three{3, 3, {0, 1, 2}, std::string(size_t(codec->code_size(3)), '\0')};
  bad = EncodeBtrMergedPassage(three).value();
  bad[8] = char(0x04);
  expect_loss(bad, "flag past the A tokens");
}

TEST(BtrMergeTest, EncodingRejectsMapsThatAreNotAMatching) {
  auto codec = Calibrated("btr");
  // Tokens 1 and 3 (both B) sharing a row, rows out of token order, an A token as a group's root.
  for (const auto& map : {std::vector<uint32_t>{0, 1, 2, 1}, std::vector<uint32_t>{1, 0, 2, 3},
                          std::vector<uint32_t>{0, 1, 0}}) {
    const int64_t n = int64_t(map.size()), m = *std::max_element(map.begin(), map.end()) + 1;
    BtrMergedPassage p{n, m, map, std::string(size_t(codec->code_size(m)), '\0')};
    EXPECT_EQ(EncodeBtrMergedPassage(p).status().code(), StatusCode::kInvalidArgument) << n;
  }
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

// The codec with merge = r stores merged passages itself (EncodePassage/DecodePassage, what the
// passage store calls): the blob is the merged layout, smaller than the plain codes by the
// formula in codec.h, and decodes to exactly what merging + unmerging by hand gives.
TEST(BtrMergeTest, MergingCodecStoresMergedPassageBlobs) {
  auto plain = Calibrated("btr");
  auto merging = std::move(CreateCodec(*CodecSpec::Parse("btr:merge=0.25", kDim))).value();
  ASSERT_TRUE(merging->LoadState(plain->SerializeState()).ok());
  EXPECT_FALSE(merging->fixed_size_blobs());
  const ThreadPool pool(2);
  for (int64_t n : {0, 1, 2, 7, 40}) {
    SCOPED_TRACE(n);
    const auto x = Gaussian(n * kDim, 10 + n);
    std::string blob;
    ASSERT_TRUE(merging->EncodePassage(pool, n, x.data(), kDim, &blob).ok());
    const std::string codes = Encode(*plain, x);
    auto by_hand = Merge(*plain, n, codes, 0.25);
    ASSERT_TRUE(by_hand.ok()) << by_hand.status().ToString();
    EXPECT_EQ(blob, EncodeBtrMergedPassage(*by_hand).value());
    const int64_t m = by_hand->merged_tokens;
    EXPECT_EQ(m, n - std::min<int64_t>(int64_t(0.25 * double(n)), (n + 1) / 2 * (n >= 2)));
    EXPECT_EQ(int64_t(blob.size()), 8 + ((n + 1) / 2 + 7) / 8 + 2 * (n - m) + m * plain->spec().BytesPerToken());

    // Decode into rows wider than d (ldx > dim): each token gets its merged row.
    const int64_t ldx = kDim + 3;
    std::vector<float> out(static_cast<size_t>(n * ldx), -7.0f);
    ASSERT_TRUE(merging->DecodePassage(pool, n, reinterpret_cast<const uint8_t*>(blob.data()),
                                       int64_t(blob.size()), out.data(), ldx).ok());
    const auto rows = Decode(*plain, m, by_hand->codes);
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t j = 0; j < kDim; ++j) {
        ASSERT_EQ(out[t * ldx + j], rows[by_hand->merge_map[t] * kDim + j]) << t << "," << j;
      }
      EXPECT_EQ(out[t * ldx + kDim], -7.0f);  // padding of the row untouched
    }
  }
}

TEST(BtrMergeTest, MergingCodecRejectsBlobsOfOtherPassages) {
  auto merging = Calibrated("btr:merge=0.25");
  const ThreadPool pool(1);
  const int64_t n = 12;
  const auto x = Gaussian(n * kDim, 5);
  std::string blob;
  ASSERT_TRUE(merging->EncodePassage(pool, n, x.data(), kDim, &blob).ok());
  std::vector<float> out(static_cast<size_t>((n + 1) * kDim));
  auto decode = [&](int64_t tokens, const std::string& b) {
    return merging->DecodePassage(pool, tokens, reinterpret_cast<const uint8_t*>(b.data()), int64_t(b.size()),
                                  out.data(), kDim);
  };
  ASSERT_TRUE(decode(n, blob).ok());
  // The value header says 13 tokens, the blob holds 12.
  const Status wrong_n = decode(n + 1, blob);
  EXPECT_EQ(wrong_n.code(), StatusCode::kDataLoss);
  EXPECT_NE(wrong_n.message().find("holds 12 tokens, expected 13"), std::string::npos) << wrong_n.ToString();
  // Truncated, and plain codes where a merged blob belongs.
  EXPECT_EQ(decode(n, blob.substr(0, blob.size() - 1)).code(), StatusCode::kDataLoss);
  auto plain = Calibrated("btr");
  EXPECT_EQ(decode(n, Encode(*plain, x)).code(), StatusCode::kDataLoss);
  // A passage too long for the matching's distance matrix is refused, not allocated.
  std::string big;
  EXPECT_EQ(merging->EncodePassage(pool, 8193, std::vector<float>(8193 * kDim).data(), kDim, &big).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace memoria
