#include "kernels/thread_pool.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

namespace memoria {
namespace {

// Counts how often each index of [0, n) was visited; every count must be exactly 1.
void ExpectCoveredOnce(const std::vector<std::atomic<int>>& hits) {
  for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << i;
}

class ThreadPoolTest : public ::testing::TestWithParam<int> {};

TEST_P(ThreadPoolTest, ParallelForCoversRangeExactlyOnce) {
  ThreadPool pool(GetParam());
  for (int64_t n : {1, 2, 3, 7, 64, 1001}) {
    std::vector<std::atomic<int>> hits(n);
    std::mutex mu;
    std::vector<std::pair<int64_t, int64_t>> chunks;
    pool.ParallelFor(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i]++;
      std::lock_guard<std::mutex> lock(mu);
      chunks.emplace_back(b, e);
    });
    ExpectCoveredOnce(hits);
    // At most one chunk per thread, sizes differing by at most one.
    EXPECT_LE(static_cast<int64_t>(chunks.size()), std::min<int64_t>(n, pool.num_threads()));
    int64_t lo = n, hi = 0;
    for (auto [b, e] : chunks) {
      lo = std::min(lo, e - b);
      hi = std::max(hi, e - b);
    }
    EXPECT_LE(hi - lo, 1);
  }
}

TEST_P(ThreadPoolTest, ParallelForDynamicCoversRangeExactlyOnce) {
  ThreadPool pool(GetParam());
  for (int64_t n : {1, 5, 100, 1001}) {
    for (int64_t grain : {1, 3, 64, 5000}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelForDynamic(n, grain, [&](int64_t b, int64_t e) {
        EXPECT_LE(e - b, grain);
        for (int64_t i = b; i < e; ++i) hits[i]++;
      });
      ExpectCoveredOnce(hits);
    }
  }
}

TEST_P(ThreadPoolTest, EmptyRangeDoesNothing) {
  ThreadPool pool(GetParam());
  int calls = 0;
  pool.ParallelFor(0, [&](int64_t, int64_t) { ++calls; });
  pool.ParallelFor(-3, [&](int64_t, int64_t) { ++calls; });
  pool.ParallelForDynamic(0, 4, [&](int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

INSTANTIATE_TEST_SUITE_P(Threads, ThreadPoolTest, ::testing::Values(1, 2, 3, 8));

TEST(ThreadPoolTest, OneThreadRunsOnCaller) {
  ThreadPool pool(1);
  const std::thread::id caller = std::this_thread::get_id();
  pool.ParallelFor(100, [&](int64_t b, int64_t e) {
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 100);
    EXPECT_EQ(std::this_thread::get_id(), caller);
  });
}

TEST(ThreadPoolTest, FewerItemsThanThreads) {
  ThreadPool pool(8);
  std::vector<std::atomic<int>> hits(3);
  std::atomic<int> calls{0};
  pool.ParallelFor(3, [&](int64_t b, int64_t e) {
    EXPECT_EQ(e - b, 1);
    calls++;
    for (int64_t i = b; i < e; ++i) hits[i]++;
  });
  EXPECT_EQ(calls.load(), 3);
  ExpectCoveredOnce(hits);
}

TEST(ThreadPoolTest, UsesSeveralThreads) {
  ThreadPool pool(2);
  std::mutex mu;
  std::set<int> ids;
  pool.ParallelFor(2, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(mu);
    ids.insert(omp_get_thread_num());
  });
  EXPECT_EQ(ids.size(), 2u);
}

TEST(ThreadPoolTest, DynamicScheduleBalancesUnevenWork) {
  // Item 0 waits until every other item is done. Handed out dynamically, the other thread takes
  // all of them meanwhile; a static split would have given item 0's thread half of them and the
  // wait would time out.
  ThreadPool pool(2);
  constexpr int64_t n = 50;
  std::atomic<int64_t> done{0};
  std::atomic<bool> timed_out{false};
  pool.ParallelForDynamic(n, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if (i == 0) {
        const double t0 = omp_get_wtime();
        while (done.load() < n - 1) {
          if (omp_get_wtime() - t0 > 10.0) {
            timed_out = true;
            break;
          }
        }
      } else {
        done++;
      }
    }
  });
  EXPECT_FALSE(timed_out.load());
  EXPECT_EQ(done.load(), n - 1);
}

TEST(ThreadPoolTest, ZeroMeansAllCores) {
  ThreadPool pool(0);
  EXPECT_EQ(pool.num_threads(), omp_get_num_procs());
}

TEST(ThreadPoolTest, BindOpenMpSetsTeamSize) {
  ThreadPool pool(2);
  pool.BindOpenMp();
  EXPECT_EQ(omp_get_max_threads(), 2);
  ThreadPool one(1);
  one.BindOpenMp();
  EXPECT_EQ(omp_get_max_threads(), 1);
}

}  // namespace
}  // namespace memoria
