// BM25 terms and ranking (storage/bm25.h), checked against hand-computed scores.
#include "storage/bm25.h"

#include <gtest/gtest.h>

#include <cmath>

namespace memoria {
namespace {

TEST(Bm25Test, TermsAreLowercasedAlphanumericRunsOfAtMost64Bytes) {
  EXPECT_EQ(Bm25Terms("Warsaw's 1st-class, ÉCOLE!"),
            (std::vector<std::string>{"warsaw", "s", "1st", "class", "cole"}));
  EXPECT_TRUE(Bm25Terms(" ,.; ").empty());
  const auto long_run = Bm25Terms(std::string(100, 'A') + " b");
  ASSERT_EQ(long_run.size(), 2u);
  EXPECT_EQ(long_run[0], std::string(kMaxBm25TermBytes, 'a'));
  EXPECT_EQ(long_run[1], "b");
  const Bm25Doc doc = Bm25Analyze("The Title", "the text, THE end");
  EXPECT_EQ(doc.length, 6);
  EXPECT_EQ(doc.tf.at("the"), 3);
  EXPECT_EQ(doc.tf.at("title"), 1);
}

TEST(Bm25Test, RankMatchesTheFormulaAndBreaksTiesById) {
  // 4 passages of 10 words on average; the term is in 2 of them.
  const int64_t docs = 4, total = 40;
  const std::vector<std::vector<Bm25Posting>> postings = {{{"b", 2, 5}, {"a", 1, 10}}};
  const auto hits = Bm25Rank(postings, docs, total, 5);
  ASSERT_EQ(hits.size(), 2u);
  const double idf = std::log(1.0 + (4 - 2 + 0.5) / (2 + 0.5));
  const double b = idf * 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 5 / 10.0));
  const double a = idf * 1 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 10 / 10.0));
  EXPECT_EQ(hits[0].id, "b");
  EXPECT_NEAR(hits[0].score, b, 1e-6);
  EXPECT_NEAR(hits[1].score, a, 1e-6);
  EXPECT_EQ(Bm25Rank(postings, docs, total, 1).size(), 1u);
  EXPECT_TRUE(Bm25Rank(postings, docs, total, 0).empty());
  EXPECT_TRUE(Bm25Rank(postings, 0, 0, 3).empty());
  // Equal scores: the smaller id first.
  const auto tied = Bm25Rank({{{"y", 1, 3}, {"x", 1, 3}}}, 3, 9, 2);
  ASSERT_EQ(tied.size(), 2u);
  EXPECT_EQ(tied[0].id, "x");
  EXPECT_EQ(tied[0].score, tied[1].score);
}

}  // namespace
}  // namespace memoria
