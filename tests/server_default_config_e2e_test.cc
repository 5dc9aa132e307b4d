// The shipped default setup, end to end: configs/default.textproto serving the reader in
// models/squad-reader from a store that scripts/default_store.sh builds (here of the first SQuAD
// dev paragraphs only, to keep the test short), started as the real memoria-server binary and asked
// with the real `memoria ask` client. Real SQuAD questions get their real answers.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <sstream>
#include <string>

#include "base/testing.h"
#include "tests/server_process.h"

namespace memoria {
namespace {

// configs/default.textproto with the paths made absolute (the test does not run from the
// repository root) and without listen_address / http_port (ServerProcess picks free ports).
std::string DefaultConfigFor(const std::string& store_dir) {
  std::istringstream in(testing::ReadFile(testing::SourceDir() + "/configs/default.textproto"));
  std::string line, out;
  bool saw_model = false, saw_store = false;
  while (std::getline(in, line)) {
    if (line.rfind("listen_address:", 0) == 0 || line.rfind("http_port:", 0) == 0) continue;
    if (line.rfind("model_dir:", 0) == 0) {
      EXPECT_EQ(line, "model_dir: \"models/squad-reader\"");
      line = "model_dir: \"" + testing::SourceDir() + "/models/squad-reader\"";
      saw_model = true;
    }
    if (line.rfind("store_dir:", 0) == 0) {
      EXPECT_EQ(line, "store_dir: \"build/stores/squad-dev\"");
      line = "store_dir: \"" + store_dir + "\"";
      saw_store = true;
    }
    out += line + "\n";
  }
  EXPECT_TRUE(saw_model && saw_store) << out;
  return out;
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

TEST(DefaultConfigTest, TheShippedReaderAnswersSquadQuestionsFromTheDefaultStore) {
  MEMORIA_REQUIRE_SHARED();
  const std::string dir = testing::MakeTempDir("default-config");
  const std::string store = dir + "/squad-dev";
  // The script start.sh runs, on the first 10 paragraphs (Super_Bowl_50/0 to /9).
  auto [rc, log] = testing::RunShell(
      "BUILD_DIR=" + testing::BuildDir() + " MEMORIA_SHARED_DIR=" + testing::SharedDir() + " " +
      testing::SourceDir() + "/scripts/default_store.sh " + store + " --limit 10 2>&1");
  ASSERT_EQ(rc, 0) << log;
  ASSERT_TRUE(std::filesystem::exists(store + "/CURRENT")) << log;
  EXPECT_NE(log.find("codec pq(d=128, g=32, C=256)"), std::string::npos) << log;
  // Existing store: nothing to do.
  auto [rc_again, again] = testing::RunShell(testing::SourceDir() + "/scripts/default_store.sh " +
                                             store + " --limit 10 2>&1");
  EXPECT_EQ(rc_again, 0) << again;
  EXPECT_EQ(again, "");

  testing::ServerProcess server(DefaultConfigFor(store));
  ASSERT_TRUE(server.WaitReady(120)) << server.Log();
  const std::string ask =
      testing::BuildDir() + "/tools/memoria ask --server " + server.target() + " --extractive ";
  struct Case {
    std::string question, answer;
  };
  // Questions of the SQuAD dev set this reader answers exactly (EM 5.2 / F1 9.0 on the first 1,000
  // with the whole store: bench/results/qa_quality_default.md), each from the BM25 passage.
  for (const Case& c : {
           Case{"How much did it cost to build Levi's Stadium?", "$1.2 billion"},
           Case{"Prior to Super Bowl 50, when were the Carolina Panthers last there?",
                "Super Bowl XXXVIII"},
           Case{"What Panther tore his ACL in the preseason?", "Benjamin"},
       }) {
    auto [rc_ask, answer] = testing::RunShell(ask + "--question " + ShellQuote(c.question) + " 2>&1");
    EXPECT_EQ(rc_ask, 0) << answer;
    EXPECT_EQ(answer, c.answer + "\n") << c.question;
  }
  server.Signal(SIGTERM);
  EXPECT_EQ(server.WaitExit(60), 0) << server.Log();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace memoria
