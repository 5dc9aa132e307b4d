// `memoria ask`: one Generate call to a running memoria-server, the answer on stdout. A T5 server
// is asked a question (--question, answered from the passages BM25 retrieves from its store, or
// from --passages); a LLaMA server completes a prompt (--prompt). With --verbose the passages
// the answer was read from (ids, BM25 scores, stored text) and the timings follow on stderr.
//
// Errors: the server's status (code and message) as the command's error, exit 1; a server that
// cannot be reached within --deadline seconds is DEADLINE_EXCEEDED / UNAVAILABLE.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "memoria.grpc.pb.h"
#include "tools/commands.h"

namespace memoria {
namespace {

Status FromGrpc(const grpc::Status& s, const std::string& target) {
  if (s.ok()) return Status::Ok();
  // grpc::StatusCode and memoria's StatusCode share the canonical numbering.
  return Status(static_cast<StatusCode>(s.error_code()),
                "server " + target + ": " + s.error_message());
}

Status RunAsk(const CommandArgs& args) {
  RETURN_IF_ERROR(args.CheckKnown({"server", "question", "prompt", "top-k", "passages", "codec",
                                   "max-new-tokens", "beams", "extractive", "token-file",
                                   "tls-ca", "deadline", "verbose"}));
  const std::string target = args.Get("server", "127.0.0.1:50051");
  if (args.Has("question") == args.Has("prompt")) {
    return InvalidArgumentError("give --question (T5 server) or --prompt (LLaMA server)");
  }
  ASSIGN_OR_RETURN(int64_t top_k, args.GetInt("top-k", 1));
  ASSIGN_OR_RETURN(int64_t max_new, args.GetInt("max-new-tokens", 0));
  ASSIGN_OR_RETURN(int64_t beams, args.GetInt("beams", 1));
  ASSIGN_OR_RETURN(double deadline, args.GetDouble("deadline", 60.0));
  if (top_k < 1 || max_new < 0 || beams < 1 || beams > 1000 || !(deadline > 0)) {
    return InvalidArgumentError(
        "need --top-k >= 1, --max-new-tokens >= 0, --beams in [1, 1000], --deadline > 0; got " +
        std::to_string(top_k) + ", " + std::to_string(max_new) + ", " + std::to_string(beams) +
        ", " + std::to_string(deadline));
  }

  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (args.Has("tls-ca")) {
    std::ifstream f(args.Get("tls-ca"));
    if (!f) return NotFoundError("cannot read --tls-ca " + args.Get("tls-ca"));
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs.assign(std::istreambuf_iterator<char>(f), {});
    credentials = grpc::SslCredentials(ssl);
  }
  const auto deadline_at = std::chrono::system_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(deadline * 1000));
  std::string token;
  if (args.Has("token-file")) {
    // A file, not a flag value: command lines are visible to every user of the machine.
    std::ifstream f(args.Get("token-file"));
    if (!f || !std::getline(f, token) || token.empty()) {
      return InvalidArgumentError("--token-file " + args.Get("token-file") +
                                  ": no token on its first line");
    }
  }
  // Every call: the deadline, the token, and waiting for a server that is still starting.
  auto prepare = [&](grpc::ClientContext* context) {
    context->set_deadline(deadline_at);
    context->set_wait_for_ready(true);
    if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  };

  v1::GenerateRequest request;
  if (args.Has("question")) {
    request.set_question(args.Get("question"));
    for (const std::string& id : args.GetList("passages", ',')) request.add_passage_ids(id);
    if (request.passage_ids_size() == 0) request.set_retrieve_top_k(static_cast<int32_t>(top_k));
    request.set_codec(args.Get("codec"));
  } else {
    request.set_prompt(args.Get("prompt"));
  }
  if (max_new > 0) request.mutable_params()->set_max_new_tokens(static_cast<int32_t>(max_new));
  // The server checks both against its own limits (num_beams, T5 only) and says which.
  if (beams > 1) request.mutable_params()->set_num_beams(static_cast<int32_t>(beams));
  request.mutable_params()->set_extractive(args.Has("extractive"));

  auto stub = v1::Memoria::NewStub(grpc::CreateChannel(target, credentials));
  grpc::ClientContext context;
  prepare(&context);
  v1::GenerateReply reply;
  RETURN_IF_ERROR(FromGrpc(stub->Generate(&context, request, &reply), target));
  std::printf("%s\n", reply.text().c_str());

  if (args.Has("verbose")) {
    for (int i = 0; i < reply.passage_ids_size(); ++i) {
      std::fprintf(stderr, "passage %s", reply.passage_ids(i).c_str());
      if (i < reply.retrieval_scores_size()) {
        std::fprintf(stderr, " (bm25 %.3f)", reply.retrieval_scores(i));
      }
      v1::GetPassageRequest get;
      get.set_id(reply.passage_ids(i));
      v1::Passage passage;
      grpc::ClientContext get_context;
      prepare(&get_context);
      if (stub->GetPassage(&get_context, get, &passage).ok()) {
        std::fprintf(stderr, ": %s | %s", passage.title().c_str(), passage.text().c_str());
      }
      std::fprintf(stderr, "\n");
    }
    const v1::Timings& t = reply.timings();
    std::fprintf(stderr, "%d prompt + %d answer tokens in %.3f s (retrieve %.3f s)%s%s\n",
                 reply.prompt_tokens(), reply.completion_tokens(), t.total_seconds(),
                 t.retrieve_seconds(), reply.codec().empty() ? "" : ", memory codec ",
                 reply.codec().c_str());
  }
  return Status::Ok();
}

const bool registered = RegisterCommand({
    "ask",
    "ask a running memoria-server: a question (T5 server) or a prompt to complete (LLaMA server)",
    "--server HOST:PORT     the server's gRPC address (default 127.0.0.1:50051)\n"
    "--question TEXT        T5 server: the question, answered from its passage store\n"
    "--prompt TEXT          LLaMA server: the text to complete\n"
    "--top-k K              passages the server's BM25 retriever picks (default 1)\n"
    "--passages ID,ID       read these stored passages instead of retrieving\n"
    "--codec SPEC           which of the store's codecs to read (default its primary one)\n"
    "--max-new-tokens N     answer length limit (default: the server's)\n"
    "--beams B              T5 server: beam search with B beams (default 1: greedy)\n"
    "--extractive           T5 server: answer with a span of whole words of the passages read\n"
    "--token-file FILE      bearer token (first line) for a server with auth\n"
    "--tls-ca FILE          PEM root certificate: connect with TLS (default plaintext)\n"
    "--deadline S           seconds to wait for the server and the answer (default 60)\n"
    "--verbose              the passages read, their BM25 scores and the timings on stderr",
    RunAsk,
});

}  // namespace
}  // namespace memoria
