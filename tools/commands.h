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
// "--name X" takes X as the value unless X starts with "--" (so "--offset -1" works); a flag
// followed by another flag or by nothing is boolean with the value "true".
class CommandArgs {
 public:
  // INVALID_ARGUMENT for a positional argument, an empty flag name or a flag given twice.
  static StatusOr<CommandArgs> Parse(const std::vector<std::string>& args);
  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& default_value = "") const;
  // INVALID_ARGUMENT naming the flag when the value is not an integer/number.
  StatusOr<int64_t> GetInt(const std::string& name, int64_t default_value) const;
  StatusOr<double> GetDouble(const std::string& name, double default_value) const;
  // The flag's value split at `separator`, empty items dropped; empty when the flag is absent.
  std::vector<std::string> GetList(const std::string& name, char separator) const;
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
//   memoria | memoria <unknown>   the command list on stderr, exit 2
//   memoria help [command]        the command list (or one command's flags) on stdout, exit 0
//   memoria <command> --help      the command's flags on stdout, exit 0
//   malformed arguments           "error: <status>" and the command's flags on stderr, exit 2
//   the command fails             "error: <status>" on stderr, exit 1
int RunCommandLine(int argc, char** argv);

}  // namespace memoria
