// End-to-end tests of the real memoria-server's transport security (TlsSettings and AuthSettings
// in proto/server_config.proto) with the stories260K model: TLS, mutual TLS and bearer tokens
// on TLS and on plaintext listeners, seen by real gRPC clients. The certificates (a CA, a server
// certificate for IP 127.0.0.1 and DNS localhost, a client certificate, and a second CA with a
// client certificate of its own) and the tokens are made fresh for every run, with the openssl
// command-line tool. Reflection being off by default is checked in server_e2e_test.cc.
//
// Three server configurations (TLS + tokens, mutual TLS, plaintext + token), one test each: a
// server is started on first use and kept for the rest of the process, so that ctest, which runs
// each test in a process of its own, starts each configuration once.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/testing.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "memoria.grpc.pb.h"
#include "tests/server_process.h"

namespace memoria {
namespace {

using testing::HttpGet;
using testing::MetricValue;
using testing::ServerProcess;

// 32 random characters of the token alphabet: a fresh secret per run, so that finding it in a
// log can only mean the server wrote it there.
std::string RandomToken() {
  static const char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device seed;
  std::mt19937_64 rng(seed());
  std::uniform_int_distribution<size_t> pick(0, sizeof kChars - 2);
  std::string token;
  for (int i = 0; i < 32; ++i) token += kChars[pick(rng)];
  return token;
}

// Writes the CAs, keys and certificates into `dir` (P-256 keys: quick to make); "" on success,
// else openssl's output.
std::string MakeCertificates(const std::string& dir) {
  const char* script = R"(set -e
key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $key -keyout ca.key -out ca.crt -days 2 -subj /CN=memoria-test-ca
openssl req -x509 $key -keyout other_ca.key -out other_ca.crt -days 2 -subj /CN=memoria-other-ca
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
# issue NAME CA SERIAL EXTFILE: NAME.key and NAME.crt, signed by CA
issue() {
  openssl req $key -keyout $1.key -out $1.csr -subj /CN=memoria-$1
  openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -set_serial $3 -days 2 -extfile $4 \
    -out $1.crt
}
issue server ca 1 server.ext
issue client ca 2 client.ext
issue stranger other_ca 3 client.ext
)";
  testing::WriteFile(dir + "/make.sh", script);
  auto [status, output] = testing::RunShell("cd '" + dir + "' && bash make.sh");
  return status == 0 ? "" : "openssl failed (" + std::to_string(status) + "):\n" + output;
}

void SetDeadline(grpc::ClientContext* context, int seconds) {
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

class ServerSecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::SharedDirAvailable()) return;
    state_ = new State;
    State& s = *state_;
    s.dir = testing::MakeTempDir("memoria-security-test");
    s.setup_error = MakeCertificates(s.dir);
    if (!s.setup_error.empty()) return;
    s.model = testing::ConvertStories260K();
    if (s.model.empty()) {
      s.setup_error = "memoria convert-llama2c failed";
      return;
    }
    s.token = RandomToken();
    s.second_token = RandomToken();
    s.wrong_token = RandomToken();
    testing::WriteFile(s.dir + "/tokens", s.token + "\n\n" + s.second_token + "\n");
    testing::WriteFile(s.dir + "/plain_token", s.token + "\n");
  }
  static void TearDownTestSuite() {
    if (state_ == nullptr) return;
    for (auto& [name, server] : state_->servers) delete server;
    std::error_code ec;
    if (!state_->model.empty()) std::filesystem::remove_all(state_->model, ec);
    std::filesystem::remove_all(state_->dir, ec);
    delete state_;
    state_ = nullptr;
  }
  void SetUp() override {
    MEMORIA_REQUIRE_SHARED();
    ASSERT_NE(state_, nullptr);
    ASSERT_EQ(state_->setup_error, "");
  }

  // The server of configuration "tls_token" (TLS + both tokens), "mtls" (mutual TLS, no tokens)
  // or "plain_token" (plaintext + the first token), started on first use. Null (with a test
  // failure) when it does not become ready.
  ServerProcess* Server(const std::string& name) {
    State& s = *state_;
    if (s.servers.count(name) == 0) {
      // debug: the most the server ever logs, so that "no secret in the log" covers every line.
      const std::string common =
          "model_dir: \"" + s.model + "\"\nthreads: 1\nlog_level: \"debug\"\n";
      const std::string tls = "tls {\n  certificate_chain_file: \"" + s.dir +
                              "/server.crt\"\n  private_key_file: \"" + s.dir + "/server.key\"\n";
      std::string config;
      if (name == "tls_token")
        config = common + tls + "}\nauth { token_file: \"" + s.dir + "/tokens\" }\n";
      else if (name == "mtls")
        config = common + tls + "  client_ca_file: \"" + s.dir +
                 "/ca.crt\"\n  require_client_certificate: true\n}\n";
      else
        config = common + "auth { token_file: \"" + s.dir + "/plain_token\" }\n";
      s.servers[name] = new ServerProcess(config);
      s.ready[name] = s.servers[name]->WaitReady();
    }
    EXPECT_TRUE(s.ready[name]) << name << " did not become ready:\n" << s.servers[name]->Log();
    return s.ready[name] ? s.servers[name] : nullptr;
  }

  std::string File(const std::string& name) const {
    return testing::ReadFile(state_->dir + "/" + name);
  }
  // TLS trusting ca.crt (or `ca`), with the client certificate `client` ("" = none).
  std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& client = "",
                                                const std::string& ca = "ca") const {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = File(ca + ".crt");
    if (!client.empty()) {
      options.pem_private_key = File(client + ".key");
      options.pem_cert_chain = File(client + ".crt");
    }
    return grpc::SslCredentials(options);
  }
  static std::unique_ptr<v1::Memoria::Stub> Stub(
      const ServerProcess& server, const std::shared_ptr<grpc::ChannelCredentials>& credentials,
      const std::string& target_name = "") {
    grpc::ChannelArguments args;
    if (!target_name.empty()) args.SetSslTargetNameOverride(target_name);
    return v1::Memoria::NewStub(grpc::CreateCustomChannel(server.target(), credentials, args));
  }

  // ServerInfo with "authorization: <authorization>" ("" = no such metadata).
  static grpc::Status Info(v1::Memoria::Stub* stub, const std::string& authorization = "") {
    grpc::ClientContext context;
    SetDeadline(&context, 20);
    if (!authorization.empty()) context.AddMetadata("authorization", authorization);
    v1::ServerInfoReply reply;
    return stub->ServerInfo(&context, v1::ServerInfoRequest(), &reply);
  }
  // Generate of 8 tokens; OK only when all 8 came back.
  static grpc::Status Generate(v1::Memoria::Stub* stub, const std::string& authorization = "") {
    grpc::ClientContext context;
    SetDeadline(&context, 20);
    if (!authorization.empty()) context.AddMetadata("authorization", authorization);
    v1::GenerateRequest request;
    request.set_prompt("Once upon a time");
    request.mutable_params()->set_max_new_tokens(8);
    v1::GenerateReply reply;
    grpc::Status status = stub->Generate(&context, request, &reply);
    if (status.ok() && (reply.completion_tokens() != 8 || reply.text().empty())) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          "generated " + std::to_string(reply.completion_tokens()) + " tokens");
    }
    return status;
  }
  std::string Bearer(const std::string& token) const { return "Bearer " + token; }

  // No token (accepted or sent) and no line of the server's private key appears in its log.
  void ExpectNoSecretIn(const std::string& log) const {
    for (const std::string* token : {&state_->token, &state_->second_token, &state_->wrong_token})
      EXPECT_EQ(log.find(*token), std::string::npos) << "a token is in the log:\n" << log;
    std::istringstream key(File("server.key"));
    std::string line;
    int key_lines = 0;
    while (std::getline(key, line)) {
      if (line.empty() || line.rfind("-----", 0) == 0) continue;
      ++key_lines;
      EXPECT_EQ(log.find(line), std::string::npos) << "private key bytes in the log:\n" << log;
    }
    EXPECT_GT(key_lines, 0);
  }

  struct State {
    std::string dir, model, setup_error;
    std::string token, second_token, wrong_token;
    std::map<std::string, ServerProcess*> servers;  // by configuration name, see Server()
    std::map<std::string, bool> ready;
  };
  static State* state_;
};
ServerSecurityTest::State* ServerSecurityTest::state_ = nullptr;

