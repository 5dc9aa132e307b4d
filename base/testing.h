// Helpers shared by the test binaries (linked as memoria_testing).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace memoria::testing {

// The directory holding the project's shared data (models/, golden/, data/).
// MEMORIA_SHARED_DIR if set, else <source dir>/../shared. When the directory is missing, the
// calling test FAILS if CI=true and is skipped otherwise (GTEST_SKIP from the caller's macro).
std::string SharedDir();

// True when the shared directory exists. Use via MEMORIA_REQUIRE_SHARED().
bool SharedDirAvailable();
// True when the environment says CI=true: missing shared data is then a failure, not a skip.
bool InCi();

// Path of a file under the shared directory ("models/stories260K/stories260K.bin").
std::string SharedPath(const std::string& relative);

// The build directory of the running test (MEMORIA_BUILD_DIR), for tools built beside the tests.
std::string BuildDir();
// The source tree (MEMORIA_SOURCE_DIR, default: the one this build was configured from).
std::string SourceDir();

// The whole file as bytes ("" if it cannot be read; the caller's checks then fail).
std::string ReadFile(const std::string& path);
// Replaces the file's contents with `bytes` (for building corrupted copies).
void WriteFile(const std::string& path, const std::string& bytes);

// Runs `command` through the shell with stderr merged into stdout. Returns (exit status, output);
// the status is -1 when the command could not start or did not exit normally.
std::pair<int, std::string> RunShell(const std::string& command);

// A fresh empty directory under the system temp dir, removed by the caller if it cares.
std::string MakeTempDir(const std::string& prefix);

// Reads a .npy file holding float32 (little endian, C order). Fails the test on bad input.
struct NpyArray {
  std::vector<long> shape;
  std::vector<float> data;
};
NpyArray ReadNpyFloat32(const std::string& path);

// Max |a - b| over two equally sized arrays.
float MaxAbsDiff(const float* a, const float* b, long n);
// Normalised mean squared error: sum (a-b)^2 / sum b^2 (b is the reference).
double Nmse(const float* a, const float* ref, long n);

}  // namespace memoria::testing

// Skips (local) or fails (CI=true) the current test when ../shared is missing.
#define MEMORIA_REQUIRE_SHARED()                                                       \
  do {                                                                                 \
    if (!::memoria::testing::SharedDirAvailable()) {                                   \
      if (::memoria::testing::InCi())                                                  \
        GTEST_FAIL() << "shared data dir missing: " << ::memoria::testing::SharedDir(); \
      else                                                                             \
        GTEST_SKIP() << "shared data dir missing: " << ::memoria::testing::SharedDir(); \
    }                                                                                  \
  } while (0)
