// `memoria eval-lm`: perplexity of a LLaMA-architecture model over windows of a text, and what
// IceFormer attention (in the upper half of the layers, or the layers asked for) costs against
// exact attention on the same windows: next-token agreement, KL, and the attention time
// (tools/eval_lm.h). One row per setting on stdout; --report writes the JSON.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/json_config.h"
#include "engine/tokenizer.h"
#include "tools/commands.h"
#include "tools/eval_lm.h"

namespace memoria {
namespace {

StatusOr<std::vector<int64_t>> ParseIntList(const std::string& flag, const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const long long v = std::stoll(item, &used);
      if (used != item.size()) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      return InvalidArgumentError("--" + flag + " must be a comma-separated list of integers, got '" + text + "'");
    }
  }
  if (out.empty()) return InvalidArgumentError("--" + flag + " is empty");
  return out;
}

StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The token stream: --ids (a JSON array of ids) or --text tokenized without BOS/EOS.
StatusOr<std::vector<int>> ReadStream(const CommandArgs& args, const std::string& model_dir) {
  if (args.Has("ids") == args.Has("text")) return InvalidArgumentError("give exactly one of --ids and --text");
  if (args.Has("ids")) {
    ASSIGN_OR_RETURN(std::string text, ReadText(args.Get("ids")));
    auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_array()) return InvalidArgumentError(args.Get("ids") + ": expected a JSON array of token ids");
    std::vector<int> ids;
    for (const auto& v : j) {
      if (!v.is_number_integer()) return InvalidArgumentError(args.Get("ids") + ": non-integer entry");
      ids.push_back(v.get<int>());
    }
    return ids;
  }
  ASSIGN_OR_RETURN(std::string text, ReadText(args.Get("text")));
  ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::Open(args.Get("tokenizer", model_dir + "/tokenizer.model")));
  return tokenizer->Encode(text, /*add_bos=*/false, /*add_eos=*/false);
}