TEST_F(ServerSecurityTest, TlsAndBearerTokens) {
  ServerProcess* server = Server("tls_token");
  ASSERT_NE(server, nullptr);
  const std::string series = "memoria_request_failures_total{reason=\"unauthenticated\"}";
  EXPECT_EQ(MetricValue(HttpGet(server->http_port(), "/metrics").body, series), 0);

  // The server certificate names IP 127.0.0.1 (the address dialled) and DNS localhost; both
  // tokens of the file are accepted.
  for (const std::string name : {"", "localhost"}) {
    auto stub = Stub(*server, Tls(), name);
    grpc::Status info = Info(stub.get(), Bearer(state_->token));
    EXPECT_TRUE(info.ok()) << "'" << name << "': " << info.error_code() << " "
                           << info.error_message();
    grpc::Status generate = Generate(stub.get(), Bearer(state_->second_token));
    EXPECT_TRUE(generate.ok()) << "'" << name << "': " << generate.error_code() << " "
                               << generate.error_message();
  }
  // A client that trusts another CA refuses the server; a plaintext client cannot talk to it.
  EXPECT_EQ(Info(Stub(*server, Tls("", "other_ca")).get(), Bearer(state_->token)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Info(Stub(*server, grpc::InsecureChannelCredentials()).get(), Bearer(state_->token))
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);

  // Missing, wrong and malformed tokens.
  auto stub = Stub(*server, Tls());
  grpc::Status missing = Info(stub.get());
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(missing.error_message().find("missing bearer token"), std::string::npos)
      << missing.error_message();
  grpc::Status wrong = Generate(stub.get(), Bearer(state_->wrong_token));
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(wrong.error_message(), "invalid bearer token");
  EXPECT_EQ(Info(stub.get(), "Basic " + state_->token).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // The streaming call is checked too, before any token is generated.
  {
    grpc::ClientContext context;
    SetDeadline(&context, 20);
    v1::GenerateRequest request;
    request.set_prompt("Once upon a time");
    auto reader = stub->GenerateStream(&context, request);
    v1::GenerateStreamReply message;
    EXPECT_FALSE(reader->Read(&message));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  const std::string metrics = HttpGet(server->http_port(), "/metrics").body;
  EXPECT_EQ(MetricValue(metrics, series), 4) << metrics;
  EXPECT_EQ(MetricValue(metrics,
                        "memoria_requests_total{method=\"ServerInfo\",code=\"UNAUTHENTICATED\"}"),
            2)
      << metrics;

  // The health service needs no token (load balancers and orchestrators probe it).
  auto health = grpc::health::v1::Health::NewStub(grpc::CreateChannel(server->target(), Tls()));
  grpc::ClientContext context;
  SetDeadline(&context, 20);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("memoria.v1.Memoria");
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = health->Check(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  // The log says how the server listens and which calls it refused, and holds no secret.
  const std::string log = server->Log();
  EXPECT_NE(log.find("TLS, bearer-token auth with 2 token(s)"), std::string::npos) << log;
  EXPECT_NE(log.find("refused ServerInfo from"), std::string::npos) << log;
  EXPECT_NE(log.find("refused Generate from"), std::string::npos) << log;
  ExpectNoSecretIn(log);
}

TEST_F(ServerSecurityTest, MutualTlsNeedsAClientCertificateFromItsCa) {
  ServerProcess* server = Server("mtls");
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Info(Stub(*server, Tls()).get()).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Info(Stub(*server, Tls("stranger")).get()).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Info(Stub(*server, grpc::InsecureChannelCredentials()).get()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  auto stub = Stub(*server, Tls("client"));
  grpc::Status info = Info(stub.get());
  EXPECT_TRUE(info.ok()) << info.error_code() << " " << info.error_message();
  grpc::Status generate = Generate(stub.get());
  EXPECT_TRUE(generate.ok()) << generate.error_code() << " " << generate.error_message();

  const std::string log = server->Log();
  EXPECT_NE(log.find("TLS, client certificate required"), std::string::npos) << log;
  ExpectNoSecretIn(log);
}

TEST_F(ServerSecurityTest, TokensWorkOnAPlaintextListenerToo) {
  ServerProcess* server = Server("plain_token");
  ASSERT_NE(server, nullptr);
  auto stub = Stub(*server, grpc::InsecureChannelCredentials());
  EXPECT_EQ(Info(stub.get()).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Info(stub.get(), Bearer(state_->wrong_token)).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status generate = Generate(stub.get(), Bearer(state_->token));
  EXPECT_TRUE(generate.ok()) << generate.error_code() << " " << generate.error_message();

  const std::string log = server->Log();
  EXPECT_NE(log.find("plaintext, bearer-token auth with 1 token(s)"), std::string::npos) << log;
  EXPECT_NE(log.find("refused ServerInfo from"), std::string::npos) << log;
  ExpectNoSecretIn(log);
}

// `memoria ask`, the command-line client, against the TLS + token server: with the CA and a token
// file it gets its completion; without the token it reports UNAUTHENTICATED (exit 1); trusting
// another CA it never reaches the server and gives up at its deadline.
TEST_F(ServerSecurityTest, AskCommandSpeaksTlsAndTokens) {
  ServerProcess* server = Server("tls_token");
  ASSERT_NE(server, nullptr);
  const std::string ask = testing::BuildDir() + "/tools/memoria ask --server " + server->target() +
                          " --prompt 'Once upon a time' --max-new-tokens 8";
  const std::string dir = state_->dir;
  auto [rc, out] = testing::RunShell(ask + " --tls-ca " + dir + "/ca.crt --token-file " + dir +
                                     "/plain_token --verbose");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("8 answer tokens"), std::string::npos) << out;
  auto [rc_missing, missing] = testing::RunShell(ask + " --tls-ca " + dir + "/ca.crt");
  EXPECT_EQ(rc_missing, 1) << missing;
  EXPECT_NE(missing.find("UNAUTHENTICATED"), std::string::npos) << missing;
  EXPECT_NE(missing.find("missing bearer token"), std::string::npos) << missing;
  auto [rc_ca, other_ca] = testing::RunShell(ask + " --tls-ca " + dir + "/other_ca.crt --token-file " +
                                             dir + "/plain_token --deadline 2");
  EXPECT_EQ(rc_ca, 1) << other_ca;
  EXPECT_NE(other_ca.find("DEADLINE_EXCEEDED"), std::string::npos) << other_ca;
  EXPECT_EQ(other_ca.find(state_->token), std::string::npos) << other_ca;
}

}  // namespace
}  // namespace memoria
