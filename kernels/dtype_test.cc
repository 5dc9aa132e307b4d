#include "kernels/dtype.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace memoria {
namespace {

// 16-bit elements stored at an odd address (a safetensors tensor may start at any byte), 11 of
// them: one 8-wide vector step of the f16 path plus a 3-element tail.
std::vector<char> OddlyPlaced(const std::vector<uint16_t>& values) {
  std::vector<char> buffer(1 + 2 * values.size());
  std::memcpy(buffer.data() + 1, values.data(), 2 * values.size());
  return buffer;
}

TEST(ConvertToF32, ReadsUnalignedF16) {
  // 1, -2, 0.5, 0, 65504 (largest f16), 0.333251953125, -1, 3.140625, then 1, -2, 0.5 again.
  const std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x3800, 0x0000, 0x7BFF, 0x3555,
                                     0xBC00, 0x4248, 0x3C00, 0xC000, 0x3800};
  const std::vector<float> want = {1.0f, -2.0f, 0.5f,      0.0f, 65504.0f, 0.333251953125f,
                                   -1.0f, 3.140625f, 1.0f, -2.0f, 0.5f};
  const std::vector<char> buffer = OddlyPlaced(f16);
  std::vector<float> got(f16.size(), -7.0f);
  ConvertToF32(DType::kF16, buffer.data() + 1, got.data(), static_cast<int64_t>(got.size()));
  EXPECT_EQ(got, want);
}

TEST(ConvertToF32, ReadsUnalignedBf16) {
  // 1, -2, 0.5, 3.140625 (0x4049), and 0x0001: the smallest positive subnormal, 2^-133.
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC000, 0x3F00, 0x4049, 0x0001};
  std::vector<float> want = {1.0f, -2.0f, 0.5f, 3.140625f, 0.0f};
  const uint32_t smallest = 0x00010000u;
  std::memcpy(&want[4], &smallest, 4);
  const std::vector<char> buffer = OddlyPlaced(bf16);
  std::vector<float> got(bf16.size(), -7.0f);
  ConvertToF32(DType::kBF16, buffer.data() + 1, got.data(), static_cast<int64_t>(got.size()));
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace memoria
