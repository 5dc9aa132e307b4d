// The child process of the store crash test: opens the store named by MEMORIA_CRASH_CHILD_DIR and
// ingests deterministic batches forever, writing "<batch>\n" to the pipe MEMORIA_CRASH_CHILD_FD
// after each acknowledged (durable) write, until the parent SIGKILLs it. A separate program rather
// than a fork: forking a process that already runs RocksDB and OpenMP threads would copy their
// locks but not their threads.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/thread_pool.h"
#include "tests/store_crash_workload.h"

namespace memoria::crash_test {
namespace {

// The child: ingest batches forever, reporting "<batch>\n" after each acknowledged write.
int RunChild() {
  const char* dir = std::getenv(kChildDirEnv);
  if (dir == nullptr) {
    std::fprintf(stderr, "store_crash_child: run by store_crash_test only (%s unset)\n", kChildDirEnv);
    return 2;
  }
  const int fd = std::atoi(std::getenv(kChildFdEnv));
  const int iter = std::atoi(std::getenv(kChildIterEnv));
  PassageStoreOptions options;
  options.sync = std::string(std::getenv(kChildSyncEnv)) == "1";
  const StoreIdentity id = Identity();
  std::unique_ptr<PassageStore> store;
  const Status st = PassageStore::Open(options, dir, &id, &store);
  if (!st.ok()) {
    std::fprintf(stderr, "store_crash_child: open: %s\n", st.ToString().c_str());
    return 1;
  }
  ThreadPool pool(1);
  const std::string ready = "ready\n";
  if (write(fd, ready.data(), ready.size()) != static_cast<ssize_t>(ready.size())) return 1;
  for (int64_t b = 0; b < 1000000; ++b) {
    std::vector<std::vector<float>> mem;
    std::vector<PassageInput> batch;
    for (int k = 0; k < BatchSize(b); ++k) mem.push_back(Memory(iter, b, k));
    for (int k = 0; k < BatchSize(b); ++k) {
      PassageInput p;
      p.id = PassageId(iter, b, k);
      p.text = "passage " + p.id;
      p.num_tokens = Tokens(b, k);
      p.token_ids.assign(p.num_tokens, k);
      p.memory = mem[k].data();
      batch.push_back(std::move(p));
    }
    const Status ingested = store->Ingest(pool, batch);
    if (!ingested.ok()) {
      std::fprintf(stderr, "store_crash_child: ingest: %s\n", ingested.ToString().c_str());
      return 1;
    }
    const std::string line = std::to_string(b) + "\n";  // < PIPE_BUF: written atomically
    if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace memoria::crash_test

int main() { return memoria::crash_test::RunChild(); }
