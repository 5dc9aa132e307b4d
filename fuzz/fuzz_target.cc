#include "fuzz/fuzz_target.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace memoria::fuzz {

MemFile::MemFile(const void* data, size_t size) {
  fd_ = memfd_create("memoria-fuzz", MFD_CLOEXEC);
  if (fd_ < 0) {
    std::fprintf(stderr, "memfd_create: %s\n", std::strerror(errno));
    std::abort();
  }
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = write(fd_, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::fprintf(stderr, "write to memfd: %s\n", std::strerror(errno));
      std::abort();
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  path_ = "/proc/self/fd/" + std::to_string(fd_);
}

MemFile::~MemFile() { close(fd_); }

}  // namespace memoria::fuzz
