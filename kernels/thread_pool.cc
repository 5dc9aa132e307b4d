#include "kernels/thread_pool.h"

#include <omp.h>

#include <algorithm>

namespace memoria {

ThreadPool::ThreadPool(int num_threads)
    : num_threads_(num_threads > 0 ? num_threads : std::max(1, omp_get_num_procs())) {}

void ThreadPool::BindOpenMp() const { omp_set_num_threads(num_threads_); }

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn) const {
  if (n <= 0) return;
  const int threads = static_cast<int>(std::min<int64_t>(num_threads_, n));
  if (threads == 1) {
    fn(0, n);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num();
    const int64_t nt = omp_get_num_threads();
    const int64_t base = n / nt, extra = n % nt;
    const int64_t begin = t * base + std::min(t, extra);
    const int64_t end = begin + base + (t < extra ? 1 : 0);
    if (begin < end) fn(begin, end);
  }
}

void ThreadPool::ParallelForDynamic(int64_t n, int64_t grain,
                                    const std::function<void(int64_t, int64_t)>& fn) const {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks = (n + grain - 1) / grain;
  const int threads = static_cast<int>(std::min<int64_t>(num_threads_, chunks));
  if (threads == 1) {
    // Still chunk by grain: callers may size per-chunk scratch by it.
    for (int64_t c = 0; c < chunks; ++c) fn(c * grain, std::min(n, (c + 1) * grain));
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t c = 0; c < chunks; ++c) {
    fn(c * grain, std::min(n, (c + 1) * grain));
  }
}

}  // namespace memoria
