// The server's config file from arbitrary text (server/config.h): protobuf text format parsed
// into memoria.v1.ServerConfig, then ApplyDefaultsAndValidate. A config that validates must have
// its documented defaults filled in and every range respected; a rejected one gets
// INVALID_ARGUMENT or NOT_FOUND (a tls/auth file that cannot be read).
//
// model_dir / tokenizer_path / tls and auth files are paths the validation may read; inputs
// choose them freely, so a run may touch the fuzzing machine's files read-only.
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <string>

#include "fuzz/fuzz_target.h"
#include "fuzz/protobuf_quiet.h"
#include "server/config.h"
#include "server_config.pb.h"

namespace {

// Drops the parser's complaints: most inputs do not parse, and logging each would slow the run.
class SilentErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int, google::protobuf::io::ColumnNumber, const std::string&) override {}
};

}  // namespace

MEMORIA_FUZZ_TARGET(ServerConfig) {
  SilenceProtobufLogs();
  const std::string text(reinterpret_cast<const char*>(data), size);
  v1::ServerConfig config;
  google::protobuf::TextFormat::Parser parser;
  SilentErrors errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config)) return 0;
  const Status s = ApplyDefaultsAndValidate(&config);
  if (!s.ok()) {
    FUZZ_CHECK(s.code() == StatusCode::kInvalidArgument || s.code() == StatusCode::kNotFound);
    return 0;
  }
  FUZZ_CHECK(!config.listen_address().empty() && !config.model_dir().empty());
  FUZZ_CHECK(config.workers() >= 1 && config.workers() <= 256);
  FUZZ_CHECK(config.max_receive_message_bytes() >= 1024);
  FUZZ_CHECK(config.model_kind() == "llama" || config.model_kind() == "t5");
  FUZZ_CHECK(config.t5().alpha() >= 0 && config.t5().alpha() <= 1);
  FUZZ_CHECK(config.drain_timeout_seconds() > 0 && config.drain_timeout_seconds() <= 3600);
  FUZZ_CHECK(HostOf(config.listen_address()).ok());
  // Validation is idempotent: the completed config validates again unchanged.
  v1::ServerConfig again = config;
  FUZZ_CHECK(ApplyDefaultsAndValidate(&again).ok());
  FUZZ_CHECK(again.SerializeAsString() == config.SerializeAsString());
  return 0;
}
