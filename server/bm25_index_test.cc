// Bm25Index (the in-memory index of the evaluation tools): ranking by BM25 (rarer and more
// frequent query words score higher), deterministic ties, replacement and removal.
#include "server/bm25_index.h"

#include <gtest/gtest.h>

namespace memoria {
namespace {

TEST(Bm25IndexTest, RanksThePassageHoldingTheQueryWordsFirst) {
  Bm25Index index;
  index.Upsert("a", "Oxygen", "Oxygen is a chemical element with symbol O and atomic number 8.");
  index.Upsert("b", "Warsaw", "Warsaw is the capital of Poland; Marie Curie was born in Warsaw.");
  index.Upsert("c", "Teacher", "A teacher is a person who helps students to acquire knowledge.");
  ASSERT_EQ(index.size(), 3);
  auto hits = index.Search("Where was Marie Curie born?", 3);
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].id, "b");
  EXPECT_GT(hits[0].score, 0.0f);
  for (size_t i = 1; i < hits.size(); ++i) EXPECT_LE(hits[i].score, hits[i - 1].score);
  // "is" is in every passage: it contributes to a, but the rare "element" decides.
  hits = index.Search("what element is it", 1);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].id, "a");
  EXPECT_TRUE(index.Search("zebra", 5).empty());
}

TEST(Bm25IndexTest, TiesGoToTheSmallerIdAndUpdatesReplace) {
  Bm25Index index;
  index.Upsert("y", "", "same words here");
  index.Upsert("x", "", "same words here");
  auto hits = index.Search("words", 2);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_EQ(hits[0].id, "x");
  EXPECT_EQ(hits[0].score, hits[1].score);
  index.Upsert("x", "", "different text now");  // replaces, not adds
  EXPECT_EQ(index.size(), 2);
  hits = index.Search("words", 2);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].id, "y");
  index.Remove("y");
  index.Remove("unknown");
  EXPECT_TRUE(index.Search("words", 2).empty());
  EXPECT_EQ(index.Search("different", 2).at(0).id, "x");
}

}  // namespace
}  // namespace memoria
