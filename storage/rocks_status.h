// RocksDB status -> memoria Status, for the storage layer's .cc files (RocksDB headers stay out of
// the public headers).
//   NotFound -> NOT_FOUND, Corruption -> DATA_LOSS, IOError/Busy/TryAgain/TimedOut -> UNAVAILABLE
//   (the files may be fine and a retry may succeed), InvalidArgument -> INVALID_ARGUMENT, others ->
//   INTERNAL; the message is "<what>: <RocksDB's message>".
#pragma once

#include <rocksdb/status.h>

#include <string>

#include "base/status.h"

namespace memoria {

inline Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::Ok();
  const std::string msg = what + ": " + s.ToString();
  if (s.IsNotFound()) return NotFoundError(msg);
  if (s.IsCorruption()) return DataLossError(msg);
  if (s.IsIOError() || s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) return UnavailableError(msg);
  if (s.IsInvalidArgument()) return InvalidArgumentError(msg);
  return InternalError(msg);
}

}  // namespace memoria
