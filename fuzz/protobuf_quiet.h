// Silences libprotobuf's own logging in the protobuf fuzz targets: it logs every string field with
// invalid UTF-8 that it parses or serialises, which most fuzz inputs have, and the log lines would
// dominate the run's time and output. Errors still reach the targets through return values.
#pragma once

#include <google/protobuf/stubs/logging.h>

#include <string>

namespace memoria::fuzz {

// Idempotent; call at the top of a target.
inline void SilenceProtobufLogs() {
  static const bool done = [] {
    google::protobuf::SetLogHandler(
        [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
    return true;
  }();
  (void)done;
}

}  // namespace memoria::fuzz
