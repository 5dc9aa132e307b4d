// The workload of the store crash test, shared by the test (tests/store_crash_test.cc) and its
// child process (tests/store_crash_child.cc): deterministic batches, so the parent knows what
// every acknowledged batch holds without being told.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "storage/passage_store.h"

namespace memoria::crash_test {

inline constexpr int64_t kDim = 48;
inline constexpr const char* kChildDirEnv = "MEMORIA_CRASH_CHILD_DIR";
inline constexpr const char* kChildFdEnv = "MEMORIA_CRASH_CHILD_FD";
inline constexpr const char* kChildIterEnv = "MEMORIA_CRASH_CHILD_ITER";
inline constexpr const char* kChildSyncEnv = "MEMORIA_CRASH_CHILD_SYNC";

inline StoreIdentity Identity() {
  StoreIdentity id;
  id.model_fingerprint = 0xfeedface12345678ull;
  id.layer_split = 3;
  id.codec = *CodecSpec::Parse("btr", kDim);
  return id;
}

// Deterministic contents so the parent knows what every batch holds.
inline int BatchSize(int64_t batch) { return 1 + static_cast<int>((batch * 7919) % 8); }
inline int64_t Tokens(int64_t batch, int k) { return 1 + (batch * 31 + k * 17) % 60; }
inline std::string PassageId(int iter, int64_t batch, int k) {
  return "i" + std::to_string(iter) + "-b" + std::to_string(batch) + "-k" + std::to_string(k);
}
inline std::vector<float> Memory(int iter, int64_t batch, int k) {
  std::mt19937_64 rng(iter * 1000003ull + batch * 101ull + k);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> m(Tokens(batch, k) * kDim);
  for (auto& v : m) v = g(rng);
  return m;
}

}  // namespace memoria::crash_test
