#include "engine/span_constraint.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "base/testing.h"
#include "engine/tokenizer.h"

namespace memoria {
namespace {

constexpr int kEos = 1;

// Ids 10..19 begin words, 20..29 continue them.
std::vector<uint8_t> WordStarts() {
  std::vector<uint8_t> starts(32, 0);
  for (int id = 10; id < 20; ++id) starts[id] = 1;
  return starts;
}

std::vector<int> Allowed(const PassageSpanConstraint& c, const std::vector<int>& prefix) {
  std::vector<int> out{-7};  // Allowed clears what was there
  c.Allowed(prefix.data(), static_cast<int64_t>(prefix.size()), &out);
  return out;
}

TEST(PassageSpanConstraintTest, SpansBeginAtWordStartsAndEndAnywhere) {
  // Passage 0: [10 20] [11] [12 21 22] EOS [13] (what follows its EOS is not read).
  // Passage 1: [11 23] [14].
  PassageSpanConstraint c({{10, 20, 11, 12, 21, 22, kEos, 13}, {11, 23, 14}}, WordStarts(), kEos);
  EXPECT_EQ(c.eos_id(), kEos);
  EXPECT_EQ(Allowed(c, {}), (std::vector<int>{10, 11, 12, 14}));  // not 13: after the EOS
  // A prefix may continue with the id after any of its occurrences, or end.
  EXPECT_EQ(Allowed(c, {11}), (std::vector<int>{kEos, 12, 23}));
  EXPECT_EQ(Allowed(c, {10}), (std::vector<int>{kEos, 20}));
  EXPECT_EQ(Allowed(c, {12, 21}), (std::vector<int>{kEos, 22}));  // mid-word end allowed
  EXPECT_EQ(Allowed(c, {12, 21, 22}), (std::vector<int>{kEos}));  // the passage ends
  EXPECT_EQ(Allowed(c, {10, 20, 11, 12}), (std::vector<int>{kEos, 21}));
  // Not spans: a prefix starting mid-word, one crossing passages or the EOS, one not in a passage.
  EXPECT_TRUE(Allowed(c, {20}).empty());
  EXPECT_TRUE(Allowed(c, {22, kEos}).empty());
  EXPECT_TRUE(Allowed(c, {12, 21, 22, kEos}).empty());
  EXPECT_TRUE(Allowed(c, {14, 10}).empty());
  EXPECT_TRUE(Allowed(c, {13}).empty());
}

TEST(PassageSpanConstraintTest, NoPassageOrNoWordStartAllowsNothing) {
  EXPECT_TRUE(Allowed(PassageSpanConstraint({}, WordStarts(), kEos), {}).empty());
  // Ids outside the table (and negative ones) never begin a span.
  PassageSpanConstraint c({{20, 21, 40, -3}}, WordStarts(), kEos);
  EXPECT_TRUE(Allowed(c, {}).empty());
  EXPECT_TRUE(Allowed(c, {40}).empty());
}

// The real LLaMA-2 tokenizer marks word-initial pieces with U+2581.
TEST(WordStartIdsTest, MarksThePiecesThatBeginAWord) {
  MEMORIA_REQUIRE_SHARED();
  auto tokenizer = Tokenizer::Open(testing::SharedPath("models/llama2-tokenizer/tokenizer.model"));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  const std::vector<uint8_t> starts = WordStartIds(**tokenizer);
  ASSERT_EQ(static_cast<int>(starts.size()), (*tokenizer)->vocab_size());
  const std::vector<int> ids = (*tokenizer)->Encode("Denver Broncos won.", false, false);
  std::string marks;
  for (int id : ids) marks += starts[id] ? 'W' : '-';
  // One mark per word ("Denver", "Broncos", "won"), each on the word's first piece; "." and the
  // words' other pieces are not word starts.
  EXPECT_EQ(std::count(marks.begin(), marks.end(), 'W'), 3) << marks;
  EXPECT_EQ(marks.front(), 'W') << marks;
  EXPECT_EQ(marks.back(), '-') << marks;
  EXPECT_EQ(starts[(*tokenizer)->eos_id()], 0);
}

}  // namespace
}  // namespace memoria
