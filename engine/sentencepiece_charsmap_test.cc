#include "engine/sentencepiece_charsmap.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "base/testing.h"
#include "engine/tokenizer.h"

namespace memoria {
namespace {

std::string Varint(uint64_t v) {
  std::string out;
  do {
    out += static_cast<char>((v & 0x7F) | (v >= 0x80 ? 0x80 : 0));
    v >>= 7;
  } while (v != 0);
  return out;
}

// A length-delimited protobuf field.
std::string BytesField(int field, const std::string& payload) {
  return Varint(static_cast<uint64_t>(field) << 3 | 2) + Varint(payload.size()) + payload;
}

// ModelProto bytes holding only normalizer_spec { precompiled_charsmap: blob }.
std::string WithNormalizer(const std::string& blob) { return BytesField(3, BytesField(2, blob)); }

std::string Blob(const std::vector<uint32_t>& units, const std::string& strings) {
  std::string blob(4 + units.size() * 4, '\0');
  const uint32_t trie_bytes = static_cast<uint32_t>(units.size() * 4);
  std::memcpy(blob.data(), &trie_bytes, 4);
  std::memcpy(blob.data() + 4, units.data(), units.size() * 4);
  return blob + strings;
}

// A darts-clone trie of one key, "A" -> offset 0 of the strings "a\0": root (unit 0) with its
// children at base 256, the child 256 ^ 'A' = 321 labelled 'A' with a leaf, whose value sits at
// its own base 321 ^ 65 = 256 (label bit 31 set, so it never matches an input byte).
std::vector<uint32_t> OneKeyTrie() {
  std::vector<uint32_t> units(512, 0);
  units[0] = 256u << 10;                          // offset 256
  units[321] = (65u << 10) | (1u << 8) | 'A';     // offset 65, has_leaf, label 'A'
  units[256] = (1u << 31) | 0u;                   // value 0
  return units;
}

TEST(SentencePieceCharsMapTest, AcceptsAWellFormedTrieAndNoTable) {
  EXPECT_TRUE(CheckSentencePieceCharsMaps("").ok());
  EXPECT_TRUE(CheckSentencePieceCharsMaps(WithNormalizer("")).ok());
  Status ok = CheckSentencePieceCharsMaps(WithNormalizer(Blob(OneKeyTrie(), std::string("a\0", 2))));
  EXPECT_TRUE(ok.ok()) << ok.ToString();
}

TEST(SentencePieceCharsMapTest, RefusesTablesWhoseLookupsLeaveThem) {
  const std::string strings("a\0", 2);
  auto expect_loss = [](const std::string& model, const std::string& words) {
    Status s = CheckSentencePieceCharsMaps(model);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << words;
    EXPECT_NE(s.message().find(words), std::string::npos) << s.message();
  };
  expect_loss(WithNormalizer("abc"), "shorter than its 4-byte trie size");
  expect_loss(WithNormalizer(std::string("\x00\x00\x00\x00\x18\x01", 6)), "trie of no units");
  std::string past = Blob(OneKeyTrie(), strings);
  past[1] = 0x10;  // trie size 4096 + 2048
  expect_loss(WithNormalizer(past), "past the table's end");
  std::vector<uint32_t> units = OneKeyTrie();
  units.resize(256);  // the root's children block (256..511) is gone
  expect_loss(WithNormalizer(Blob(units, strings)), "unit 0 reads units 256..511 of 256");
  units = OneKeyTrie();
  units[256] = (1u << 31) | 7u;  // offset 7 of 2 bytes of strings
  expect_loss(WithNormalizer(Blob(units, strings)), "maps to string offset 7 of 2 bytes");
  units = OneKeyTrie();
  units[321] = (100000u << 10) | (1u << 8) | 'A';  // its leaf at 321 ^ 100000
  expect_loss(WithNormalizer(Blob(units, strings)), "unit 321 has its value at unit 100321 of 512");
  expect_loss(WithNormalizer(Blob(OneKeyTrie(), "a")), "not NUL-terminated");
  // The denormalizer's table (field 5) is checked too, and a later normalizer spec wins.
  expect_loss(BytesField(5, BytesField(2, "xy")), "denormalizer");
  expect_loss(WithNormalizer(Blob(OneKeyTrie(), strings)) + WithNormalizer("xy"), "normalizer");
  // Truncated protobuf where the specs are.
  expect_loss(std::string("\x1a\x05\x12", 3), "malformed protobuf");
}

// The library reads the table as checked: a real model with the one-key table appended (a later
// normalizer spec replaces the model's) normalizes "A" to "a"; with a broken table it is refused.
TEST(SentencePieceCharsMapTest, TokenizerOpenChecksTheTablesTheLibraryUses) {
  const std::string model = testing::ReadFile(testing::SourceDir() + "/models/squad-reader/spiece.model");
  ASSERT_FALSE(model.empty());
  const std::string dir = testing::MakeTempDir("charsmap");
  const std::string strings("a\0", 2);

  testing::WriteFile(dir + "/good.model", model + WithNormalizer(Blob(OneKeyTrie(), strings)));
  auto good = Tokenizer::Open(dir + "/good.model");
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  auto plain = Tokenizer::Open(testing::SourceDir() + "/models/squad-reader/spiece.model");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ((*good)->Encode("A", false, false), (*plain)->Encode("a", false, false));
  EXPECT_NE((*plain)->Encode("A", false, false), (*plain)->Encode("a", false, false));

  std::vector<uint32_t> units = OneKeyTrie();
  units[256] = (1u << 31) | 9u;
  testing::WriteFile(dir + "/bad.model", model + WithNormalizer(Blob(units, strings)));
  auto bad = Tokenizer::Open(dir + "/bad.model");
  EXPECT_EQ(bad.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("bad.model"), std::string::npos) << bad.status().ToString();
}

}  // namespace
}  // namespace memoria
