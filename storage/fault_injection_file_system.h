// FaultInjectionFileSystem: a rocksdb::FileSystem that forwards every call to another one (by
// default the process's real file system) and, when armed, fails exactly one chosen operation
// with an IOError -- the k-th random-access read, the k-th write (append) or the k-th sync counted
// from the moment it was armed. Operations before and after the failing one pass through
// untouched, so a test sees one clean failure and then normal service. Installed in a passage
// store through PassageStoreOptions::file_system (storage/passage_store.h).
//
// What counts as one operation:
//   kRead   one FSRandomAccessFile::Read, or one request of a MultiRead (SST data, index and
//           filter blocks, blob values, table footers). Sequential reads (WAL / MANIFEST replay
//           at open) and asynchronous reads (ReadOptions::async_io, which the store does not
//           use) are not counted.
//   kWrite  one FSWritableFile::Append or PositionedAppend (WAL records, SST and MANIFEST
//           writes). The failing append writes nothing.
//   kSync   one FSWritableFile::Sync or Fsync. The failing sync does not sync (the data stays
//           where the preceding appends left it: in the OS page cache).
// A failed operation returns IOStatus::IOError("injected fault: <op> #<n> on <file>"), which the
// store reports as UNAVAILABLE (passage_store.h, Errors).
//
// Thread-safety: every method may be called from any thread, concurrently with RocksDB's own
// threads (counters are atomics; exactly one caller gets the armed fault). Background work
// (flushes, compactions) is counted too: arm when the store is idle to aim at a given request.
#pragma once

#include <rocksdb/file_system.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace memoria {

class FaultInjectionFileSystem : public rocksdb::FileSystemWrapper {
 public:
  enum class Op { kRead = 0, kWrite = 1, kSync = 2 };
  static constexpr int kOps = 3;

  explicit FaultInjectionFileSystem(
      std::shared_ptr<rocksdb::FileSystem> target = rocksdb::FileSystem::Default());
  ~FaultInjectionFileSystem() override;

  // Fails the k-th (k >= 1) operation of kind `op` from now on, once; the other kinds keep their
  // own arming. Re-arming replaces the pending fault of that kind; k <= 0 disarms it.
  void FailNth(Op op, int64_t k);
  void DisarmAll();
  // Operations of kind `op` seen since construction (failed ones included).
  int64_t count(Op op) const { return counters_[static_cast<int>(op)].seen.load(); }
  // Faults injected so far for `op`.
  int64_t injected(Op op) const { return counters_[static_cast<int>(op)].injected.load(); }

  static const char* kClassName() { return "MemoriaFaultInjectionFileSystem"; }
  const char* Name() const override { return kClassName(); }

  rocksdb::IOStatus NewRandomAccessFile(const std::string& fname,
                                        const rocksdb::FileOptions& options,
                                        std::unique_ptr<rocksdb::FSRandomAccessFile>* result,
                                        rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname,
                                       const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                      const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;

  // Counts one operation of kind `op` on `file`; an IOError when it is the armed one, OK
  // otherwise. Used by the file wrappers.
  rocksdb::IOStatus Tick(Op op, const std::string& file);

 private:
  struct Counter {
    std::atomic<int64_t> seen{0};
    // The value of `seen` whose operation fails; 0 = disarmed.
    std::atomic<int64_t> fail_at{0};
    std::atomic<int64_t> injected{0};
  };
  Counter counters_[kOps];
};

}  // namespace memoria
