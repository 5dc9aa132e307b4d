#include "storage/fault_injection_file_system.h"

#include <utility>
#include <vector>

namespace memoria {
namespace {

const char* OpName(FaultInjectionFileSystem::Op op) {
  switch (op) {
    case FaultInjectionFileSystem::Op::kRead:
      return "read";
    case FaultInjectionFileSystem::Op::kWrite:
      return "write";
    case FaultInjectionFileSystem::Op::kSync:
      return "sync";
  }
  return "?";
}

using Op = FaultInjectionFileSystem::Op;

class FaultyRandomAccessFile : public rocksdb::FSRandomAccessFileOwnerWrapper {
 public:
  FaultyRandomAccessFile(std::unique_ptr<rocksdb::FSRandomAccessFile> target,
                         FaultInjectionFileSystem* fs, std::string fname)
      : FSRandomAccessFileOwnerWrapper(std::move(target)), fs_(fs), fname_(std::move(fname)) {}

  rocksdb::IOStatus Read(uint64_t offset, size_t n, const rocksdb::IOOptions& options,
                         rocksdb::Slice* result, char* scratch,
                         rocksdb::IODebugContext* dbg) const override {
    rocksdb::IOStatus s = fs_->Tick(Op::kRead, fname_);
    if (!s.ok()) {
      *result = rocksdb::Slice();
      return s;
    }
    return target()->Read(offset, n, options, result, scratch, dbg);
  }

  // Each request is one read: the armed one gets the error, the others their data.
  rocksdb::IOStatus MultiRead(rocksdb::FSReadRequest* reqs, size_t num_reqs,
                              const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override {
    std::vector<rocksdb::IOStatus> ticks;
    ticks.reserve(num_reqs);
    for (size_t i = 0; i < num_reqs; ++i) ticks.push_back(fs_->Tick(Op::kRead, fname_));
    rocksdb::IOStatus s = target()->MultiRead(reqs, num_reqs, options, dbg);
    for (size_t i = 0; i < num_reqs; ++i) {
      if (ticks[i].ok()) continue;
      reqs[i].status = ticks[i];
      reqs[i].result = rocksdb::Slice();
    }
    return s;
  }

 private:
  FaultInjectionFileSystem* fs_;
  std::string fname_;
};

class FaultyWritableFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultyWritableFile(std::unique_ptr<rocksdb::FSWritableFile> target, FaultInjectionFileSystem* fs,
                     std::string fname)
      : FSWritableFileOwnerWrapper(std::move(target)), fs_(fs), fname_(std::move(fname)) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_->Tick(Op::kWrite, fname_); !s.ok()) return s;
    return target()->Append(data, options, dbg);
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_->Tick(Op::kWrite, fname_); !s.ok()) return s;
    return target()->Append(data, options, info, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_->Tick(Op::kWrite, fname_); !s.ok()) return s;
    return target()->PositionedAppend(data, offset, options, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_->Tick(Op::kWrite, fname_); !s.ok()) return s;
    return target()->PositionedAppend(data, offset, options, info, dbg);
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_->Tick(Op::kSync, fname_); !s.ok()) return s;
    return target()->Sync(options, dbg);
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_->Tick(Op::kSync, fname_); !s.ok()) return s;
    return target()->Fsync(options, dbg);
  }

 private:
  FaultInjectionFileSystem* fs_;
  std::string fname_;
};

}  // namespace

FaultInjectionFileSystem::FaultInjectionFileSystem(std::shared_ptr<rocksdb::FileSystem> target)
    : rocksdb::FileSystemWrapper(target) {}

FaultInjectionFileSystem::~FaultInjectionFileSystem() = default;

void FaultInjectionFileSystem::FailNth(Op op, int64_t k) {
  Counter& c = counters_[static_cast<int>(op)];
  c.fail_at.store(k <= 0 ? 0 : c.seen.load() + k);
}

void FaultInjectionFileSystem::DisarmAll() {
  for (Counter& c : counters_) c.fail_at.store(0);
}

rocksdb::IOStatus FaultInjectionFileSystem::Tick(Op op, const std::string& file) {
  Counter& c = counters_[static_cast<int>(op)];
  const int64_t n = c.seen.fetch_add(1) + 1;
  int64_t armed = c.fail_at.load();
  // Exactly one caller clears the arming: the one whose operation is the armed one.
  if (armed == 0 || n != armed || !c.fail_at.compare_exchange_strong(armed, 0)) {
    return rocksdb::IOStatus::OK();
  }
  c.injected.fetch_add(1);
  return rocksdb::IOStatus::IOError("injected fault: " + std::string(OpName(op)) + " #" +
                                    std::to_string(n) + " on " + file);
}

rocksdb::IOStatus FaultInjectionFileSystem::NewRandomAccessFile(
    const std::string& fname, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSRandomAccessFile>* result, rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSRandomAccessFile> file;
  rocksdb::IOStatus s = target()->NewRandomAccessFile(fname, options, &file, dbg);
  if (s.ok()) result->reset(new FaultyRandomAccessFile(std::move(file), this, fname));
  return s;
}

rocksdb::IOStatus FaultInjectionFileSystem::NewWritableFile(
    const std::string& fname, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> file;
  rocksdb::IOStatus s = target()->NewWritableFile(fname, options, &file, dbg);
  if (s.ok()) result->reset(new FaultyWritableFile(std::move(file), this, fname));
  return s;
}

rocksdb::IOStatus FaultInjectionFileSystem::ReopenWritableFile(
    const std::string& fname, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> file;
  rocksdb::IOStatus s = target()->ReopenWritableFile(fname, options, &file, dbg);
  if (s.ok()) result->reset(new FaultyWritableFile(std::move(file), this, fname));
  return s;
}

rocksdb::IOStatus FaultInjectionFileSystem::ReuseWritableFile(
    const std::string& fname, const std::string& old_fname, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> file;
  rocksdb::IOStatus s = target()->ReuseWritableFile(fname, old_fname, options, &file, dbg);
  if (s.ok()) result->reset(new FaultyWritableFile(std::move(file), this, fname));
  return s;
}

}  // namespace memoria
