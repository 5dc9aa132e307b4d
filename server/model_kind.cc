#include "server/model_kind.h"

#include <filesystem>

#include "engine/json_config.h"

namespace memoria {

std::string DetectModelKind(const std::string& model_dir) {
  auto json = JsonConfig::ParseFile(model_dir + "/config.json");
  if (!json.ok()) return "llama";
  auto type = (*json)->GetString("model_type", "");
  if (type.ok() && (*type == "t5" || *type == "mt5")) return "t5";
  return "llama";
}

std::string DefaultTokenizerPath(const std::string& model_dir, const std::string& model_kind) {
  // The error_code overload: a path the OS refuses (too long, not a directory) is "absent" here,
  // and loading the tokenizer then reports it, instead of a filesystem_error escaping.
  std::error_code ec;
  if (model_kind == "t5" && std::filesystem::exists(model_dir + "/spiece.model", ec))
    return model_dir + "/spiece.model";
  return model_dir + "/tokenizer.model";
}

}  // namespace memoria
