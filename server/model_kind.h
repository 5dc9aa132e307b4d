// Which kind of model a model directory holds, so that one server binary serves either a LLaMA
// model (prompt completion) or a T5 model (LUMEN answering from stored passages).
#pragma once

#include <string>

#include "base/status.h"

namespace memoria {

// "t5" when <model_dir>/config.json has model_type "t5" (or "mt5"), else "llama". A missing or
// unreadable config.json also gives "llama": loading the model then fails with the path, which
// is the clearer message.
std::string DetectModelKind(const std::string& model_dir);

// The tokenizer a model directory ships: T5 dirs usually hold spiece.model, LLaMA dirs
// tokenizer.model. For "t5": spiece.model when it exists, else tokenizer.model.
std::string DefaultTokenizerPath(const std::string& model_dir, const std::string& model_kind);

}  // namespace memoria
