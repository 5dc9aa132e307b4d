#include "tools/commands.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <utility>

namespace memoria {
namespace {

// Function-local so that registration from other translation units' static initialisers never
// sees an unconstructed map.
std::map<std::string, Command>& Registry() {
  static auto* registry = new std::map<std::string, Command>();
  return *registry;
}

void PrintHelp(std::FILE* out) {
  std::fprintf(out,
               "usage: memoria <command> [--flag value | --flag=value | --flag ...]\n"
               "       memoria help [command]\n\ncommands:\n");
  size_t width = 4;  // "help"
  for (const auto& [name, command] : Registry()) width = std::max(width, name.size());
  std::fprintf(out, "  %-*s  %s\n", static_cast<int>(width), "help",
               "show this list, or the flags of one command");
  for (const auto& [name, command] : Registry()) {
    std::fprintf(out, "  %-*s  %s\n", static_cast<int>(width), name.c_str(),
                 command.summary.c_str());
  }
}

void PrintUsage(std::FILE* out, const Command& command) {
  std::fprintf(out, "usage: memoria %s [flags]\n  %s\n", command.name.c_str(),
               command.summary.c_str());
  if (!command.usage.empty()) {
    std::fprintf(out, "\nflags:\n");
    std::string_view usage = command.usage;
    while (!usage.empty()) {
      size_t nl = usage.find('\n');
      std::string_view line = usage.substr(0, nl);
      if (!line.empty()) std::fprintf(out, "  %.*s\n", static_cast<int>(line.size()), line.data());
      if (nl == std::string_view::npos) break;
      usage.remove_prefix(nl + 1);
    }
  }
}

}  // namespace

StatusOr<CommandArgs> CommandArgs::Parse(const std::vector<std::string>& args) {
  CommandArgs parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg.compare(0, 2, "--") != 0) {
      return InvalidArgumentError("unexpected argument '" + arg +
                                  "': arguments are --name value or --name=value");
    }
    std::string name, value;
    const size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      name = arg.substr(2, eq - 2);
      value = arg.substr(eq + 1);
    } else {
      name = arg.substr(2);
      // A following argument that is not itself a flag is this flag's value ("-1" is a value);
      // otherwise this is a boolean flag.
      if (i + 1 < args.size() && args[i + 1].compare(0, 2, "--") != 0) {
        value = args[++i];
      } else {
        value = "true";
      }
    }
    if (name.empty()) return InvalidArgumentError("empty flag name in '" + arg + "'");
    if (parsed.values_.count(name)) {
      return InvalidArgumentError("flag --" + name + " given more than once");
    }
    parsed.values_[name] = value;
  }
  return parsed;
}

std::string CommandArgs::Get(const std::string& name, const std::string& default_value) const {
  auto it = values_.find(name);
  return it == values_.end() ? default_value : it->second;
}

std::vector<std::string> CommandArgs::GetList(const std::string& name, char separator) const {
  std::vector<std::string> out;
  const std::string text = Get(name);
  for (size_t begin = 0; begin < text.size();) {
    const size_t end = std::min(text.find(separator, begin), text.size());
    if (end > begin) out.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  return out;
}

StatusOr<int64_t> CommandArgs::GetInt(const std::string& name, int64_t default_value) const {
  auto it = values_.find(name);
  if (it == values_.end()) return default_value;
  const std::string& s = it->second;
  int64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) {
    return InvalidArgumentError("--" + name + " expects an integer, got '" + s + "'");
  }
  return value;
}

StatusOr<double> CommandArgs::GetDouble(const std::string& name, double default_value) const {
  auto it = values_.find(name);
  if (it == values_.end()) return default_value;
  const std::string& s = it->second;
  char* end = nullptr;
  const double value = s.empty() ? 0.0 : std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(value)) {
    return InvalidArgumentError("--" + name + " expects a number, got '" + s + "'");
  }
  return value;
}

StatusOr<std::string> CommandArgs::Require(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return InvalidArgumentError("missing required flag --" + name);
  return it->second;
}

Status CommandArgs::CheckKnown(const std::vector<std::string>& known) const {
  std::string unknown;
  for (const auto& [name, value] : values_) {
    bool found = false;
    for (const std::string& k : known) found = found || k == name;
    if (!found) unknown += (unknown.empty() ? "--" : ", --") + name;
  }
  if (!unknown.empty()) return InvalidArgumentError("unknown flag(s): " + unknown);
  return Status::Ok();
}

bool RegisterCommand(Command command) {
  MEMORIA_CHECK(!command.name.empty() && command.name != "help" && command.run,
                "invalid command registration '" + command.name + "'");
  const std::string name = command.name;
  MEMORIA_CHECK(Registry().emplace(name, std::move(command)).second,
                "command '" + name + "' registered twice");
  return true;
}

int RunCommandLine(int argc, char** argv) {
  if (argc < 2) {
    PrintHelp(stderr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "help" || name == "--help" || name == "-h") {
    if (argc >= 3) {
      auto it = Registry().find(argv[2]);
      if (it == Registry().end()) {
        std::fprintf(stderr, "error: unknown command '%s'\n\n", argv[2]);
        PrintHelp(stderr);
        return 2;
      }
      PrintUsage(stdout, it->second);
      return 0;
    }
    PrintHelp(stdout);
    return 0;
  }
  auto it = Registry().find(name);
  if (it == Registry().end()) {
    std::fprintf(stderr, "error: unknown command '%s'\n\n", name.c_str());
    PrintHelp(stderr);
    return 2;
  }
  const Command& command = it->second;
  std::vector<std::string> rest(argv + 2, argv + argc);
  for (const std::string& arg : rest) {
    if (arg == "--help" || arg == "-h") {
      PrintUsage(stdout, command);
      return 0;
    }
  }
  auto args = CommandArgs::Parse(rest);
  if (!args.ok()) {
    std::fprintf(stderr, "error: %s\n\n", args.status().ToString().c_str());
    PrintUsage(stderr, command);
    return 2;
  }
  const Status status = command.run(*args);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace memoria
