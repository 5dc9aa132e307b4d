#include "server/request_validation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

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
  v1::GenerateRequest extractive;
  extractive.set_prompt("Once upon a time");
  extractive.mutable_params()->set_extractive(true);
  auto refused = ValidateGenerateRequest(extractive, Limits());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(refused.status().message().find("extractive"), std::string::npos);
  // Beam search is the T5 path's; num_beams 1 is greedy and allowed.
  v1::GenerateRequest beams;
  beams.set_prompt("Once upon a time");
  beams.mutable_params()->set_num_beams(1);
  EXPECT_TRUE(ValidateGenerateRequest(beams, Limits()).ok());
  beams.mutable_params()->set_num_beams(2);
  EXPECT_EQ(ValidateGenerateRequest(beams, Limits()).status().code(), StatusCode::kUnimplemented);
  beams.mutable_params()->set_num_beams(0);
  beams.mutable_params()->set_length_penalty(0.5f);
  EXPECT_EQ(ValidateGenerateRequest(beams, Limits()).status().code(), StatusCode::kUnimplemented);
}

TEST(RequestValidationTest, LumenExtractiveIsCarriedAndEndsAtEos) {
  v1::GenerateRequest request;
  request.set_question("who?");
  request.set_retrieve_top_k(2);
  v1::T5Settings settings;
  settings.set_max_passages(10);
  auto plain = ValidateLumenRequest(request, settings, Limits());
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_FALSE(plain->extractive);
  request.mutable_params()->set_extractive(true);
  request.mutable_params()->set_num_beams(4);
  auto spans = ValidateLumenRequest(request, settings, Limits());
  ASSERT_TRUE(spans.ok()) << spans.status().ToString();
  EXPECT_TRUE(spans->extractive);
  EXPECT_EQ(spans->num_beams, 4);
  request.mutable_params()->set_num_beams(1);
  request.mutable_params()->set_ignore_eos(true);
  auto endless = ValidateLumenRequest(request, settings, Limits());
  EXPECT_EQ(endless.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(endless.status().message().find("ignore_eos cannot be combined with extractive"),
            std::string::npos);
}

// A NaN length_penalty once passed the `< 0` check and reached beam search, where it made every
// hypothesis score NaN (found by fuzz/request_fuzzer); infinities are refused as well.
TEST(RequestValidationTest, LumenLengthPenaltyMustBeFinite) {
  v1::GenerateRequest request;
  request.set_question("who?");
  request.set_retrieve_top_k(2);
  request.mutable_params()->set_num_beams(4);
  v1::T5Settings settings;
  settings.set_max_passages(10);
  for (float bad : {std::nanf(""), -std::nanf(""), std::numeric_limits<float>::infinity(), -0.5f}) {
    request.mutable_params()->set_length_penalty(bad);
    auto options = ValidateLumenRequest(request, settings, Limits());
    ASSERT_EQ(options.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(options.status().message().find("length_penalty must be a finite number >= 0"),
              std::string::npos);
  }
  request.mutable_params()->set_length_penalty(0.5f);
  auto options = ValidateLumenRequest(request, settings, Limits());
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  EXPECT_EQ(options->length_penalty, 0.5f);
  EXPECT_EQ(options->num_beams, 4);
}

TEST(RequestValidationTest, LumenOptionsCarryTheServersIceformerSetting) {
  v1::GenerateRequest request;
  request.set_question("who?");
  request.set_retrieve_top_k(2);
  v1::T5Settings settings;
  settings.set_max_passages(10);
  auto exact = ValidateLumenRequest(request, settings, Limits());
  ASSERT_TRUE(exact.ok()) << exact.status().ToString();
  EXPECT_FALSE(exact->iceformer.enabled);  // iceformer_min_keys 0 = off

  settings.set_iceformer_min_keys(8192);
  settings.set_iceformer_top_k(40);
  auto ice = ValidateLumenRequest(request, settings, Limits());
  ASSERT_TRUE(ice.ok()) << ice.status().ToString();
  EXPECT_TRUE(ice->iceformer.enabled);
  EXPECT_EQ(ice->iceformer.min_keys, 8192);
  EXPECT_EQ(ice->iceformer.options.top_k, 40);
}

TEST(RequestValidationTest, IngestPassageNeedsIdAndText) {
  v1::Passage passage;
  passage.set_text("some text");
  Status s = ValidateIngestPassage(passage, 3);
  ASSERT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "passage 3 has an empty id");
  passage.set_id("p7");
  passage.clear_text();
  s = ValidateIngestPassage(passage, 4);
  ASSERT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "passage 4 ('p7') has no text");
  passage.set_text("x");
  EXPECT_TRUE(ValidateIngestPassage(passage, 0).ok());
}

}  // namespace
}  // namespace memoria
