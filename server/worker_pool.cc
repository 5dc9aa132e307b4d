#include "server/worker_pool.h"

#include <algorithm>
#include <chrono>

namespace memoria {
namespace {

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

WorkerPool::WorkerPool(int workers, int queue_capacity, std::function<void(int)> init,
                       Observer observer)
    : queue_capacity_(queue_capacity), observer_(std::move(observer)) {
  MEMORIA_CHECK(workers >= 1 && queue_capacity >= 0, "bad worker pool size");
  threads_.reserve(workers);
  for (int i = 0; i < workers; ++i) threads_.emplace_back([this, i, init] { Run(i, init); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::Notify() {
  if (observer_) observer_(static_cast<int64_t>(queue_.size()), running_);
}

StatusOr<std::shared_ptr<WorkerPool::Ticket>> WorkerPool::Submit(Job job) {
  auto ticket = std::make_shared<Ticket>();
  ticket->job_ = std::move(job);
  ticket->pool_ = this;
  ticket->enqueued_at_ = NowSeconds();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return UnavailableError("the server is shutting down");
    // Room = idle workers + free queue slots. Jobs in the queue will each take a worker first.
    const int64_t taken = running_ + static_cast<int64_t>(queue_.size());
    if (taken >= workers() + static_cast<int64_t>(queue_capacity_)) {
      return ResourceExhaustedError("server overloaded: " + std::to_string(running_) +
                                    " workers busy and " + std::to_string(queue_.size()) +
                                    " requests queued (queue capacity " +
                                    std::to_string(queue_capacity_) + ")");
    }
    queue_.push_back(ticket);
    Notify();
  }
  cv_.notify_one();
  return ticket;
}

void WorkerPool::Run(int worker, const std::function<void(int)>& init) {
  if (init) init(worker);
  while (true) {
    std::shared_ptr<Ticket> ticket;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      ticket = std::move(queue_.front());
      queue_.pop_front();
      // A withdrawn ticket is skipped without counting as running.
      std::lock_guard<std::mutex> tlock(ticket->mu_);
      if (ticket->state_ == Ticket::State::kWithdrawn) {
        Notify();
        continue;
      }
      ticket->state_ = Ticket::State::kRunning;
      ticket->queue_seconds_ = NowSeconds() - ticket->enqueued_at_;
      ++running_;
      Notify();
    }
    ticket->job_(worker);
    {
      std::lock_guard<std::mutex> lock(mu_);
      --running_;
      Notify();
    }
    {
      std::lock_guard<std::mutex> tlock(ticket->mu_);
      ticket->state_ = Ticket::State::kDone;
      ticket->job_ = nullptr;  // drop captured references before the submitter returns
    }
    ticket->cv_.notify_all();
  }
}

bool WorkerPool::Withdraw(Ticket* ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  std::lock_guard<std::mutex> tlock(ticket->mu_);
  if (ticket->state_ != Ticket::State::kQueued) return false;
  auto it =
      std::find_if(queue_.begin(), queue_.end(), [&](const auto& t) { return t.get() == ticket; });
  if (it != queue_.end()) queue_.erase(it);
  ticket->state_ = Ticket::State::kWithdrawn;
  ticket->job_ = nullptr;
  Notify();
  return true;
}

Status WorkerPool::Ticket::Wait(const std::function<Status()>& poll, double poll_interval_seconds) {
  const auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(poll_interval_seconds));
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (state_ != State::kQueued) {
        cv_.wait(lock, [&] { return state_ == State::kDone; });
        return Status::Ok();
      }
    }
    if (poll) {
      Status status = poll();
      // Withdraw fails only when a worker took the job meanwhile: then wait for it to finish.
      if (!status.ok() && pool_->Withdraw(this)) return status;
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, interval, [&] { return state_ != State::kQueued; });
  }
}

}  // namespace memoria
