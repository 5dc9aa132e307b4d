// kill -9 during ingest, many times: every reopen succeeds, no acknowledged passage is lost, every
// batch is all present or all absent (reliability.md, "Storage durability"), and the retrieval
// index holds exactly the stored passages.
//
// The parent creates a store, then repeatedly starts a child process that ingests batches and
// reports each acknowledged batch on a pipe, SIGKILLs it at a random moment, reopens the store and
// checks it. The child is its own program, tests/store_crash_child.cc.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include "base/testing.h"
#include "storage/passage_store.h"
#include "tests/store_crash_workload.h"

namespace memoria {
namespace {

using namespace crash_test;

struct ChildRun {
  bool ready = false;
  int64_t acked = -1;  // highest acknowledged batch
};

// Starts the child, kills it `kill_after` after it reported ready, returns what it acknowledged.
ChildRun RunAndKill(const std::string& dir, int iter, bool sync, std::chrono::milliseconds kill_after) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    const int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    setenv(kChildDirEnv, dir.c_str(), 1);
    setenv(kChildFdEnv, std::to_string(fds[1]).c_str(), 1);
    setenv(kChildIterEnv, std::to_string(iter).c_str(), 1);
    setenv(kChildSyncEnv, sync ? "1" : "0", 1);
    setenv("OMP_NUM_THREADS", "1", 1);
    const std::string child = testing::BuildDir() + "/tests/store_crash_child";
    execl(child.c_str(), "store_crash_child", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  ChildRun run;
  std::string buffer;
  auto read_some = [&](int timeout_ms) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char chunk[4096];
    const ssize_t n = read(fds[0], chunk, sizeof(chunk));
    if (n <= 0) return false;
    buffer.append(chunk, n);
    return true;
  };
  const auto start = std::chrono::steady_clock::now();
  while (buffer.find("ready\n") == std::string::npos &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(20)) {
    if (!read_some(100)) {
      int status;
      if (waitpid(pid, &status, WNOHANG) == pid) break;  // child died before ready
    }
  }
  run.ready = buffer.find("ready\n") != std::string::npos;
  const auto kill_at = std::chrono::steady_clock::now() + kill_after;
  while (std::chrono::steady_clock::now() < kill_at) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(kill_at - std::chrono::steady_clock::now());
    read_some(static_cast<int>(std::max<int64_t>(0, left.count())));
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  while (read_some(0)) {
  }
  close(fds[0]);
  std::istringstream lines(buffer);
  std::string line;
  while (std::getline(lines, line)) {
    if (line != "ready") run.acked = std::max<int64_t>(run.acked, std::stoll(line));
  }
  return run;
}

TEST(StoreCrashTest, KillDuringIngestLosesNoAcknowledgedPassage) {
  const std::string dir = testing::MakeTempDir("crash-store");
  const StoreIdentity id = Identity();
  {
    auto codec = std::move(CreateCodec(id.codec)).value();
    std::vector<float> calib = Memory(-1, 0, 0);
    ASSERT_TRUE(codec->Train(ThreadPool(1), Tokens(0, 0), calib.data(), kDim, {}, nullptr).ok());
    std::unique_ptr<PassageStore> store;
    ASSERT_TRUE(PassageStore::Create({}, dir, id, *codec, &store).ok());
  }
  std::mt19937_64 rng(20240611);
  std::uniform_int_distribution<int> delay_ms(2, 120);
  const auto start = std::chrono::steady_clock::now();
  int iterations = 0, killed_mid_batch = 0;
  int64_t total_acked = 0;
  ThreadPool pool(1);
  for (int iter = 0; iter < 60; ++iter) {
    if (iter >= 50 && std::chrono::steady_clock::now() - start > std::chrono::seconds(45)) break;
    const bool sync = iter % 2 == 0;
    const ChildRun run = RunAndKill(dir, iter, sync, std::chrono::milliseconds(delay_ms(rng)));
    ASSERT_TRUE(run.ready) << "iteration " << iter << ": child did not start";
    ++iterations;

    // Every reopen succeeds.
    std::unique_ptr<PassageStore> store;
    const Status st = PassageStore::Open({}, dir, &id, &store);
    ASSERT_TRUE(st.ok()) << "iteration " << iter << ": " << st.ToString();

    // Batches 0..acked must be complete and decode to what was written; the batch in flight
    // (acked + 1) and the one after must be all present or all absent.
    int64_t present_this_iteration = 0;
    for (int64_t b = 0; b <= run.acked + 2; ++b) {
      std::vector<std::string> ids;
      for (int k = 0; k < BatchSize(b); ++k) ids.push_back(PassageId(iter, b, k));
      auto mem = store->GetMemory(pool, ids);
      int present = 0;
      for (int k = 0; k < BatchSize(b); ++k) {
        if (mem[k].ok()) {
          ++present;
          const auto expect_in = Memory(iter, b, k);
          std::vector<uint8_t> codes(store->codec().code_size(Tokens(b, k)));
          ASSERT_TRUE(store->codec().Encode(pool, Tokens(b, k), expect_in.data(), kDim, codes.data()).ok());
          std::vector<float> expect(Tokens(b, k) * kDim);
          ASSERT_TRUE(store->codec().Decode(pool, Tokens(b, k), codes.data(), codes.size(), expect.data(), kDim).ok());
          ASSERT_EQ(mem[k]->vectors, expect) << ids[k];
        } else {
          ASSERT_EQ(mem[k].status().code(), StatusCode::kNotFound) << mem[k].status().ToString();
        }
      }
      if (b <= run.acked) {
        ASSERT_EQ(present, BatchSize(b)) << "iteration " << iter << " (sync " << sync << "): acknowledged batch "
                                         << b << " lost " << BatchSize(b) - present << " passages";
      } else {
        ASSERT_TRUE(present == 0 || present == BatchSize(b))
            << "iteration " << iter << ": batch " << b << " is partially present (" << present << "/"
            << BatchSize(b) << ")";
        if (b == run.acked + 1 && present == BatchSize(b)) ++killed_mid_batch;  // durable, not yet acked
      }
      present_this_iteration += present;
    }
    // The retrieval index went in with the same batches: it holds exactly the stored passages.
    // The child's texts are "passage i<iter>-b<batch>-k<k>": the word "i<iter>" finds this
    // iteration's passages.
    auto stats = store->Scan(/*verify=*/true);
    ASSERT_TRUE(stats.ok());
    ASSERT_EQ(stats->corrupt, 0) << "iteration " << iter;
    ASSERT_EQ(store->passage_count(), stats->passages) << "iteration " << iter;
    auto hits = store->Search("i" + std::to_string(iter), 1 << 20);
    ASSERT_TRUE(hits.ok()) << hits.status().ToString();
    ASSERT_EQ(static_cast<int64_t>(hits->size()), present_this_iteration) << "iteration " << iter;
    total_acked += run.acked + 1;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(iterations, 50);
  EXPECT_GT(total_acked, iterations);  // the kills did land during ingest, not before it
  std::printf("crash test: %d kills in %.1f s, %lld batches acknowledged, %d in-flight batches found durable\n",
              iterations, seconds, static_cast<long long>(total_acked), killed_mid_batch);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace memoria
