#include "engine/span_constraint.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "base/testing.h"
#include "engine/tokenizer.h"

namespace memoria {
namespace {

constexpr int kEos = 1;

// Ids 10..19 begin words, 20..29 continue them, 30 and 31 are punctuation (and so is any other).
std::vector<uint8_t> Kinds() {
  std::vector<uint8_t> kinds(32, kOtherPiece);
  for (int id = 10; id < 20; ++id) kinds[id] = kBeginsWord;
  for (int id = 20; id < 30; ++id) kinds[id] = kContinuesWord;
  return kinds;
}

std::vector<int> Allowed(const PassageSpanConstraint& c, const std::vector<int>& prefix) {
  std::vector<int> out{-7};  // Allowed clears what was there
  c.Allowed(prefix.data(), static_cast<int64_t>(prefix.size()), &out);
  return out;
}

TEST(PassageSpanConstraintTest, SpansAreWholeWordsOfOnePassage) {
  // Passage 0: [10 20] [11] [12 21 22] . EOS [13] (what follows its EOS is not read).
  // Passage 1: [11 23] [14].
  PassageSpanConstraint c({{10, 20, 11, 12, 21, 22, 30, kEos, 13}, {11, 23, 14}}, Kinds(), kEos);
  EXPECT_EQ(c.eos_id(), kEos);
  EXPECT_EQ(Allowed(c, {}), (std::vector<int>{10, 11, 12, 14}));  // not 13: after the EOS
  // A prefix may continue with the id after any of its occurrences; it may end where one of them
  // is followed by a word start, punctuation or the passage's end.
  EXPECT_EQ(Allowed(c, {11}), (std::vector<int>{kEos, 12, 23}));  // ends in passage 0 only
  EXPECT_EQ(Allowed(c, {10}), (std::vector<int>{20}));             // mid-word: no end
  EXPECT_EQ(Allowed(c, {10, 20}), (std::vector<int>{kEos, 11}));
  EXPECT_EQ(Allowed(c, {12, 21}), (std::vector<int>{22}));
  EXPECT_EQ(Allowed(c, {12, 21, 22}), (std::vector<int>{kEos, 30}));  // before the "."
  EXPECT_EQ(Allowed(c, {12, 21, 22, 30}), (std::vector<int>{kEos}));  // the passage ends
  EXPECT_EQ(Allowed(c, {11, 23}), (std::vector<int>{kEos, 14}));
  EXPECT_EQ(Allowed(c, {11, 23, 14}), (std::vector<int>{kEos}));
  EXPECT_EQ(Allowed(c, {10, 20, 11, 12}), (std::vector<int>{21}));
  // Not spans: a prefix starting mid-word or at punctuation, one crossing passages or the EOS,
  // one not in a passage.
  EXPECT_TRUE(Allowed(c, {20}).empty());
  EXPECT_TRUE(Allowed(c, {30}).empty());
  EXPECT_TRUE(Allowed(c, {30, kEos}).empty());
  EXPECT_TRUE(Allowed(c, {12, 21, 22, 30, kEos}).empty());
  EXPECT_TRUE(Allowed(c, {14, 10}).empty());
  EXPECT_TRUE(Allowed(c, {13}).empty());
}

TEST(PassageSpanConstraintTest, NoPassageOrNoWordStartAllowsNothing) {
  EXPECT_TRUE(Allowed(PassageSpanConstraint({}, Kinds(), kEos), {}).empty());
  // Ids outside the table (and negative ones) are punctuation: they never begin a span.
  PassageSpanConstraint c({{20, 21, 40, -3}}, Kinds(), kEos);
  EXPECT_TRUE(Allowed(c, {}).empty());
  EXPECT_TRUE(Allowed(c, {40}).empty());
}

// The real LLaMA-2 tokenizer: word-initial pieces carry U+2581; "Denver Broncos won 24–10."
// is ▁Den ver ▁Bron cos ▁won ▁ 2 4 – 1 0 . in its pieces (digits are single pieces).
TEST(PieceKindsTest, WordStartsContinuationsAndPunctuation) {
  MEMORIA_REQUIRE_SHARED();
  auto tokenizer = Tokenizer::Open(testing::SharedPath("models/llama2-tokenizer/tokenizer.model"));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  const std::vector<uint8_t> kinds = PieceKinds(**tokenizer);
  ASSERT_EQ(static_cast<int>(kinds.size()), (*tokenizer)->vocab_size());
  const std::vector<int> ids = (*tokenizer)->Encode("Denver Broncos won 24\u201310.", false, false);
  std::string marks, pieces;
  for (int id : ids) {
    marks += kinds[id] == kBeginsWord ? 'W' : kinds[id] == kContinuesWord ? 'c' : '.';
    pieces += (*tokenizer)->IdToPiece(id) + " ";
  }
  EXPECT_EQ(marks, "WcWcWWcc.cc.") << pieces;
  EXPECT_EQ(kinds[(*tokenizer)->eos_id()], kOtherPiece);
  ASSERT_EQ((*tokenizer)->IdToPiece(13), "<0x0A>");  // byte-fallback pieces are not words
  EXPECT_EQ(kinds[13], kOtherPiece);
}

}  // namespace
}  // namespace memoria
