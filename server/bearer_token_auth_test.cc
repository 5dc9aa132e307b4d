#include "server/bearer_token_auth.h"

#include <google/protobuf/descriptor.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>

#include "base/testing.h"
#include "server/memoria_service.h"
#include "tests/server_process.h"

namespace memoria {
namespace {

constexpr char kToken[] = "s3cr3t-Token_0123456789";
constexpr char kOtherToken[] = "another.token~abcdefghij==";

using Metadata = std::multimap<grpc::string_ref, grpc::string_ref>;

std::unique_ptr<BearerTokenAuth> Auth() {
  auto auth = BearerTokenAuth::FromTokens({kToken, kOtherToken});
  EXPECT_TRUE(auth.ok()) << auth.status().ToString();
  return auth.ok() ? std::move(*auth) : nullptr;
}

TEST(BearerTokenAuthTest, ConstantTimeEqualsIsPlainEquality) {
  EXPECT_TRUE(ConstantTimeEquals("abcdef", "abcdef"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("Xbcdef", "abcdef"));   // first byte
  EXPECT_FALSE(ConstantTimeEquals("abcdeX", "abcdef"));   // last byte
  EXPECT_FALSE(ConstantTimeEquals("abcde", "abcdef"));    // a prefix
  EXPECT_FALSE(ConstantTimeEquals("abcdefg", "abcdef"));  // longer, same start
  EXPECT_FALSE(ConstantTimeEquals("", "abcdef"));
  EXPECT_FALSE(ConstantTimeEquals("abcdef", ""));
  // A NUL in the sent value is not padding: "abc\0" differs from "abc".
  EXPECT_FALSE(ConstantTimeEquals(std::string_view("abc\0", 4), "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", std::string_view("abc\0", 4)));
  // Bytes above 0x7f compare as bytes.
  EXPECT_TRUE(ConstantTimeEquals("\xff\x80", "\xff\x80"));
  EXPECT_FALSE(ConstantTimeEquals("\xff\x80", "\xff\x81"));
}

TEST(BearerTokenAuthTest, TokenSyntaxIsRfc6750) {
  EXPECT_TRUE(IsBearerTokenSyntax("abcXYZ019-._~+/"));
  EXPECT_TRUE(IsBearerTokenSyntax("abc=="));
  EXPECT_FALSE(IsBearerTokenSyntax(""));
  EXPECT_FALSE(IsBearerTokenSyntax("=abc"));
  EXPECT_FALSE(IsBearerTokenSyntax("ab=c"));
  EXPECT_FALSE(IsBearerTokenSyntax("ab c"));
  EXPECT_FALSE(IsBearerTokenSyntax("abc\""));
  EXPECT_FALSE(IsBearerTokenSyntax("abc\n"));
}

TEST(BearerTokenAuthTest, ParsesTheBearerHeader) {
  EXPECT_EQ(ParseBearerToken("Bearer abc123"), "abc123");
  EXPECT_EQ(ParseBearerToken("bearer abc123"), "abc123");  // the scheme is case-insensitive
  EXPECT_EQ(ParseBearerToken("BEARER   abc123=="), "abc123==");
  EXPECT_EQ(ParseBearerToken("Bearer"), "");
  EXPECT_EQ(ParseBearerToken("Bearer "), "");
  EXPECT_EQ(ParseBearerToken("Bearer    "), "");
  EXPECT_EQ(ParseBearerToken("Bearerabc123"), "");
  EXPECT_EQ(ParseBearerToken("Bearer\tabc123"), "");
  EXPECT_EQ(ParseBearerToken("Basic abc123"), "");
  EXPECT_EQ(ParseBearerToken("abc123"), "");
  EXPECT_EQ(ParseBearerToken("Bearer abc 123"), "");
  EXPECT_EQ(ParseBearerToken("Bearer abc123 "), "");
  EXPECT_EQ(ParseBearerToken(" Bearer abc123"), "");
}

TEST(BearerTokenAuthTest, ChecksTheAuthorizationMetadata) {
  auto auth = Auth();
  ASSERT_NE(auth, nullptr);
  EXPECT_EQ(auth->size(), 2u);
  const std::string key = "authorization";
  const std::string right = std::string("Bearer ") + kToken;
  const std::string second = std::string("Bearer ") + kOtherToken;
  const std::string wrong = "Bearer wrong-token-0123456789";
  const std::string prefix = std::string("Bearer ") + std::string(kToken).substr(0, 10);
  const std::string basic = std::string("Basic ") + kToken;
  const std::string other_key = "x-api-key";

  EXPECT_TRUE(auth->Check({{key, right}}).ok());
  EXPECT_TRUE(auth->Check({{key, second}}).ok());
  EXPECT_TRUE(auth->Check({{other_key, wrong}, {key, right}}).ok());

  auto expect_refused = [&](const Metadata& metadata, const std::string& why) {
    const Status status = auth->Check(metadata);
    EXPECT_EQ(status.code(), StatusCode::kUnauthenticated) << why;
    EXPECT_NE(status.message().find(why), std::string::npos) << status.message();
    // Neither the accepted tokens nor what was sent appear in the message.
    for (const std::string& secret :
         {std::string(kToken), std::string(kOtherToken), std::string("wrong-token-0123456789")}) {
      EXPECT_EQ(status.message().find(secret), std::string::npos) << status.message();
    }
  };
  expect_refused({}, "missing bearer token");
  expect_refused({{other_key, right}}, "missing bearer token");
  expect_refused({{key, wrong}}, "invalid bearer token");
  expect_refused({{key, prefix}}, "invalid bearer token");
  expect_refused({{key, basic}}, "malformed");
  expect_refused({{key, "Bearer"}}, "malformed");
  expect_refused({{key, right}, {key, right}}, "more than one");
}

TEST(BearerTokenAuthTest, TokenFileHasOneTokenPerLineAndErrorsHideTheContents) {
  const std::string dir = testing::MakeTempDir("memoria-token-file");
  const std::string path = dir + "/tokens";
  testing::WriteFile(path, std::string("\n  ") + kToken + "  \r\n\n" + kOtherToken + "\n");
  auto auth = BearerTokenAuth::FromFile(path);
  ASSERT_TRUE(auth.ok()) << auth.status().ToString();
  EXPECT_EQ((*auth)->size(), 2u);
  const std::string second = std::string("Bearer ") + kOtherToken;
  EXPECT_TRUE((*auth)->Check({{"authorization", second}}).ok());

  auto missing = BearerTokenAuth::FromFile(dir + "/none");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("auth.token_file: cannot read " + dir + "/none"),
            std::string::npos)
      << missing.status().message();

  testing::WriteFile(path, "\n \n");
  auto empty = BearerTokenAuth::FromFile(path);
  EXPECT_EQ(empty.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(empty.status().message().find("holds no token"), std::string::npos);

  const std::string short_secret = "tooShort123";
  testing::WriteFile(path, std::string(kToken) + "\n" + short_secret + "\n");
  auto too_short = BearerTokenAuth::FromFile(path);
  EXPECT_EQ(too_short.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(too_short.status().message().find(path + " line 2: a token must be 16 to 4096 "
                                                     "characters, this one has 11"),
            std::string::npos)
      << too_short.status().message();
  EXPECT_EQ(too_short.status().message().find(short_secret), std::string::npos);

  const std::string spaced_secret = "almost a valid token 123";
  testing::WriteFile(path, spaced_secret + "\n");
  auto spaced = BearerTokenAuth::FromFile(path);
  EXPECT_NE(spaced.status().message().find("line 1: a token may hold only"), std::string::npos)
      << spaced.status().message();
  EXPECT_EQ(spaced.status().message().find(spaced_secret), std::string::npos);

  EXPECT_EQ(BearerTokenAuth::FromTokens({}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(BearerTokenAuth::FromTokens({kToken, "x"}).status().message().find("bearer token 1"),
            std::string::npos);
}

// Every RPC of the Memoria service, called in-process through the decorator: without a token
// each is refused (so none falls through to the generated base class, which would answer
// UNIMPLEMENTED, or reaches the service); with one each reaches the service, which is still
// loading and answers on its own. Refusals are counted in the metrics.
TEST(BearerTokenAuthTest, EveryMemoriaMethodIsCheckedThenForwarded) {
  auto auth = Auth();
  ASSERT_NE(auth, nullptr);
  v1::ServerConfig config;
  Metrics metrics;
  MemoriaService service(config, &metrics);
  AuthenticatedMemoriaService authenticated(&service, auth.get(), &metrics);
  grpc::ServerBuilder builder;
  builder.RegisterService(&authenticated);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  grpc::GenericStub stub(server->InProcessChannel(grpc::ChannelArguments()));

  auto call = [&](const std::string& method, const std::string& authorization) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!authorization.empty()) context.AddMetadata("authorization", authorization);
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1), response;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                   [&](grpc::Status status) { done.set_value(status); });
    return done.get_future().get();
  };

  const google::protobuf::ServiceDescriptor* descriptor =
      v1::GenerateRequest::descriptor()->file()->FindServiceByName("Memoria");
  ASSERT_NE(descriptor, nullptr);
  ASSERT_EQ(descriptor->method_count(), 6) << "a new RPC: add it to AuthenticatedMemoriaService";
  for (int i = 0; i < descriptor->method_count(); ++i) {
    const std::string method = "/memoria.v1.Memoria/" + descriptor->method(i)->name();
    const grpc::Status refused = call(method, "");
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << method << ": " << refused.error_message();
    const grpc::Status wrong = call(method, "Bearer wrong-token-0123456789");
    EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method;
    const grpc::Status admitted = call(method, std::string("Bearer ") + kToken);
    EXPECT_NE(admitted.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method;
    EXPECT_NE(admitted.error_code(), grpc::StatusCode::UNIMPLEMENTED) << method;
    EXPECT_NE(admitted.error_code(), grpc::StatusCode::OK) << method;  // still loading
  }
  const std::string text = metrics.RenderPrometheus();
  EXPECT_EQ(
      testing::MetricValue(text, "memoria_request_failures_total{reason=\"unauthenticated\"}"),
      2 * descriptor->method_count())
      << text;
  EXPECT_EQ(testing::MetricValue(
                text, "memoria_requests_total{method=\"Generate\",code=\"UNAUTHENTICATED\"}"),
            2)
      << text;
  server->Shutdown(std::chrono::system_clock::now());
}

}  // namespace
}  // namespace memoria
