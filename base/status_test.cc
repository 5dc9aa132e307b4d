#include "base/status.h"

#include <gtest/gtest.h>

namespace memoria {
namespace {

StatusOr<int> ParsePositive(int v) {
  if (v <= 0) return InvalidArgumentError("value " + std::to_string(v) + " is not positive");
  return v;
}

Status UsesMacros(int v, int* out) {
  ASSIGN_OR_RETURN(int x, ParsePositive(v));
  RETURN_IF_ERROR(x > 100 ? OutOfRangeError("too big") : Status::Ok());
  *out = x;
  return Status::Ok();
}

TEST(StatusTest, OkAndErrorsCarryCodeAndMessage) {
  EXPECT_TRUE(Status::Ok().ok());
  Status s = NotFoundError("tensor 'x' is missing");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.ToString(), "NOT_FOUND: tensor 'x' is missing");
  EXPECT_EQ(s.WithContext("model.safetensors").message(), "model.safetensors: tensor 'x' is missing");
}

TEST(StatusTest, MacrosPropagate) {
  int out = 0;
  EXPECT_TRUE(UsesMacros(5, &out).ok());
  EXPECT_EQ(out, 5);
  EXPECT_EQ(UsesMacros(-1, &out).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(UsesMacros(101, &out).code(), StatusCode::kOutOfRange);
}

TEST(StatusDeathTest, ValueOfErrorAborts) {
  StatusOr<int> bad = DataLossError("checksum");
  EXPECT_DEATH((void)bad.value(), "checksum");
}

}  // namespace
}  // namespace memoria
