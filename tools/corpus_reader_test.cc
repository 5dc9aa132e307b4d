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

}  // namespace
}  // namespace memoria
