// A model's config.json from arbitrary text (engine/json_config.h and the configs read from it:
// LlamaConfig, T5Config, the memory-layer config). Parsing must reject malformed JSON with
// INVALID_ARGUMENT; typed getters and the model configs must reject wrong types and ranges with
// a Status, never throw or crash.
#include <string>

#include "engine/json_config.h"
#include "engine/llama_model.h"
#include "engine/memory_layer.h"
#include "engine/t5_config.h"
#include "fuzz/fuzz_target.h"

MEMORIA_FUZZ_TARGET(ModelConfig) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto json = JsonConfig::ParseString(text, "fuzz/config.json");
  if (!json.ok()) {
    FUZZ_CHECK(json.status().code() == StatusCode::kInvalidArgument);
    return 0;
  }
  const JsonConfig& config = **json;
  // The serialised form parses back to the same text.
  auto again = JsonConfig::ParseString(config.text(), "again");
  FUZZ_CHECK(again.ok() && (*again)->text() == config.text());
  for (const char* key : {"model_type", "hidden_size", "eos_token_id", "rope_scaling", "x"}) {
    (void)config.Has(key);
    (void)config.IsNull(key);
    (void)config.GetInt(key, 0);
    (void)config.GetDouble(key, 0.0);
    (void)config.GetBool(key, false);
    (void)config.GetString(key, "");
    (void)config.GetIntList(key);
  }
  (void)LlamaConfig::FromJson(config);
  (void)T5Config::FromJson(config);
  (void)ParseMemoryConfig(config);
  return 0;
}
