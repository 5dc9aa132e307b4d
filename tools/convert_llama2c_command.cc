// `memoria convert-llama2c`: turn a llama2.c checkpoint and tokenizer.bin into a model directory.
#include <cstdio>

#include "tools/commands.h"
#include "tools/llama2c_converter.h"

namespace memoria {
namespace {

Status RunConvertLlama2c(const CommandArgs& args) {
  RETURN_IF_ERROR(args.CheckKnown({"checkpoint", "tokenizer", "out"}));
  ASSIGN_OR_RETURN(std::string checkpoint, args.Require("checkpoint"));
  ASSIGN_OR_RETURN(std::string out, args.Require("out"));
  const std::string tokenizer = args.Get("tokenizer", "");
  ASSIGN_OR_RETURN(Llama2cConfig config, ReadLlama2cConfig(checkpoint));
  RETURN_IF_ERROR(ConvertLlama2c(checkpoint, tokenizer, out));
  std::printf(
      "wrote %s: dim %d, hidden %d, %d layers, %d heads (%d kv), vocab %d, seq_len %d, %s "
      "classifier%s\n",
      out.c_str(), config.dim, config.hidden_dim, config.n_layers, config.n_heads,
      config.n_kv_heads, config.vocab_size, config.seq_len,
      config.shared_classifier ? "shared" : "separate",
      tokenizer.empty() ? "" : ", tokenizer.model");
  return Status::Ok();
}

const bool registered = RegisterCommand({
    "convert-llama2c",
    "convert a llama2.c checkpoint (+ tokenizer.bin) to config.json, model.safetensors, "
    "tokenizer.model",
    "--checkpoint PATH   llama2.c checkpoint (legacy format, e.g. stories260K.bin)\n"
    "--tokenizer PATH    llama2.c tokenizer.bin (e.g. tok512.bin); omit to convert weights only\n"
    "--out DIR           output directory (created if missing)",
    RunConvertLlama2c,
});

}  // namespace
}  // namespace memoria
