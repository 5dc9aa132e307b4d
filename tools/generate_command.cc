// `memoria generate`: load a LLaMA-style model and complete a prompt, streaming the text to stdout.
#include <cstdio>
#include <filesystem>

#include "base/logging.h"
#include "engine/llama_generator.h"
#include "engine/llama_model.h"
#include "engine/tokenizer.h"
#include "tools/commands.h"

namespace memoria {
namespace {

Status RunGenerate(const CommandArgs& args) {
  RETURN_IF_ERROR(args.CheckKnown({"model", "tokenizer", "prompt", "max-new-tokens", "temperature",
                                   "top-k", "top-p", "seed", "threads", "stop", "no-bos", "stats",
                                   "log-level"}));
  if (args.Has("log-level")) {
    LogLevel level;
    if (!ParseLogLevel(args.Get("log-level"), &level)) {
      return InvalidArgumentError("--log-level must be debug|info|warning|error|off, got '" +
                                  args.Get("log-level") + "'");
    }
    SetLogLevel(level);
  }
  ASSIGN_OR_RETURN(std::string model_dir, args.Require("model"));
  const std::string tokenizer_path = args.Get("tokenizer", model_dir + "/tokenizer.model");
  const std::string prompt = args.Get("prompt", "");
  ASSIGN_OR_RETURN(int64_t max_new, args.GetInt("max-new-tokens", 128));
  ASSIGN_OR_RETURN(double temperature, args.GetDouble("temperature", 0.0));
  ASSIGN_OR_RETURN(int64_t top_k, args.GetInt("top-k", 0));
  ASSIGN_OR_RETURN(double top_p, args.GetDouble("top-p", 1.0));
  ASSIGN_OR_RETURN(int64_t seed, args.GetInt("seed", 0));
  ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads", 0));
  if (threads < 0) return InvalidArgumentError("--threads must be >= 0, got " + std::to_string(threads));

  ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::Open(tokenizer_path));
  ASSIGN_OR_RETURN(auto model, LlamaModel::Load(model_dir));
  if (tokenizer->vocab_size() != model->config().vocab_size) {
    return InvalidArgumentError("tokenizer " + tokenizer_path + " has " +
                                std::to_string(tokenizer->vocab_size()) + " pieces but the model's vocabulary is " +
                                std::to_string(model->config().vocab_size));
  }
  std::vector<int> ids = tokenizer->Encode(prompt, /*add_bos=*/!args.Has("no-bos"), /*add_eos=*/false);
  if (ids.empty()) return InvalidArgumentError("the prompt is empty and --no-bos was given");

  CompletionOptions options;
  options.max_new_tokens = max_new;
  options.sampling.temperature = static_cast<float>(temperature);
  options.sampling.top_k = static_cast<int>(top_k);
  options.sampling.top_p = static_cast<float>(top_p);
  options.sampling.seed = static_cast<uint64_t>(seed);
  if (args.Has("stop")) options.stop_strings.push_back(args.Get("stop"));

  ThreadPool pool(static_cast<int>(threads));
  LlamaSession session(model, &pool);
  std::fputs(prompt.c_str(), stdout);
  ASSIGN_OR_RETURN(CompletionResult result,
                   Generate(session, tokenizer.get(), ids, options, [](int, const std::string& piece) {
                     std::fputs(piece.c_str(), stdout);
                     std::fflush(stdout);
                     return true;
                   }));
  std::fputs("\n", stdout);
  if (args.Has("stats")) {
    const double decode_tokens = std::max<double>(0, double(result.output_ids.size()) - 1);
    std::fprintf(stderr,
                 "prompt tokens %lld, generated %zu (stop: %s), prefill %.1f ms (%.1f tok/s), "
                 "decode %.1f tok/s, threads %d\n",
                 static_cast<long long>(result.prompt_tokens), result.output_ids.size(),
                 StopReasonName(result.stop_reason), result.prefill_seconds * 1e3,
                 result.prompt_tokens / std::max(result.prefill_seconds, 1e-9),
                 decode_tokens / std::max(result.decode_seconds, 1e-9), pool.num_threads());
  }
  return Status::Ok();
}

[[maybe_unused]] const bool registered = RegisterCommand(
    {"generate", "complete a prompt with a LLaMA-style model",
     "  --model DIR             model directory (config.json + *.safetensors)\n"
     "  --tokenizer PATH        SentencePiece model (default DIR/tokenizer.model)\n"
     "  --prompt TEXT           text to complete (BOS is prepended unless --no-bos)\n"
     "  --max-new-tokens N      default 128\n"
     "  --temperature T         0 = greedy (default); --top-k K, --top-p P, --seed S\n"
     "  --stop TEXT             stop when the output contains TEXT\n"
     "  --threads N             compute threads (default: all cores)\n"
     "  --stats                 print token counts and speeds to stderr\n",
     RunGenerate});

}  // namespace
}  // namespace memoria
