// ThreadPool: a fixed number of compute threads shared by every kernel and by oneDNN.
//
// Why OpenMP underneath: oneDNN (Debian's build) runs its primitives on OpenMP threads. A second,
// separate pool of pthreads would oversubscribe the cores whenever both are busy, and OpenMP's
// spinning workers would steal time from our own. Backing ParallelFor by the same OpenMP runtime
// means one team of `num_threads` threads does all compute: no oversubscription by construction.
// Gemm calls set oneDNN's thread count from the pool they are given.
//
// Thread-safety: ParallelFor may be called from one thread at a time per ThreadPool object. A
// server that runs several requests at once gives each its own ThreadPool with a share of the
// cores (the sum stays within the core budget).
#pragma once

#include <cstdint>
#include <functional>

namespace memoria {

class ThreadPool {
 public:
  // num_threads >= 1; 0 means "all cores" (omp_get_num_procs()).
  explicit ThreadPool(int num_threads);

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) on contiguous chunks that cover [0, n) exactly once, at most one chunk
  // per thread (static schedule, chunk sizes differ by at most 1). Returns when all are done.
  // n <= 0 does nothing. fn must not throw.
  void ParallelFor(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn) const;

  // Like ParallelFor for work of uneven cost: chunks of `grain` items handed out dynamically.
  void ParallelForDynamic(int64_t n, int64_t grain,
                          const std::function<void(int64_t begin, int64_t end)>& fn) const;

  // Makes the calling thread's OpenMP regions (and so oneDNN's) use num_threads() threads.
  void BindOpenMp() const;

 private:
  int num_threads_;
};

}  // namespace memoria
