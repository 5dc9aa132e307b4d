// Helpers for the cross-module tests in tests/.
#pragma once

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>

#include "base/testing.h"

namespace memoria::testing {

inline nlohmann::json ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// Debian's python3 with python3-torch (not a virtualenv's python that lacks torch).
inline std::string Python() {
  const char* p = std::getenv("MEMORIA_PYTHON");
  return p ? p : "/usr/bin/python3";
}

// Runs a command through the shell; returns its exit status (0 = success).
inline int RunCommand(const std::string& command) { return std::system(command.c_str()); }

}  // namespace memoria::testing
