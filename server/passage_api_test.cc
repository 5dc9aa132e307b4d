// GetPassage / DeletePassages through a real in-process MemoriaServer over loopback gRPC, with a
// real RocksDB passage store and the real stories260K model (converted by the `memoria` CLI).
#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "base/testing.h"
#include "memoria.grpc.pb.h"
#include "server/config.h"
#include "server/server.h"
#include "storage/codec.h"
#include "storage/passage_store.h"
#include "tests/server_process.h"

namespace memoria {
namespace {

// Two passages p1, p2 in a fresh store with the exact "none" codec (d = 4).
std::string MakeStore() {
  const std::string dir = testing::MakeTempDir("memoria-server-store") + "/store";
  auto spec = CodecSpec::Parse("none", 4);
  auto codec = std::move(CreateCodec(*spec)).value();
  StoreIdentity identity;
  identity.model_fingerprint = 0x42;
  identity.layer_split = 2;
  identity.codec = codec->spec();
  PassageStoreOptions options;
  options.sync = false;
  std::unique_ptr<PassageStore> store;
  EXPECT_TRUE(PassageStore::Create(options, dir, identity, *codec, &store).ok());
  const std::vector<float> memory(3 * 4, 0.5f);
  std::vector<PassageInput> batch(2);
  for (int i = 0; i < 2; ++i) {
    batch[i].id = "p" + std::to_string(i + 1);
    batch[i].title = "Title " + std::to_string(i + 1);
    batch[i].text = "Text of passage " + std::to_string(i + 1);
    batch[i].token_ids = {1, 2, 3};
    batch[i].num_tokens = 3;
    batch[i].memory = memory.data();
  }
  EXPECT_TRUE(store->Ingest(ThreadPool(1), batch).ok());
  return dir;  // the store closes here; the server opens it
}

TEST(PassageApiTest, GetAndDeletePassagesWithNotFoundNamingTheIds) {
  MEMORIA_REQUIRE_SHARED();
  const std::string model = testing::ConvertStories260K();
  ASSERT_FALSE(model.empty()) << "memoria convert-llama2c failed";
  v1::ServerConfig config;
  config.set_listen_address("127.0.0.1:0");
  config.set_http_port(-1);
  config.set_model_dir(model);
  config.set_store_dir(MakeStore());
  config.set_threads(1);
  ASSERT_TRUE(ApplyDefaultsAndValidate(&config).ok());
  MemoriaServer server(config);
  ASSERT_TRUE(server.Listen().ok());
  ASSERT_TRUE(server.LoadAndServe().ok());
  auto stub = v1::Memoria::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(server.grpc_port()), grpc::InsecureChannelCredentials()));
  auto get = [&](const std::string& id, v1::Passage* passage) {
    grpc::ClientContext context;
    v1::GetPassageRequest request;
    request.set_id(id);
    return stub->GetPassage(&context, request, passage);
  };
  auto remove = [&](const std::vector<std::string>& ids, v1::DeletePassagesReply* reply) {
    grpc::ClientContext context;
    v1::DeletePassagesRequest request;
    for (const auto& id : ids) request.add_ids(id);
    return stub->DeletePassages(&context, request, reply);
  };

  {
    grpc::ClientContext context;
    v1::ServerInfoReply info;
    ASSERT_TRUE(stub->ServerInfo(&context, v1::ServerInfoRequest(), &info).ok());
    EXPECT_TRUE(info.store_configured());
    EXPECT_NE(info.store_identity().find("layer split 2"), std::string::npos)
        << info.store_identity();
  }
  v1::Passage passage;
  grpc::Status status = get("p1", &passage);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(passage.id(), "p1");
  EXPECT_EQ(passage.title(), "Title 1");
  EXPECT_EQ(passage.text(), "Text of passage 1");
  EXPECT_EQ(passage.token_ids_size(), 3);

  status = get("nope", &passage);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(status.error_message().find("nope"), std::string::npos) << status.error_message();
  EXPECT_EQ(get("", &passage).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // Unknown ids fail the whole call, naming each, and delete nothing.
  v1::DeletePassagesReply reply;
  status = remove({"p1", "x1", "x2"}, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(status.error_message().find("unknown passage ids: 'x1', 'x2'"), std::string::npos)
      << status.error_message();
  EXPECT_TRUE(get("p1", &passage).ok());
  EXPECT_EQ(remove({}, &reply).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  status = remove({"p1"}, &reply);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(reply.deleted(), 1);
  EXPECT_EQ(get("p1", &passage).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(get("p2", &passage).ok());
  server.Drain();
  std::filesystem::remove_all(model);
  std::filesystem::remove_all(std::filesystem::path(config.store_dir()).parent_path());
}

}  // namespace
}  // namespace memoria
