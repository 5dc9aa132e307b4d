// `memoria build-store`: corpus (JSONL or SQuAD JSON) -> tokenize -> LUMEN memory encoder of a T5
// model dir -> codec fitted on a sample -> RocksDB passage store (tools/store_builder.h).
//
// Progress goes to stderr, one line per batch ("\r"-rewritten on a terminal so it reads as a
// progress bar, plain lines in logs); the summary goes to stdout. Check the result with
// `memoria inspect-store --store DIR --verify`.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "tools/commands.h"
#include "tools/store_builder.h"

namespace memoria {
namespace {

Status RunBuildStore(const CommandArgs& args) {
  RETURN_IF_ERROR(args.CheckKnown({"corpus", "format", "limit", "window-words", "window-stride", "model", "tokenizer", "store", "codec", "extra-codecs",
                                   "alpha", "batch", "max-tokens", "train-tokens", "pq-iterations",
                                   "pq-update", "pq-codebooks", "pq-codebooks-tensor", "seed",
                                   "threads", "no-sync"}));
  StoreBuildOptions o;
  ASSIGN_OR_RETURN(o.corpus_path, args.Require("corpus"));
  ASSIGN_OR_RETURN(o.corpus_format, ParseCorpusFormat(args.Get("format", "auto")));
  ASSIGN_OR_RETURN(o.limit, args.GetInt("limit", 0));
  ASSIGN_OR_RETURN(o.window_words, args.GetInt("window-words", 0));
  ASSIGN_OR_RETURN(o.window_stride, args.GetInt("window-stride", 0));
  ASSIGN_OR_RETURN(o.model_dir, args.Require("model"));
  o.tokenizer_path = args.Get("tokenizer", "");
  ASSIGN_OR_RETURN(o.store_dir, args.Require("store"));
  ASSIGN_OR_RETURN(o.codec, args.Require("codec"));
  // ';'-separated: codec specs hold commas ("pq:g=8,bits=8").
  o.extra_codecs = args.GetList("extra-codecs", ';');
  ASSIGN_OR_RETURN(o.alpha, args.GetDouble("alpha", 1.0 / 3.0));
  ASSIGN_OR_RETURN(o.batch_passages, args.GetInt("batch", 32));
  ASSIGN_OR_RETURN(o.max_passage_tokens, args.GetInt("max-tokens", 256));
  ASSIGN_OR_RETURN(o.train_tokens, args.GetInt("train-tokens", 65536));
  ASSIGN_OR_RETURN(int64_t iterations, args.GetInt("pq-iterations", 20));
  if (iterations < 1) return InvalidArgumentError("--pq-iterations must be >= 1");
  o.train.pq.iterations = static_cast<int>(iterations);
  const std::string update = args.Get("pq-update", "lloyd");
  if (update == "lloyd") {
    o.train.pq.update = PqUpdate::kLloyd;
  } else if (update == "ema") {
    o.train.pq.update = PqUpdate::kEma;
  } else {
    return InvalidArgumentError("--pq-update must be lloyd|ema, got '" + update + "'");
  }
  o.pq_codebooks = args.Get("pq-codebooks", "");
  o.pq_codebooks_tensor = args.Get("pq-codebooks-tensor", "codebooks");
  ASSIGN_OR_RETURN(int64_t seed, args.GetInt("seed", 1));
  o.seed = static_cast<uint64_t>(seed);
  ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads", 0));
  o.threads = static_cast<int>(threads);
  o.sync = !args.Has("no-sync");

  const bool tty = isatty(STDERR_FILENO) == 1;
  auto progress = [tty](const StoreBuildProgress& p) {
    if (p.stage == "train") {  // one step, no rate: how long fitting took on how many vectors
      std::fprintf(stderr, "[build-store] train  codec fitted on %lld memory vectors of %lld passages in %.2f s\n",
                   static_cast<long long>(p.tokens), static_cast<long long>(p.total), p.seconds);
      return;
    }
    const double rate = p.seconds > 0 ? p.tokens / p.seconds : 0.0;
    const double eta = p.done > 0 ? p.seconds * double(p.total - p.done) / double(p.done) : 0.0;
    std::fprintf(stderr, "%s[build-store] %-6s %lld/%lld passages (%3.0f%%), %lld tokens, %.0f tokens/s, ETA %.0f s%s",
                 tty ? "\r" : "", p.stage.c_str(), static_cast<long long>(p.done),
                 static_cast<long long>(p.total), p.total > 0 ? 100.0 * p.done / p.total : 100.0,
                 static_cast<long long>(p.tokens), rate, eta, tty && p.done < p.total ? "" : "\n");
    std::fflush(stderr);
  };
  StoreBuildReport r;
  RETURN_IF_ERROR(BuildStore(o, progress, &r));
  std::printf("store:            %s\n", o.store_dir.c_str());
  std::printf("identity:         %s\n", r.identity.ToString().c_str());
  std::printf("passages:         %lld (%lld truncated to %lld tokens)\n", static_cast<long long>(r.passages),
              static_cast<long long>(r.truncated_passages), static_cast<long long>(o.max_passage_tokens));
  std::printf("tokens:           %lld\n", static_cast<long long>(r.tokens));
  if (r.training_vectors > 0) {
    std::printf("codec fitted on:  %lld memory vectors in %.2f s\n", static_cast<long long>(r.training_vectors),
                r.train_seconds);
  }
  if (!r.distortion.empty()) {
    std::printf("pq distortion:   ");
    for (double x : r.distortion) std::printf(" %.4g", x);
    std::printf("  (mean squared error per vector, init then per iteration)\n");
  }
  std::printf("seconds:          %.2f total, %.2f memory encoder, %.2f codec + store writes\n", r.total_seconds,
              r.encode_seconds, r.ingest_seconds);
  return Status::Ok();
}

const bool registered = RegisterCommand({
    "build-store",
    "build a passage store: corpus -> tokenize -> LUMEN memory encoder -> codec -> RocksDB",
    "--corpus FILE          JSONL ({\"id\",\"title\",\"text\"} per line) or SQuAD JSON\n"
    "--format F             auto (default: .json = squad, else jsonl) | jsonl | squad\n"
    "--limit N              read at most N passages (default all)\n"
    "--window-words N       store each passage as overlapping runs of N words, ids <id>#w<first\n"
    "                       word> (for readers trained on short windows; default 0: whole passages)\n"
    "--window-stride S      a new run every S words (default N / 2)\n"
    "--model DIR            T5 model dir (config.json + safetensors)\n"
    "--tokenizer FILE       SentencePiece model (default DIR/spiece.model, else DIR/tokenizer.model)\n"
    "--store DIR            the new store (must not exist yet)\n"
    "--codec SPEC           none | none:bf16 | pq:g=G,bits=8|16 | btr | btr:scale=f32 | btr:merge=R\n"
    "                       (merge: BTR offline token merging, R of each passage's tokens, e.g. 0.2)\n"
    "--extra-codecs LIST    further codecs to store every passage in, ';'-separated (e.g. \"btr;none:bf16\")\n"
    "--alpha A              LUMEN live fraction of encoder layers (default 1/3)\n"
    "--batch N              passages per encoder batch and per durable write (default 32)\n"
    "--max-tokens N         truncate each passage part to N ids, EOS kept (default 256)\n"
    "--train-tokens N       memory vectors sampled to fit pq/btr (default 65536)\n"
    "--pq-iterations N      k-means iterations (default 20)\n"
    "--pq-update U          lloyd (default) | ema\n"
    "--pq-codebooks FILE    import codebooks [g, C, d_pad/g] from safetensors instead of training\n"
    "--pq-codebooks-tensor  tensor name in that file (default codebooks)\n"
    "--seed N               training sample order (default 1)\n"
    "--threads N            compute threads (default all cores)\n"
    "--no-sync              do not fsync the WAL per batch (survives kill -9, not power loss)",
    RunBuildStore,
});

}  // namespace
}  // namespace memoria
