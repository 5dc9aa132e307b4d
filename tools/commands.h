// The `memoria` command-line tool: `memoria <subcommand> [--flag value ...]`.
//
// Each subcommand lives in its own tools/<name>_command.cc and registers itself here.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"

namespace memoria {

// Parsed "--name value" / "--name=value" / "--flag" arguments after the subcommand.
class CommandArgs {
 public:
  // INVALID_ARGUMENT for a positional argument or an empty flag name.
  static StatusOr<CommandArgs> Parse(const std::vector<std::string>& args);
  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& default_value = "") const;
  // INVALID_ARGUMENT naming the flag when the value is not an integer/number.
  StatusOr<int64_t> GetInt(const std::string& name, int64_t default_value) const;
  StatusOr<double> GetDouble(const std::string& name, double default_value) const;
  // INVALID_ARGUMENT naming the flag when it is absent.
  StatusOr<std::string> Require(const std::string& name) const;
  // Flags given but not in `known`: INVALID_ARGUMENT naming them.
  Status CheckKnown(const std::vector<std::string>& known) const;

 private:
  std::map<std::string, std::string> values_;
};

struct Command {
  std::string name;
  std::string summary;  // one line for `memoria help`
  std::string usage;    // flags, one per line
  std::function<Status(const CommandArgs&)> run;
};

// Registers at static-initialisation time: static bool registered = RegisterCommand({...});
bool RegisterCommand(Command command);

// Dispatches argv; prints errors to stderr; returns the process exit code (0 ok, 1 error, 2 usage).
int RunCommandLine(int argc, char** argv);

}  // namespace memoria
