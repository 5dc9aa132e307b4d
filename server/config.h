// Loading the server's configuration: a memoria.v1.ServerConfig in protobuf text format
// (proto/server_config.proto documents every field and its default), with command-line overrides
// applied on top, defaults filled in and the result checked.
#pragma once

#include <string>

#include "base/status.h"
#include "server_config.pb.h"

namespace memoria {

// Values given on the command line; unset fields leave the file's value alone.
struct ConfigOverrides {
  int port = -1;       // replaces the port of listen_address (0 = a free port)
  int http_port = -2;  // -2 = not given; -1 disables HTTP; 0 = a free port
  std::string model_dir;
  std::string ports_file;
};

// Parses `path` (text format; "" = an empty config), applies `overrides` and defaults, validates.
// NOT_FOUND: the file is missing; INVALID_ARGUMENT: a parse error (with line and column) or a
// field out of range (naming the field and the value), e.g. "workers must be >= 1, got -2".
StatusOr<v1::ServerConfig> LoadServerConfig(const std::string& path,
                                            const ConfigOverrides& overrides);

// Fills the documented defaults into unset (zero/empty) fields and checks ranges. When tls or
// auth is set, also checks that their files are readable (NOT_FOUND naming the field and the
// path) and hold PEM blocks / valid tokens (INVALID_ARGUMENT; no file contents in any message).
Status ApplyDefaultsAndValidate(v1::ServerConfig* config);

// "127.0.0.1:50051" -> host "127.0.0.1" (IPv6 "[::1]:50051" -> "::1"); INVALID_ARGUMENT when the
// address has no port.
StatusOr<std::string> HostOf(const std::string& address);

}  // namespace memoria
