// The one mapping from memoria::Status to grpc::Status (the codes are gRPC's, so it is 1:1), and
// from a status code to the failure reason label of the request_failures_total metric.
#pragma once

#include <grpcpp/support/status.h>

#include "base/status.h"

namespace memoria {

grpc::Status ToGrpcStatus(const Status& status);

// Failure reason for metrics: "invalid" (INVALID_ARGUMENT, OUT_OF_RANGE, NOT_FOUND),
// "overloaded" (RESOURCE_EXHAUSTED), "deadline", "cancelled", "unavailable" (loading, draining),
// "unimplemented", "unauthenticated" (bearer-token auth), "storage" (DATA_LOSS,
// FAILED_PRECONDITION), "internal" (anything else). "" for OK.
const char* FailureReason(StatusCode code);

}  // namespace memoria
