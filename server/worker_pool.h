// Bounded admission and a fixed pool of worker threads.
//
// At most `workers` jobs run at once, each on its own long-lived thread (so each worker keeps
// its OpenMP team, KV cache and scratch between requests); at most `queue_capacity` more wait.
// Submit never blocks: when workers + queue are all taken it answers RESOURCE_EXHAUSTED at once
// (the TGI/Triton behaviour in docs/reliability.md), so an overloaded server sheds load instead
// of building an unbounded backlog.
//
// A waiting job can be abandoned (its client went away or its deadline passed): it then leaves
// the queue without ever running, so a dead request never holds a worker.
//
// Thread-safety: all methods may be called concurrently.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/status.h"

namespace memoria {

class WorkerPool {
 public:
  // Runs on a worker thread with that worker's index in [0, workers).
  using Job = std::function<void(int worker)>;

  // One submitted job's state, shared by the submitter and the worker.
  class Ticket {
   public:
    // Blocks until the job finished, or until `poll` (called every poll_interval while the job
    // still waits in the queue) returns non-OK: then the job leaves the queue without running
    // and that status is returned. Once the job runs, Wait only returns when it is done (OK): the
    // job itself must notice cancellation (it holds references the submitter owns).
    Status Wait(const std::function<Status()>& poll, double poll_interval_seconds = 0.002);
    // Seconds the job waited before a worker took it (valid once it started).
    double queue_seconds() const { return queue_seconds_; }

   private:
    friend class WorkerPool;
    enum class State { kQueued, kRunning, kDone, kWithdrawn };
    WorkerPool* pool_ = nullptr;
    std::mutex mu_;
    std::condition_variable cv_;
    State state_ = State::kQueued;
    Job job_;
    double enqueued_at_ = 0;
    double queue_seconds_ = 0;
  };

  // Called whenever the number of waiting or running jobs changes (metrics gauges).
  using Observer = std::function<void(int64_t waiting, int64_t running)>;

  // workers >= 1, queue_capacity >= 0. `init(worker)` runs first on each worker thread (e.g. to
  // bind its OpenMP team).
  WorkerPool(int workers, int queue_capacity, std::function<void(int worker)> init = nullptr,
             Observer observer = nullptr);
  // Stops taking jobs, lets queued and running ones finish, joins the threads.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `job`; RESOURCE_EXHAUSTED stating the capacity ("server overloaded: 2 workers busy
  // and 2 requests queued (queue capacity 2)") when no room is left.
  StatusOr<std::shared_ptr<Ticket>> Submit(Job job);

  int workers() const { return static_cast<int>(threads_.size()); }
  int queue_capacity() const { return queue_capacity_; }

 private:
  void Run(int worker, const std::function<void(int)>& init);
  // Removes a still-queued ticket; false when a worker already took it.
  bool Withdraw(Ticket* ticket);
  void Notify();  // with mu_ held

  const int queue_capacity_;
  Observer observer_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Ticket>> queue_;
  int running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace memoria
