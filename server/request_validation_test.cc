#include "server/request_validation.h"

#include <gtest/gtest.h>

namespace memoria {
namespace {

RequestLimits Limits() {
  RequestLimits limits;
  limits.max_prompt_tokens = 8;
  limits.max_new_tokens = 100;
  return limits;
}

TEST(RequestValidationTest, DefaultsAndMappingOfDecodingParams) {
  v1::GenerateRequest request;
  request.set_prompt("hi");
  auto options = ValidateGenerateRequest(request, Limits());
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  EXPECT_EQ(options->max_new_tokens, 100);   // default 128 capped at the limit
  EXPECT_EQ(options->sampling.top_p, 1.0f);  // proto3 0 = unset
  EXPECT_TRUE(options->stop_at_eos);
  request.mutable_params()->set_max_new_tokens(5);
  request.mutable_params()->set_temperature(0.7f);
  request.mutable_params()->set_top_k(40);
  request.mutable_params()->set_seed(9);
  request.mutable_params()->add_stop("\n");
  request.mutable_params()->set_ignore_eos(true);
  options = ValidateGenerateRequest(request, Limits());
  ASSERT_TRUE(options.ok());
  EXPECT_EQ(options->max_new_tokens, 5);
  EXPECT_FLOAT_EQ(options->sampling.temperature, 0.7f);
  EXPECT_EQ(options->sampling.top_k, 40);
  EXPECT_EQ(options->sampling.seed, 9u);
  EXPECT_EQ(options->stop_strings, std::vector<std::string>{"\n"});
  EXPECT_FALSE(options->stop_at_eos);
}

TEST(RequestValidationTest, PromptTokensAreCheckedWithNumbers) {
  EXPECT_TRUE(ValidatePromptTokens({1, 2, 3}, Limits(), 512).ok());
  Status too_long = ValidatePromptTokens(std::vector<int>(9, 5), Limits(), 512);
  EXPECT_EQ(too_long.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(too_long.message(), "prompt has 9 tokens, more than the limit of 8");
  Status bad_id = ValidatePromptTokens({1, 600}, Limits(), 512);
  EXPECT_EQ(bad_id.message(), "prompt token 1 has id 600, outside the vocabulary [0, 512)");
  EXPECT_EQ(ValidatePromptTokens({}, Limits(), 512).code(), StatusCode::kInvalidArgument);
}

TEST(RequestValidationTest, LumenFieldsAreUnimplemented) {
  v1::GenerateRequest request;
  request.set_retrieve_top_k(5);
  EXPECT_EQ(ValidateGenerateRequest(request, Limits()).status().code(), StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace memoria
