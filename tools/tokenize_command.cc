// `memoria tokenize`: encode text to ids, or decode ids to text, with a SentencePiece model.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/tokenizer.h"
#include "tools/commands.h"

namespace memoria {
namespace {

// "1, 2,3" -> {1, 2, 3}
StatusOr<std::vector<int>> ParseIds(const std::string& text) {
  std::vector<int> ids;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(pos, comma - pos);
    const size_t b = item.find_first_not_of(" \t");
    const size_t e = item.find_last_not_of(" \t");
    item = b == std::string::npos ? "" : item.substr(b, e - b + 1);
    if (item.empty()) {
      if (comma == text.size() && !ids.empty()) break;  // trailing comma
      return InvalidArgumentError("--ids expects comma-separated integers, got '" + text + "'");
    }
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used != item.size() || v < INT32_MIN || v > INT32_MAX) {
      return InvalidArgumentError("--ids: '" + item + "' is not a token id");
    }
    ids.push_back(static_cast<int>(v));
    pos = comma + 1;
  }
  return ids;
}

Status RunTokenize(const CommandArgs& args) {
  RETURN_IF_ERROR(args.CheckKnown({"tokenizer", "text", "ids", "bos", "eos", "pieces"}));
  ASSIGN_OR_RETURN(std::string path, args.Require("tokenizer"));
  // A model directory works too.
  if (std::filesystem::is_directory(path)) path += "/tokenizer.model";
  if (args.Has("text") == args.Has("ids")) {
    return InvalidArgumentError("give exactly one of --text (encode) or --ids (decode)");
  }
  ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::Open(path));
  if (args.Has("ids")) {
    ASSIGN_OR_RETURN(std::vector<int> ids, ParseIds(args.Get("ids")));
    ASSIGN_OR_RETURN(std::string text, tokenizer->Decode(ids));
    std::printf("%s\n", text.c_str());
    return Status::Ok();
  }
  const std::vector<int> ids =
      tokenizer->Encode(args.Get("text"), args.Has("bos"), args.Has("eos"));
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ' ';
    line += std::to_string(ids[i]);
  }
  std::printf("%s\n", line.c_str());
  if (args.Has("pieces")) {
    line.clear();
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) line += ' ';
      line += tokenizer->IdToPiece(ids[i]);
    }
    std::printf("%s\n", line.c_str());
  }
  return Status::Ok();
}

const bool registered = RegisterCommand({
    "tokenize",
    "encode text to token ids (--text) or decode ids to text (--ids)",
    "--tokenizer PATH   SentencePiece model file, or a model directory with tokenizer.model\n"
    "--text TEXT        text to encode; prints the ids on one line, space separated\n"
    "--ids 1,2,3        ids to decode; prints the text\n"
    "--bos, --eos       with --text: add BOS / EOS\n"
    "--pieces           with --text: also print the pieces on a second line",
    RunTokenize,
});

}  // namespace
}  // namespace memoria
