#include "server/status_map.h"

namespace memoria {

grpc::Status ToGrpcStatus(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(status.code())),
                      status.message());
}

const char* FailureReason(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "";
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kNotFound:
      return "invalid";
    case StatusCode::kResourceExhausted:
      return "overloaded";
    case StatusCode::kDeadlineExceeded:
      return "deadline";
    case StatusCode::kCancelled:
      return "cancelled";
    case StatusCode::kUnavailable:
      return "unavailable";
    case StatusCode::kUnimplemented:
      return "unimplemented";
    case StatusCode::kUnauthenticated:
      return "unauthenticated";
    case StatusCode::kDataLoss:
    case StatusCode::kFailedPrecondition:
      return "storage";
    default:
      return "internal";
  }
}

}  // namespace memoria
