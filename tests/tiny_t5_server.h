// Helpers for the storage reliability tests of a T5 server (server_crash_test.cc,
// server_storage_faults_test.cc): the smallest random-weight T5 model the server loads (fast to
// load and to run: d 32, 2 encoder layers, 1 decoder layer, the LLaMA-2 SentencePiece vocabulary
// of ../shared), synthetic passages, and the client side of Ingest / GetPassage / Generate.
#pragma once

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/t5_config.h"
#include "memoria.grpc.pb.h"
#include "server/server.h"
#include "tools/random_t5_dir.h"

namespace memoria::testing {

// TinyTestT5Config with 2 encoder layers (at the default alpha 1/3: 1 memory + 1 live layer) and
// 1 decoder layer: the fastest model to load and restart.
inline T5Config TinyT5Config() { return TinyTestT5Config(2, 1); }

// A plaintext client of the Memoria service on 127.0.0.1:port.
inline std::unique_ptr<v1::Memoria::Stub> LoopbackStub(int port) {
  return v1::Memoria::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                  grpc::InsecureChannelCredentials()));
}

// Runs `config` (after ApplyDefaultsAndValidate) as an in-process MemoriaServer: listens, loads,
// turns ready. The first failing status of Listen / LoadAndServe; *server is set either way.
inline Status StartInProcessServer(const v1::ServerConfig& config,
                                   std::unique_ptr<MemoriaServer>* server) {
  *server = std::make_unique<MemoriaServer>(config);
  RETURN_IF_ERROR((*server)->Listen());
  return (*server)->LoadAndServe();
}

struct TestPassage {
  std::string id, title, text;
};

// A passage whose text names its id and holds `words` further words drawn from a fixed list by
// `seed` (distinct payloads for distinct ids).
inline TestPassage MakePassage(const std::string& id, int words, uint64_t seed) {
  static const char* const kWords[] = {"river", "stone", "lamp",  "violin", "harbor", "comet",
                                       "maple", "tiger", "bread", "copper", "winter", "garden"};
  TestPassage p{id, "Title of " + id, "Passage " + id + " tells of"};
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int i = 0; i < words; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p.text += " ";
    p.text += kWords[x % 12];
  }
  return p;
}

// Streams `passages` into one Ingest call; the call's status (OK = all of them acknowledged as
// durable). `deadline_s` bounds the call.
inline grpc::Status IngestStream(v1::Memoria::Stub* stub, const std::vector<TestPassage>& passages,
                                 v1::IngestReply* reply, double deadline_s = 30) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(deadline_s * 1e3)));
  auto writer = stub->Ingest(&context, reply);
  for (const auto& p : passages) {
    v1::IngestRequest request;
    request.mutable_passage()->set_id(p.id);
    request.mutable_passage()->set_title(p.title);
    request.mutable_passage()->set_text(p.text);
    if (!writer->Write(request)) break;  // the server answered or went away: Finish says which
  }
  writer->WritesDone();
  return writer->Finish();
}

inline grpc::Status GetPassage(v1::Memoria::Stub* stub, const std::string& id, v1::Passage* out) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::GetPassageRequest request;
  request.set_id(id);
  return stub->GetPassage(&context, request, out);
}

// A greedy answer of at most `max_new_tokens` from the given passages: reads and decodes their
// stored memory.
inline grpc::Status AskWithPassages(v1::Memoria::Stub* stub, const std::string& question,
                                    const std::vector<std::string>& ids, v1::GenerateReply* reply,
                                    int max_new_tokens = 2) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GenerateRequest request;
  request.set_question(question);
  for (const auto& id : ids) request.add_passage_ids(id);
  request.mutable_params()->set_max_new_tokens(max_new_tokens);
  return stub->Generate(&context, request, reply);
}

}  // namespace memoria::testing
