#include "tools/commands.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace memoria {
namespace {

std::vector<std::string> g_last_args;

Status RunEcho(const CommandArgs& args) {
  RETURN_IF_ERROR(args.CheckKnown({"name", "count", "verbose"}));
  ASSIGN_OR_RETURN(std::string name, args.Require("name"));
  ASSIGN_OR_RETURN(int64_t count, args.GetInt("count", 1));
  g_last_args = {name, std::to_string(count), args.Get("verbose", "false")};
  return Status::Ok();
}

Status RunFail(const CommandArgs&) { return NotFoundError("tensor 'x' is missing"); }

const bool registered_echo =
    RegisterCommand({"test-echo", "records its flags (test only)", "--name N\n--count C", RunEcho});
const bool registered_fail =
    RegisterCommand({"test-fail", "always fails (test only)", "", RunFail});

struct Result {
  int code;
  std::string out;
  std::string err;
};

Result RunMemoria(std::vector<std::string> args) {
  args.insert(args.begin(), "memoria");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  const int code = RunCommandLine(static_cast<int>(args.size()), argv.data());
  Result r{code, ::testing::internal::GetCapturedStdout(), ::testing::internal::GetCapturedStderr()};
  return r;
}

TEST(CommandArgsTest, ParsesAllForms) {
  auto args = CommandArgs::Parse({"--a", "1", "--b=two", "--flag", "--neg", "-5", "--c=x=y",
                                  "--last"});
  ASSERT_TRUE(args.ok()) << args.status().ToString();
  EXPECT_EQ(args->Get("a"), "1");
  EXPECT_EQ(args->Get("b"), "two");
  EXPECT_EQ(args->Get("flag"), "true");
  EXPECT_EQ(args->GetInt("neg", 0).value(), -5);
  EXPECT_EQ(args->Get("c"), "x=y");
  EXPECT_EQ(args->Get("last"), "true");
  EXPECT_EQ(args->Get("missing", "dflt"), "dflt");
  EXPECT_TRUE(args->Has("flag"));
  EXPECT_FALSE(args->Has("missing"));
  EXPECT_EQ(args->GetInt("missing", 42).value(), 42);
  EXPECT_DOUBLE_EQ(args->GetDouble("a", 0).value(), 1.0);
}

TEST(CommandArgsTest, RejectsMalformedArguments) {
  EXPECT_EQ(CommandArgs::Parse({"positional"}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CommandArgs::Parse({"--"}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CommandArgs::Parse({"--=3"}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CommandArgs::Parse({"--a", "1", "--a", "2"}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CommandArgs::Parse({"--a", "1", "stray"}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(CommandArgsTest, TypedGettersNameTheFlag) {
  auto args = CommandArgs::Parse({"--n", "12x", "--t", "abc", "--big", "99999999999999999999",
                                  "--inf", "inf"});
  ASSERT_TRUE(args.ok());
  auto n = args->GetInt("n", 0);
  ASSERT_EQ(n.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(n.status().message(), "--n expects an integer, got '12x'");
  EXPECT_EQ(args->GetInt("big", 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(args->GetDouble("t", 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(args->GetDouble("inf", 0).status().code(), StatusCode::kInvalidArgument);
  auto r = args->Require("model");
  ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "missing required flag --model");
  auto known = args->CheckKnown({"n", "t"});
  ASSERT_EQ(known.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(known.message(), "unknown flag(s): --big, --inf");
}

TEST(CommandArgsTest, ListsSplitAtTheSeparatorAndDropEmptyItems) {
  auto args = CommandArgs::Parse({"--ids", "a,,b,", "--codecs", "pq:g=8,bits=8;btr"});
  ASSERT_TRUE(args.ok());
  EXPECT_EQ(args->GetList("ids", ','), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(args->GetList("codecs", ';'), (std::vector<std::string>{"pq:g=8,bits=8", "btr"}));
  EXPECT_TRUE(args->GetList("absent", ',').empty());
}

TEST(CommandsTest, HelpListsCommandsWithSummaries) {
  for (const char* help : {"help", "--help", "-h"}) {
    Result r = RunMemoria({help});
    EXPECT_EQ(r.code, 0);
    EXPECT_NE(r.out.find("test-echo"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("records its flags (test only)"), std::string::npos);
    EXPECT_NE(r.out.find("test-fail"), std::string::npos);
  }
  Result one = RunMemoria({"help", "test-echo"});
  EXPECT_EQ(one.code, 0);
  EXPECT_NE(one.out.find("--count C"), std::string::npos) << one.out;
  Result flag = RunMemoria({"test-echo", "--help"});
  EXPECT_EQ(flag.code, 0);
  EXPECT_NE(flag.out.find("--name N"), std::string::npos);
}

TEST(CommandsTest, NoOrUnknownCommandIsUsageError) {
  Result none = RunMemoria({});
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.err.find("test-echo"), std::string::npos);
  Result unknown = RunMemoria({"frobnicate"});
  EXPECT_EQ(unknown.code, 2);
  EXPECT_NE(unknown.err.find("error: unknown command 'frobnicate'"), std::string::npos);
  EXPECT_NE(unknown.err.find("test-echo"), std::string::npos) << "help follows the error";
  EXPECT_EQ(RunMemoria({"help", "frobnicate"}).code, 2);
}

TEST(CommandsTest, DispatchesParsedFlags) {
  Result r = RunMemoria({"test-echo", "--name", "abc", "--count=3", "--verbose"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(g_last_args, (std::vector<std::string>{"abc", "3", "true"}));
}

TEST(CommandsTest, MalformedArgumentsAreUsageErrors) {
  Result r = RunMemoria({"test-echo", "stray"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("error: INVALID_ARGUMENT"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--name N"), std::string::npos) << "usage follows the error";
}

TEST(CommandsTest, FailuresPrintStatusAndExitOne) {
  Result r = RunMemoria({"test-fail"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "error: NOT_FOUND: tensor 'x' is missing\n");
  Result missing = RunMemoria({"test-echo", "--count", "2"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_EQ(missing.err, "error: INVALID_ARGUMENT: missing required flag --name\n");
}

}  // namespace
}  // namespace memoria
