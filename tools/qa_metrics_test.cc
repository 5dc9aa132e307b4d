// SQuAD v1.1 normalisation, exact match and F1. Expected values were computed by hand and agree
// with the official evaluate-v1.1.py (normalize_answer / f1_score) on the same strings.
#include "tools/qa_metrics.h"

#include <gtest/gtest.h>

namespace memoria {
namespace {

TEST(QaMetricsTest, NormalizesLikeTheOfficialScript) {
  EXPECT_EQ(NormalizeSquadAnswer("The Denver Broncos!"), "denver broncos");
  EXPECT_EQ(NormalizeSquadAnswer("THE   end.\t"), "end");
  EXPECT_EQ(NormalizeSquadAnswer("an apple a day"), "apple day");
  EXPECT_EQ(NormalizeSquadAnswer(""), "");
  // Articles only as whole words.
  EXPECT_EQ(NormalizeSquadAnswer("theater"), "theater");
  EXPECT_EQ(NormalizeSquadAnswer("thé"), "thé");
}

TEST(QaMetricsTest, PunctuationIsDeletedBeforeArticlesAreRemoved) {
  EXPECT_EQ(NormalizeSquadAnswer("U.S. Army"), "us army");  // deleted, not replaced by a space
  EXPECT_EQ(NormalizeSquadAnswer("1,000"), "1000");
  EXPECT_EQ(NormalizeSquadAnswer("A-team"), "ateam");  // "a-team" -> "ateam": no article left
  EXPECT_EQ(NormalizeSquadAnswer("l'an"), "lan");
  EXPECT_EQ(NormalizeSquadAnswer("the_a"), "thea");  // '_' is punctuation in string.punctuation
}

TEST(QaMetricsTest, UnicodeLowerCaseSpacesAndPunctuation) {
  EXPECT_EQ(NormalizeSquadAnswer("\u00c7a   va\u00a0bien"), "\u00e7a va bien");  // NBSP splits
  EXPECT_EQ(NormalizeSquadAnswer("\u0130stanbul"), "i\u0307stanbul");  // Python's lower()
  EXPECT_EQ(NormalizeSquadAnswer("\u00c9COLE \u0176 \u03a3\u039f\u03a6\u038a\u0391 "
                                 "\u041c\u043e\u0441\u043a\u0432\u0430"),
            "\u00e9cole \u0177 \u03c3\u03bf\u03c6\u03af\u03b1 \u043c\u043e\u0441\u043a\u0432\u0430");
  // Unicode punctuation is not deleted, but it bounds words, so the articles go.
  EXPECT_EQ(NormalizeSquadAnswer("the\u2013the"), "\u2013");
  EXPECT_EQ(NormalizeSquadAnswer("\u201cthe answer\u201d"), "\u201c answer\u201d");
  // Superscript two is a word character (Python: isalnum): no article there.
  EXPECT_EQ(NormalizeSquadAnswer("a\u00b2 the\u00b2"), "a\u00b2 the\u00b2");
  // Invalid UTF-8 bytes pass through.
  EXPECT_EQ(NormalizeSquadAnswer("X\xff Y"), "x\xff y");
}

TEST(QaMetricsTest, ExactMatchAndF1) {
  EXPECT_EQ(SquadExactMatch("the Denver Broncos", "Denver Broncos."), 1.0);
  EXPECT_EQ(SquadExactMatch("Denver", "Denver Broncos"), 0.0);
  EXPECT_DOUBLE_EQ(SquadF1("Denver Broncos", "Broncos"), 2.0 / 3.0);  // P 1/2, R 1
  EXPECT_DOUBLE_EQ(SquadF1("the cat cat", "cat sat"), 0.5);  // one "cat" overlaps: P = R = 1/2
  EXPECT_DOUBLE_EQ(SquadF1("Broncos Denver", "Denver Broncos"), 1.0);
  EXPECT_EQ(SquadF1("Denver", "Carolina"), 0.0);
  // v1.1's quirk: two answers that normalise to nothing match exactly but have F1 0.
  EXPECT_EQ(SquadExactMatch("the", "a"), 1.0);
  EXPECT_EQ(SquadF1("the", "a"), 0.0);
}

TEST(QaMetricsTest, ScoreIsTheMaximumOverGoldAnswers) {
  const QaScore s = ScoreSquadAnswer("Santa Clara, California",
                                     {"Levi's Stadium", "Santa Clara", "Santa Clara, California."});
  EXPECT_EQ(s.exact_match, 1.0);
  EXPECT_EQ(s.f1, 1.0);
  const QaScore partial = ScoreSquadAnswer("Denver Broncos team", {"Broncos", "Denver Broncos"});
  EXPECT_EQ(partial.exact_match, 0.0);
  EXPECT_DOUBLE_EQ(partial.f1, 0.8);  // vs "denver broncos": P 2/3, R 1
  const QaScore none = ScoreSquadAnswer("anything", {});
  EXPECT_EQ(none.exact_match, 0.0);
  EXPECT_EQ(none.f1, 0.0);
}

}  // namespace
}  // namespace memoria