Status RunEvalLm(const CommandArgs& args) {
  RETURN_IF_ERROR(args.CheckKnown({"model", "ids", "text", "tokenizer", "context", "windows", "prefill-chunk",
                                   "score-from", "threads", "iceformer-k", "iceformer-layers",
                                   "iceformer-exact-up-to", "iceformer-candidates-per-k",
                                   "iceformer-visits-per-k", "iceformer-search", "report"}));
  EvalLmOptions o;
  ASSIGN_OR_RETURN(o.model_dir, args.Require("model"));
  ASSIGN_OR_RETURN(o.ids, ReadStream(args, o.model_dir));
  ASSIGN_OR_RETURN(o.context, args.GetInt("context", 2048));
  ASSIGN_OR_RETURN(o.windows, args.GetInt("windows", 4));
  ASSIGN_OR_RETURN(o.prefill_chunk, args.GetInt("prefill-chunk", 0));
  ASSIGN_OR_RETURN(o.score_from, args.GetInt("score-from", 0));
  ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads", 0));
  if (threads < 0 || threads > 1024) return InvalidArgumentError("--threads must be in [0, 1024], got " + args.Get("threads"));
  o.threads = int(threads);

  if (args.Has("iceformer-k")) {
    LlamaIceformerSettings base;
    base.enabled = true;
    base.min_kv_len = 0;  // every window: the point is to measure IceFormer at this context
    const std::string layers = args.Get("iceformer-layers", "upper");
    if (layers == "all") {
      // The layer count from config.json alone: the weights are loaded once per setting later.
      ASSIGN_OR_RETURN(auto json, JsonConfig::ParseFile(o.model_dir + "/config.json"));
      ASSIGN_OR_RETURN(LlamaConfig config, LlamaConfig::FromJson(*json));
      for (int i = 0; i < config.num_layers; ++i) base.layers.push_back(i);
    } else if (layers != "upper") {
      ASSIGN_OR_RETURN(auto list, ParseIntList("iceformer-layers", layers));
      for (int64_t i : list) base.layers.push_back(int(i));
    }
    ASSIGN_OR_RETURN(base.attention.exact_up_to, args.GetInt("iceformer-exact-up-to", base.attention.exact_up_to));
    ASSIGN_OR_RETURN(int64_t cand, args.GetInt("iceformer-candidates-per-k", base.attention.candidates_per_k));
    ASSIGN_OR_RETURN(int64_t visits, args.GetInt("iceformer-visits-per-k", base.attention.visits_per_k));
    if (base.attention.exact_up_to < 0 || cand < 1 || cand > 100000 || visits < 1 || visits > 1000000) {
      return InvalidArgumentError("--iceformer-exact-up-to must be >= 0, --iceformer-candidates-per-k in [1, 100000] "
                                  "and --iceformer-visits-per-k in [1, 1000000], got " +
                                  std::to_string(base.attention.exact_up_to) + ", " + std::to_string(cand) + ", " +
                                  std::to_string(visits));
    }
    base.attention.candidates_per_k = int(cand);
    base.attention.visits_per_k = int(visits);
    const std::string search = args.Get("iceformer-search", "scan");
    if (search != "scan" && search != "walk") {
      return InvalidArgumentError("--iceformer-search must be scan or walk, got " + search);
    }
    base.attention.search = search == "scan" ? DciSearch::kScan : DciSearch::kWalk;
    ASSIGN_OR_RETURN(auto ks, ParseIntList("iceformer-k", args.Get("iceformer-k")));
    for (int64_t k : ks) {
      if (k < 0 || k > 100000) return InvalidArgumentError("--iceformer-k entries must be in [0, 100000], got " + std::to_string(k));
      LmAttentionSetting s{k == 0 ? "iceformer k(n)" : "iceformer k=" + std::to_string(k), base};
      s.iceformer.attention.top_k = int(k);
      o.settings.push_back(s);
    }
  } else if (args.Has("iceformer-layers") || args.Has("iceformer-exact-up-to") ||
             args.Has("iceformer-candidates-per-k") || args.Has("iceformer-visits-per-k") ||
             args.Has("iceformer-search")) {
    return InvalidArgumentError("the --iceformer-* settings need --iceformer-k");
  }

  EvalLmReport r;
  RETURN_IF_ERROR(EvaluateLanguageModel(o, &r));
  std::printf("model:      %s (fingerprint 0x%016llx): %d layers, %d/%d heads of dim %d, vocab %lld\n",
              r.model_dir.c_str(), static_cast<unsigned long long>(r.model_fingerprint), r.num_layers,
              r.num_heads, r.num_kv_heads, r.head_dim, static_cast<long long>(r.vocab));
  std::printf("windows:    %lld x %lld tokens from a stream of %lld; %lld positions scored per setting "
              "(from position %lld); %d threads\n",
              static_cast<long long>(r.windows), static_cast<long long>(r.context),
              static_cast<long long>(r.stream_tokens), static_cast<long long>(r.scored_positions),
              static_cast<long long>(r.score_from), r.threads);
  std::printf("%-18s %6s %-10s %10s %10s %10s %12s %12s %9s\n", "setting", "k", "layers", "perplexity",
              "agreement", "KL(nats)", "attention s", "forward s", "speedup");
  const double exact_attention = r.results[0].attention_seconds;
  for (const LmSettingResult& s : r.results) {
    std::string layers;
    for (int l : s.layers) layers += (layers.empty() ? "" : ",") + std::to_string(l);
    std::printf("%-18s %6lld %-10s %10.3f %10.4f %10.5f %12.3f %12.3f %8.2fx\n", s.name.c_str(),
                static_cast<long long>(s.top_k), layers.empty() ? "-" : layers.c_str(), s.perplexity,
                s.agreement, s.kl, s.attention_seconds, s.forward_seconds,
                s.attention_seconds > 0 ? exact_attention / s.attention_seconds : 0.0);
  }
  if (args.Has("report")) {
    const std::string path = args.Get("report");
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << EvalLmReportJson(r) << '\n';
    out.flush();
    if (!out) return InternalError("cannot write report " + path);
  }
  return Status::Ok();
}

const bool registered = RegisterCommand({
    "eval-lm",
    "perplexity of a LLaMA model over windows of a text, exact vs IceFormer attention",
    "--model DIR                LLaMA model dir (config.json + safetensors)\n"
    "--ids FILE | --text FILE   token stream: a JSON array of ids, or text tokenized without BOS\n"
    "--tokenizer FILE           SentencePiece model for --text (default DIR/tokenizer.model)\n"
    "--context N                tokens per window (default 2048)\n"
    "--windows W                windows evenly spaced over the stream (default 4)\n"
    "--prefill-chunk N          prompt tokens per forward chunk (default 0: the whole window)\n"
    "--score-from P             score positions >= P only (default 0)\n"
    "--iceformer-k K[,K...]     also evaluate IceFormer with each top-k (0: k(n) schedule)\n"
    "--iceformer-layers L       upper (default: upper half) | all | comma-separated layer list\n"
    "--iceformer-exact-up-to N  queries seeing <= N keys use exact attention (default 1024)\n"
    "--iceformer-candidates-per-k C, --iceformer-visits-per-k V   search budget (default 5, 200;\n"
    "                           visits bound the walk only)\n"
    "--iceformer-search S       scan (default: scan the projection table) | walk (sorted arrays)\n"
    "--threads N                compute threads (default all cores)\n"
    "--report FILE              write the results as JSON",
    RunEvalLm,
});

}  // namespace
}  // namespace memoria
