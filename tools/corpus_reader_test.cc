#include "tools/corpus_reader.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/testing.h"

namespace memoria {
namespace {

std::string WriteFile(const std::string& name, const std::string& content) {
  const std::string path = testing::MakeTempDir("corpus") + "/" + name;
  std::ofstream(path) << content;
  return path;
}

TEST(CorpusReaderTest, ReadsJsonlWithOptionalTitleAndIntegerIds) {
  const std::string path = WriteFile("c.jsonl",
                                     "{\"id\": \"a\", \"title\": \"T\", \"text\": \"hello\"}\n"
                                     "\n"
                                     "{\"id\": 7, \"text\": \"world\"}\n");
  auto c = ReadCorpus(path, CorpusFormat::kAuto, 0);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->size(), 2u);
  EXPECT_EQ((*c)[0].id, "a");
  EXPECT_EQ((*c)[0].title, "T");
  EXPECT_EQ((*c)[0].text, "hello");
  EXPECT_EQ((*c)[1].id, "7");
  EXPECT_EQ((*c)[1].title, "");
  auto limited = ReadCorpus(path, CorpusFormat::kJsonl, 1);
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(limited->size(), 1u);
}

TEST(CorpusReaderTest, MalformedJsonlLineIsNamed) {
  const std::string path = WriteFile("c.jsonl", "{\"id\": \"a\", \"text\": \"x\"}\n{\"id\": \"b\", \"te\n");
  auto c = ReadCorpus(path, CorpusFormat::kJsonl, 0);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("c.jsonl:2"), std::string::npos) << c.status().ToString();
}

TEST(CorpusReaderTest, MalformedJsonlFieldsAreRejected) {
  for (const std::string line : {"{\"text\": \"x\"}", "{\"id\": \"a\"}", "{\"id\": [1], \"text\": \"x\"}",
                                  "{\"id\": \"a\", \"text\": 3}", "{\"id\": \"\", \"text\": \"x\"}",
                                  "{\"id\": \"a\", \"title\": 5, \"text\": \"x\"}", "[1, 2]"}) {
    SCOPED_TRACE(line);
    auto c = ReadCorpus(WriteFile("c.jsonl", line + "\n"), CorpusFormat::kJsonl, 0);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(CorpusReaderTest, RepeatedIdNamesBothLines) {
  const std::string path = WriteFile("c.jsonl",
                                     "{\"id\": \"a\", \"text\": \"x\"}\n{\"id\": \"a\", \"text\": \"y\"}\n");
  auto c = ReadCorpus(path, CorpusFormat::kJsonl, 0);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("c.jsonl:2"), std::string::npos);
  EXPECT_NE(c.status().message().find("c.jsonl:1"), std::string::npos);
}

TEST(CorpusReaderTest, ReadsSquadParagraphsAsPassages) {
  MEMORIA_REQUIRE_SHARED();
  const std::string path = testing::SharedPath("data/qa/squad-v1.1-dev-part1.json");
  auto c = ReadCorpus(path, CorpusFormat::kAuto, 5);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->size(), 5u);
  EXPECT_EQ((*c)[0].id, "Super_Bowl_50/0");
  EXPECT_EQ((*c)[0].title, "Super Bowl 50");
  EXPECT_EQ((*c)[0].text.rfind("Super Bowl 50 was an American football game", 0), 0u);
  EXPECT_EQ((*c)[4].id, "Super_Bowl_50/4");
  auto all = ReadCorpus(path, CorpusFormat::kSquad, 0);
  ASSERT_TRUE(all.ok());
  EXPECT_GT(all->size(), 100u);
}

TEST(CorpusReaderTest, MalformedSquadIsRejected) {
  for (const std::string doc : {"{\"version\": 1}", "{\"data\": [{\"paragraphs\": []}]}",
                                 "{\"data\": [{\"title\": \"t\", \"paragraphs\": [{\"qas\": []}]}]}",
                                 "{\"data\": [", "[]"}) {
    SCOPED_TRACE(doc);
    auto c = ReadCorpus(WriteFile("s.json", doc), CorpusFormat::kAuto, 0);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(CorpusReaderTest, MissingFileAndUnknownFormat) {
  EXPECT_EQ(ReadCorpus("/nonexistent/c.jsonl", CorpusFormat::kAuto, 0).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(ParseCorpusFormat("csv").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseCorpusFormat("squad"), CorpusFormat::kSquad);
}

TEST(CorpusReaderTest, WindowsCoverEveryWordWithOverlap) {
  // 10 words, windows of 4 every 2: starts 0, 2, 4 and the tail run 6..9.
  const std::vector<CorpusPassage> in = {
      {"p", "T", "  w0 w1  w2\tw3 w4 w5 w6 w7 w8 w9 "}, {"short", "", "a b"}, {"empty", "", "  "}};
  auto out = WindowPassages(in, 4, 2);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->size(), 5u);
  EXPECT_EQ((*out)[0].id, "p#w0");
  EXPECT_EQ((*out)[0].text, "w0 w1  w2\tw3");  // the passage's own spacing
  EXPECT_EQ((*out)[0].title, "T");
  EXPECT_EQ((*out)[1].id, "p#w2");
  EXPECT_EQ((*out)[1].text, "w2\tw3 w4 w5");
  EXPECT_EQ((*out)[2].id, "p#w4");
  EXPECT_EQ((*out)[3].id, "p#w6");
  EXPECT_EQ((*out)[3].text, "w6 w7 w8 w9");
  EXPECT_EQ((*out)[4].id, "short#w0");
  EXPECT_EQ((*out)[4].text, "a b");
  // A stride that divides evenly adds no duplicate tail run: 8 words, windows of 4 every 4.
  auto even = WindowPassages({{"e", "", "a b c d e f g h"}}, 4, 4);
  ASSERT_TRUE(even.ok());
  ASSERT_EQ(even->size(), 2u);
  EXPECT_EQ((*even)[1].text, "e f g h");
}

TEST(CorpusReaderTest, WindowArgumentsAreChecked) {
  for (auto [words, stride] : {std::pair{0, 1}, {4, 0}, {4, 5}}) {
    auto out = WindowPassages({{"p", "", "a b"}}, words, stride);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(out.status().message().find("stride " + std::to_string(stride)), std::string::npos)
        << out.status().message();
  }
}

}  // namespace
}  // namespace memoria
