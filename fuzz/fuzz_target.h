// Shared scaffolding of the fuzz targets in fuzz/*_fuzzer.cc.
//
// Each target is one function of the input bytes, declared with MEMORIA_FUZZ_TARGET(Name). It
// must return normally for every input: a parser may reject bytes with an error Status, never
// crash, hang or leak. Invariants the parsers promise (an accepted value is consistent) are
// checked with FUZZ_CHECK, which aborts so that libFuzzer records the input as a crash.
//
// The same function is built twice:
//   - with MEMORIA_LIBFUZZER defined (fuzz/CMakeLists.txt, clang, -fsanitize=fuzzer): the macro
//     also defines LLVMFuzzerTestOneInput, one executable per target (<name>_fuzzer);
//   - without it, into the gtest programs fuzz_test / fuzz_proto_test, which replay every file of
//     the committed corpus fuzz/corpus/<name>/ through MemoriaFuzz<Name> (regressions show in
//     plain ctest).
// Thread-safety: targets are called from one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

#ifdef MEMORIA_LIBFUZZER
#define MEMORIA_FUZZ_ENTRY(Name)                                                   \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {        \
    return ::memoria::fuzz::MemoriaFuzz##Name(data, size);                         \
  }
#else
#define MEMORIA_FUZZ_ENTRY(Name)
#endif

// Declares the target function memoria::fuzz::MemoriaFuzz<Name>(data, size) (returns 0) and, in
// libFuzzer builds, the entry point calling it. Use as the head of the function definition.
#define MEMORIA_FUZZ_TARGET(Name)                                              \
  namespace memoria::fuzz {                                                    \
  int MemoriaFuzz##Name(const uint8_t* data, size_t size);                     \
  }                                                                            \
  MEMORIA_FUZZ_ENTRY(Name)                                                     \
  int memoria::fuzz::MemoriaFuzz##Name(const uint8_t* data, size_t size)

namespace memoria::fuzz {

// Fuzz input split into fields: a cursor over the bytes that never reads past the end (missing
// bytes read as 0 / empty), so every input maps to some call.
class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t U8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint32_t U32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{U8()} << (8 * i);
    return v;
  }
  // The next min(n, remaining) bytes.
  std::string Bytes(size_t n) {
    if (n > size_ - pos_) n = size_ - pos_;
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }
  // Bytes prefixed by a u16 length.
  std::string LengthPrefixed() {
    const size_t n = U8() | (size_t{U8()} << 8);
    return Bytes(n);
  }
  std::string Rest() { return Bytes(size_ - pos_); }
  size_t remaining() const { return size_ - pos_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// The bytes as an anonymous in-memory file (memfd), for parsers whose API takes a path: path()
// is "/proc/self/fd/N", valid while the object lives. Aborts if the kernel refuses a memfd.
class MemFile {
 public:
  MemFile(const void* data, size_t size);
  explicit MemFile(const std::string& bytes) : MemFile(bytes.data(), bytes.size()) {}
  ~MemFile();
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace memoria::fuzz
