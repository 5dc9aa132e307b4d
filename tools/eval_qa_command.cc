// `memoria eval-qa`: exact match and F1 (SQuAD v1.1 normalisation) of a T5 reader over a QA file,
// through the server's answering path (lumen: store -> codec -> live encoder -> decoder) or the
// FiD baseline (full encoder on text), with throughput and the store's bytes per token
// (tools/eval_qa.h).
//
// Progress goes to stderr ("\r"-rewritten on a terminal, a line every 50 questions in logs); the
// summary goes to stdout, and with --report as JSON to a file.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "tools/commands.h"
#include "tools/eval_qa.h"

namespace memoria {
namespace {

double Rate(double amount, double seconds) { return seconds > 0 ? amount / seconds : 0.0; }

Status RunEvalQa(const CommandArgs& args) {
  RETURN_IF_ERROR(args.CheckKnown({"model", "tokenizer", "qa", "store", "codec", "corpus", "passages", "mode",
                                   "alpha", "limit", "beams", "max-new-tokens", "length-penalty",
                                   "max-tokens", "threads", "predictions", "report",
                                   "iceformer-min-keys", "iceformer-top-k", "extractive"}));
  EvalQaOptions o;
  ASSIGN_OR_RETURN(o.model_dir, args.Require("model"));
  o.tokenizer_path = args.Get("tokenizer", "");
  ASSIGN_OR_RETURN(o.qa_path, args.Require("qa"));
  o.store_dir = args.Get("store", "");
  o.codec = args.Get("codec", "");
  if (!o.codec.empty() && o.store_dir.empty()) return InvalidArgumentError("--codec names one of a --store's codecs");
  o.corpus_path = args.Get("corpus", "");
  ASSIGN_OR_RETURN(o.passages, ParsePassageSelection(args.Get("passages", "gold")));
  const std::string mode = args.Get("mode", "lumen");
  if (mode != "lumen" && mode != "fid") return InvalidArgumentError("--mode must be lumen|fid, got '" + mode + "'");
  o.fid = mode == "fid";
  if (!o.fid && args.Has("corpus")) {
    return InvalidArgumentError("--corpus is for --mode fid without --store; lumen reads the store");
  }
  if (args.Has("corpus") && args.Has("store")) {
    return InvalidArgumentError("--corpus and --store both given: fid reads the store's passages "
                                "when there is one");
  }
  ASSIGN_OR_RETURN(o.alpha, args.GetDouble("alpha", 1.0 / 3.0));
  ASSIGN_OR_RETURN(o.limit, args.GetInt("limit", 0));
  if (o.limit < 0) return InvalidArgumentError("--limit must be >= 0 (0 = all), got " + args.Get("limit"));
  ASSIGN_OR_RETURN(int64_t beams, args.GetInt("beams", 1));
  ASSIGN_OR_RETURN(int64_t max_new, args.GetInt("max-new-tokens", 32));
  if (beams < 1 || beams > 16) return InvalidArgumentError("--beams must be in [1, 16], got " + args.Get("beams"));
  if (max_new < 1 || max_new > 4096) {
    return InvalidArgumentError("--max-new-tokens must be in [1, 4096], got " + args.Get("max-new-tokens"));
  }
  o.generation.num_beams = int(beams);
  o.generation.max_new_tokens = int(max_new);
  ASSIGN_OR_RETURN(double penalty, args.GetDouble("length-penalty", 1.0));
  if (penalty < 0) return InvalidArgumentError("--length-penalty must be >= 0, got " + args.Get("length-penalty"));
  o.generation.length_penalty = float(penalty);
  o.generation.extractive = args.Has("extractive");
  // IceFormer cross-attention as the server's t5.iceformer_min_keys / iceformer_top_k set it.
  ASSIGN_OR_RETURN(int64_t ice_min_keys, args.GetInt("iceformer-min-keys", 0));
  ASSIGN_OR_RETURN(int64_t ice_top_k, args.GetInt("iceformer-top-k", 0));
  if (ice_min_keys < 0 || ice_top_k < 0 || ice_top_k > 100000) {
    return InvalidArgumentError("--iceformer-min-keys must be >= 0 and --iceformer-top-k in [0, 100000], got " +
                                args.Get("iceformer-min-keys", "0") + " and " + args.Get("iceformer-top-k", "0"));
  }
  o.generation.iceformer.enabled = ice_min_keys > 0;
  o.generation.iceformer.min_keys = ice_min_keys;
  o.generation.iceformer.options.top_k = int(ice_top_k);
  ASSIGN_OR_RETURN(o.max_passage_tokens, args.GetInt("max-tokens", 256));
  ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads", 0));
  if (threads < 0 || threads > 1024) return InvalidArgumentError("--threads must be in [0, 1024], got " + args.Get("threads"));
  o.threads = int(threads);

  const bool tty = isatty(STDERR_FILENO) == 1;
  auto progress = [tty](const EvalQaProgress& p) {
    if (!tty && p.done % 50 != 0 && p.done != p.total) return;
    std::fprintf(stderr, "%s[eval-qa] %lld/%lld questions, EM %.2f, F1 %.2f, %.2f questions/s%s",
                 tty ? "\r" : "", static_cast<long long>(p.done), static_cast<long long>(p.total),
                 p.exact_match, p.f1, Rate(double(p.done), p.seconds),
                 tty && p.done < p.total ? "" : "\n");
    std::fflush(stderr);
  };
  EvalQaReport r;
  RETURN_IF_ERROR(EvaluateQa(o, progress, &r));

  std::printf("mode:               %s", r.mode.c_str());
  if (r.mode == "lumen") {
    std::printf(" (alpha %.4g: %d memory + %d live encoder layers)\n", o.alpha, r.memory_layers,
                r.live_layers);
  } else {
    std::printf(" (full encoder, %d layers, on token ids)\n", r.live_layers);
  }
  std::printf("model:              %s (fingerprint 0x%016llx)\n", o.model_dir.c_str(),
              static_cast<unsigned long long>(r.model_fingerprint));
  std::printf("passages:           %s (%.2f per question)\n", r.passages.c_str(),
              Rate(double(r.passages_read), double(r.questions)));
  if (r.mode == "lumen") {
    std::printf("store:              %s\n", o.store_dir.c_str());
    std::printf("codec:              %s\n", r.codec.c_str());
    std::printf("bytes per token:    %lld\n", static_cast<long long>(r.bytes_per_token));
    std::printf("compression ratio:  %.2fx vs fp32 (%lld B/token), %.2fx vs bf16 (%lld B/token)\n",
                r.ratio_vs_fp32, static_cast<long long>(4 * r.d_model), r.ratio_vs_bf16,
                static_cast<long long>(2 * r.d_model));
  } else {
    std::printf("bytes per token:    none stored (the encoder runs on text at query time)\n");
  }
  std::printf("questions:          %lld\n", static_cast<long long>(r.questions));
  std::printf("exact match:        %.2f\n", r.exact_match);
  std::printf("f1:                 %.2f\n", r.f1);
  if (r.passages != "gold" && r.gold_known > 0) {
    std::printf("gold retrieved:     %.2f%% of %lld questions\n",
                100.0 * double(r.gold_retrieved) / double(r.gold_known),
                static_cast<long long>(r.gold_known));
  }
  if (r.unretrieved > 0) {
    std::printf("no passage found:   %lld questions (scored 0)\n", static_cast<long long>(r.unretrieved));
  }
  std::printf("answer tokens/s:    %.1f (%lld generated ids in %.2f s of decoding)\n",
              Rate(double(r.answer_tokens), r.decoder_seconds), static_cast<long long>(r.answer_tokens),
              r.decoder_seconds);
  std::printf("encoder tokens/s:   %.1f (%lld question + passage ids in %.2f s of %s)\n",
              Rate(double(r.encoder_tokens), r.encoder_seconds), static_cast<long long>(r.encoder_tokens),
              r.encoder_seconds, r.mode == "lumen" ? "live encoder" : "full encoder");
  std::printf("questions/s:        %.2f\n", Rate(double(r.questions), r.answer_seconds));
  std::printf("wall time:          %.2f s\n", r.load_seconds + r.answer_seconds);
  std::printf("seconds:            %.2f answering (retrieve %.2f, %s %.2f, decompress %.2f, "
              "encoder %.2f, decoder %.2f), %.2f loading\n",
              r.answer_seconds, r.retrieve_seconds,
              r.mode == "lumen" ? "store read" : "passage ids", r.store_read_seconds,
              r.decompress_seconds, r.encoder_seconds, r.decoder_seconds, r.load_seconds);

  if (args.Has("predictions")) {
    RETURN_IF_ERROR(WriteQaPredictions(args.Get("predictions"), r.predictions));
    std::printf("predictions:        %s\n", args.Get("predictions").c_str());
  }
  if (args.Has("report")) {
    const std::string path = args.Get("report");
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << EvalQaReportJson(r) << '\n';
    out.flush();
    if (!out) return InternalError("cannot write report " + path);
  }
  return Status::Ok();
}

const bool registered = RegisterCommand({
    "eval-qa",
    "exact match / F1 of a T5 reader over a QA file through the server's engine (LUMEN or FiD)",
    "--model DIR            T5 model dir (config.json + safetensors)\n"
    "--tokenizer FILE       SentencePiece model (default DIR/spiece.model, else DIR/tokenizer.model)\n"
    "--qa FILE              SQuAD v1.1 JSON (.json; gold passage = the question's paragraph) or\n"
    "                       JSONL {\"question\", \"answers\", \"passage_ids\"?, \"id\"?} per line\n"
    "--store DIR            passage store from `memoria build-store` (lumen: required; fid: the\n"
    "                       passages' token ids are read from it)\n"
    "--codec SPEC           lumen: which of the store's codecs to read (default its primary one;\n"
    "                       a store built with --extra-codecs holds several)\n"
    "--corpus FILE          fid without --store: passages (JSONL or SQuAD; default the QA file)\n"
    "--passages P           gold (default) | bm25:K | gold+bm25:K (K in all, the gold one first)\n"
    "--mode M               lumen (default: store memory + live encoder) | fid (full encoder)\n"
    "--alpha A              LUMEN live fraction; must match the store's layer split (default 1/3)\n"
    "--limit N              first N questions (default all)\n"
    "--beams B              beam search with B beams (default 1: greedy)\n"
    "--max-new-tokens N     answer length limit in ids (default 32)\n"
    "--length-penalty X     beam search length penalty (default 1)\n"
    "--extractive           answer with a span of the passages read, the one the reader scores\n"
    "                       highest under greedy / beam search (as the request's extractive)\n"
    "--iceformer-min-keys N IceFormer k-NN cross-attention in the decoder when a question's memory\n"
    "                       has >= N keys (default 0: exact attention), as t5.iceformer_min_keys\n"
    "--iceformer-top-k K    keys kept per query (default 0: k(n) = max(min(0.005 n, 50), 30))\n"
    "--max-tokens N         fid from a corpus: passage part truncated as build-store's --max-tokens\n"
    "                       (default 256)\n"
    "--threads N            compute threads (default all cores)\n"
    "--predictions FILE     write one JSON line per question (prediction, answers, em, f1, ...)\n"
    "--report FILE          write the summary as JSON",
    RunEvalQa,
});

}  // namespace
}  // namespace memoria
