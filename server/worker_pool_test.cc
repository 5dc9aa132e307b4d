#include "server/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

namespace memoria {
namespace {

// A job that blocks until released, to hold a worker.
struct Gate {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
};

TEST(WorkerPoolTest, RefusesAtOnceWhenWorkersAndQueueAreTaken) {
  Gate gate;
  std::atomic<int> ran{0};
  WorkerPool pool(/*workers=*/1, /*queue_capacity=*/1);
  auto first = pool.Submit([&](int) {
    gate.released.wait();
    ++ran;
  });
  auto second = pool.Submit([&](int) { ++ran; });
  ASSERT_TRUE(first.ok() && second.ok());
  const auto start = std::chrono::steady_clock::now();
  auto third = pool.Submit([&](int) { ++ran; });
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(third.status().message().find("queue capacity 1"), std::string::npos)
      << third.status().message();
  gate.release.set_value();
  EXPECT_TRUE((*first)->Wait(nullptr).ok());
  EXPECT_TRUE((*second)->Wait(nullptr).ok());
  EXPECT_EQ(ran.load(), 2);
}

TEST(WorkerPoolTest, WithdrawnJobNeverRunsAndFreesItsSlot) {
  Gate gate;
  std::atomic<bool> withdrawn_ran{false};
  WorkerPool pool(1, 1);
  auto busy = pool.Submit([&](int) { gate.released.wait(); });
  auto queued = pool.Submit([&](int) { withdrawn_ran = true; });
  ASSERT_TRUE(busy.ok() && queued.ok());
  Status status = (*queued)->Wait([] { return DeadlineExceededError("deadline"); });
  EXPECT_EQ(status.code(), StatusCode::kDeadlineExceeded);
  // The queue slot is free again while the worker is still busy.
  auto again = pool.Submit([](int) {});
  EXPECT_TRUE(again.ok()) << again.status().ToString();
  gate.release.set_value();
  EXPECT_TRUE((*again)->Wait(nullptr).ok());
  EXPECT_FALSE(withdrawn_ran.load());
}

TEST(WorkerPoolTest, JobsRunConcurrentlyOnDistinctWorkers) {
  WorkerPool pool(3, 0);
  std::atomic<int> inside{0}, peak{0};
  std::vector<std::shared_ptr<WorkerPool::Ticket>> tickets;
  std::vector<int> seen(3, -1);
  for (int i = 0; i < 3; ++i) {
    auto t = pool.Submit([&, i](int worker) {
      seen[i] = worker;
      const int now = ++inside;
      int p = peak.load();
      while (now > p && !peak.compare_exchange_weak(p, now)) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      --inside;
    });
    ASSERT_TRUE(t.ok());
    tickets.push_back(*t);
  }
  for (auto& t : tickets) EXPECT_TRUE(t->Wait(nullptr).ok());
  EXPECT_EQ(peak.load(), 3);
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2}));
}

}  // namespace
}  // namespace memoria
