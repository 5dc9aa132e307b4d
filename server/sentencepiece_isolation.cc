// Keeps Debian's libsentencepiece and libprotobuf apart in one process.
//
// Why: Debian's libsentencepiece.so.0 (0.1.97) carries its own copy of protobuf-lite 3.14 and
// exports those symbols. A process that also links libprotobuf.so.32 (gRPC, our generated
// messages) gets one of the two copies for each shared symbol: libprotobuf's static
// initialisers then ran sentencepiece's 3.14 MergeFromImpl on a 3.21 FileDescriptorProto and the
// server crashed before main() (google/sentencepiece#723 describes the same clash).
//
// How: the engine's tokenizer (engine/tokenizer.cc) calls only four non-virtual sentencepiece
// functions; everything else goes through SentencePieceProcessor's vtable. This file defines
// those four symbols (by their mangled names) in the executable, so the linker (with
// --as-needed) drops libsentencepiece.so from the executable's dependencies, and each forwards
// to libsentencepiece loaded with RTLD_LOCAL | RTLD_DEEPBIND: the library then binds to its own
// protobuf copy, and its symbols never reach the global scope where libprotobuf and gRPC live.
// The object built by the real constructor carries the real vtable, so every virtual call lands
// in the isolated library.
//
// Link this object into every executable that links both the engine and gRPC/protobuf
// (server/CMakeLists.txt does), with -Wl,--as-needed.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

void* Resolve(const char* symbol) {
  static void* const library = [] {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    // The sanitizer runtimes refuse RTLD_DEEPBIND, and without it the two protobuf copies mix.
    std::fprintf(stderr,
                 "fatal: the engine + gRPC isolation of libsentencepiece needs RTLD_DEEPBIND, "
                 "which AddressSanitizer/ThreadSanitizer builds cannot use\n");
    std::abort();
#endif
    void* handle = dlopen("libsentencepiece.so.0", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (handle == nullptr) {
      std::fprintf(stderr, "fatal: cannot load libsentencepiece.so.0: %s\n", dlerror());
      std::abort();
    }
    return handle;
  }();
  void* address = dlsym(library, symbol);
  if (address == nullptr) {
    std::fprintf(stderr, "fatal: libsentencepiece.so.0 lacks %s\n", symbol);
    std::abort();
  }
  return address;
}

}  // namespace

// Member functions are called with `this` as the first argument (and, for a std::string result,
// the hidden return slot before it): free functions with the same parameters share that ABI.
extern "C" {
void MemoriaSpmConstruct(void* self) __asm__("_ZN13sentencepiece22SentencePieceProcessorC1Ev");
void MemoriaSpmStatusIgnoreError(void* self) __asm__(
    "_ZN13sentencepiece4util6Status11IgnoreErrorEv");
void MemoriaSpmStatusDestroy(void* self) __asm__("_ZN13sentencepiece4util6StatusD1Ev");
}
std::string MemoriaSpmStatusToString(const void* self) __asm__(
    "_ZNK13sentencepiece4util6Status8ToStringB5cxx11Ev");

void MemoriaSpmConstruct(void* self) {
  static auto real =
      reinterpret_cast<void (*)(void*)>(Resolve("_ZN13sentencepiece22SentencePieceProcessorC1Ev"));
  real(self);
}

void MemoriaSpmStatusIgnoreError(void* self) {
  static auto real =
      reinterpret_cast<void (*)(void*)>(Resolve("_ZN13sentencepiece4util6Status11IgnoreErrorEv"));
  real(self);
}

void MemoriaSpmStatusDestroy(void* self) {
  static auto real =
      reinterpret_cast<void (*)(void*)>(Resolve("_ZN13sentencepiece4util6StatusD1Ev"));
  real(self);
}

std::string MemoriaSpmStatusToString(const void* self) {
  static auto real = reinterpret_cast<std::string (*)(const void*)>(
      Resolve("_ZNK13sentencepiece4util6Status8ToStringB5cxx11Ev"));
  return real(self);
}
