#include "base/testing.h"

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace memoria::testing {

// The build bakes in where the sources and the build tree are, so a test binary finds them
// however it is started (ctest, directly, from another directory); the environment overrides.
std::string SourceDir() {
  if (const char* dir = std::getenv("MEMORIA_SOURCE_DIR"); dir && *dir) return dir;
  return MEMORIA_DEFAULT_SOURCE_DIR;
}

std::string SharedDir() {
  if (const char* dir = std::getenv("MEMORIA_SHARED_DIR"); dir && *dir) return dir;
  return SourceDir() + "/../shared";
}

bool SharedDirAvailable() { return std::filesystem::is_directory(SharedDir()); }

bool InCi() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

std::string SharedPath(const std::string& relative) { return SharedDir() + "/" + relative; }

std::string BuildDir() {
  if (const char* dir = std::getenv("MEMORIA_BUILD_DIR"); dir && *dir) return dir;
  return MEMORIA_DEFAULT_BUILD_DIR;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::pair<int, std::string> RunShell(const std::string& command) {
  std::string out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, ""};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string MakeTempDir(const std::string& prefix) {
  std::random_device rd;
  auto base = std::filesystem::temp_directory_path();
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto path = base / (prefix + "-" + std::to_string(rd()));
    if (std::filesystem::create_directory(path)) return path.string();
  }
  ADD_FAILURE() << "could not create a temp dir for " << prefix;
  return base.string();
}

NpyArray ReadNpyFloat32(const std::string& path) {
  NpyArray out;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot open " << path;
    return out;
  }
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) {
    ADD_FAILURE() << path << " is not a .npy file";
    return out;
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len, header_start;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    header_start = 10;
  } else {
    uint32_t n;
    std::memcpy(&n, bytes.data() + 8, 4);
    header_len = n;
    header_start = 12;
  }
  std::string header = bytes.substr(header_start, header_len);
  if (header.find("'<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos) {
    ADD_FAILURE() << path << ": expected little-endian float32 C-order, header " << header;
    return out;
  }
  auto lp = header.find("'shape': (");
  auto rp = header.find(')', lp);
  std::string dims = header.substr(lp + 10, rp - lp - 10);
  long count = 1;
  size_t pos = 0;
  while (pos < dims.size()) {
    while (pos < dims.size() && (dims[pos] == ' ' || dims[pos] == ',')) ++pos;
    if (pos >= dims.size()) break;
    long v = std::strtol(dims.c_str() + pos, nullptr, 10);
    out.shape.push_back(v);
    count *= v;
    while (pos < dims.size() && dims[pos] != ',') ++pos;
  }
  size_t data_start = header_start + header_len;
  if (bytes.size() - data_start != static_cast<size_t>(count) * 4) {
    ADD_FAILURE() << path << ": data size " << bytes.size() - data_start << " != " << count * 4;
    return out;
  }
  out.data.resize(count);
  std::memcpy(out.data.data(), bytes.data() + data_start, count * 4);
  return out;
}

float MaxAbsDiff(const float* a, const float* b, long n) {
  float m = 0;
  for (long i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

double Nmse(const float* a, const float* ref, long n) {
  double num = 0, den = 0;
  for (long i = 0; i < n; ++i) {
    double d = double(a[i]) - ref[i];
    num += d * d;
    den += double(ref[i]) * ref[i];
  }
  return den == 0 ? num : num / den;
}

}  // namespace memoria::testing
