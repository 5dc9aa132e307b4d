#include "base/utf8.h"

#include <gtest/gtest.h>

#include <string>

namespace memoria {
namespace {

TEST(Utf8, SequenceLengthFollowsTheLeadByte) {
  EXPECT_EQ(Utf8SequenceLength('a'), 1);
  EXPECT_EQ(Utf8SequenceLength(0xC3), 2);
  EXPECT_EQ(Utf8SequenceLength(0xE2), 3);
  EXPECT_EQ(Utf8SequenceLength(0xF0), 4);
  EXPECT_EQ(Utf8SequenceLength(0x80), 1);  // continuation byte
  EXPECT_EQ(Utf8SequenceLength(0xFF), 1);
}

TEST(Utf8, DecodesEveryLength) {
  // "a", U+00E9, U+2581 (SentencePiece's space), U+1F600.
  const std::string s = "a\xC3\xA9\xE2\x96\x81\xF0\x9F\x98\x80";
  char32_t cp = 0;
  ASSERT_EQ(DecodeUtf8At(s, 0, &cp), 1);
  EXPECT_EQ(cp, U'a');
  ASSERT_EQ(DecodeUtf8At(s, 1, &cp), 2);
  EXPECT_EQ(cp, U'\u00E9');
  ASSERT_EQ(DecodeUtf8At(s, 3, &cp), 3);
  EXPECT_EQ(cp, U'\u2581');
  ASSERT_EQ(DecodeUtf8At(s, 6, &cp), 4);
  EXPECT_EQ(cp, U'\U0001F600');
  EXPECT_EQ(DecodeUtf8At(s, s.size(), &cp), 0);
}

TEST(Utf8, RejectsMalformedSequences) {
  char32_t cp = 0x1234;
  EXPECT_EQ(DecodeUtf8At("\x80", 0, &cp), 0);              // continuation byte first
  EXPECT_EQ(DecodeUtf8At("\xC3", 0, &cp), 0);              // truncated
  EXPECT_EQ(DecodeUtf8At("\xE2\x96", 0, &cp), 0);          // truncated
  EXPECT_EQ(DecodeUtf8At("\xC3(", 0, &cp), 0);             // bad continuation
  EXPECT_EQ(DecodeUtf8At("\xC0\xAF", 0, &cp), 0);          // overlong '/'
  EXPECT_EQ(DecodeUtf8At("\xE0\x80\xAF", 0, &cp), 0);      // overlong '/'
  EXPECT_EQ(DecodeUtf8At("\xED\xA0\x80", 0, &cp), 0);      // surrogate U+D800
  EXPECT_EQ(DecodeUtf8At("\xF4\x90\x80\x80", 0, &cp), 0);  // U+110000
  EXPECT_EQ(DecodeUtf8At("\xF8\x88\x80\x80\x80", 0, &cp), 0);
  EXPECT_EQ(cp, 0x1234u);  // untouched on failure
}

}  // namespace
}  // namespace memoria
