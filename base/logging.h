// Logging behind one small header: spdlog stays an implementation detail of base/logging.cc.
//
//   MEMORIA_LOG(kInfo, "loaded {} tensors ({} bytes)", n, bytes);   // fmt-style formatting
//
// Thread-safe. Messages go to stderr with a timestamp and level.
#pragma once

#include <fmt/format.h>

#include <string>

namespace memoria {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kOff = 4 };

void SetLogLevel(LogLevel level);
// Parses "debug" | "info" | "warning" | "error" | "off"; returns false on anything else.
bool ParseLogLevel(const std::string& text, LogLevel* level);
void LogMessage(LogLevel level, const std::string& message);

}  // namespace memoria

#define MEMORIA_LOG(level, ...) \
  ::memoria::LogMessage(::memoria::LogLevel::level, ::fmt::format(__VA_ARGS__))
