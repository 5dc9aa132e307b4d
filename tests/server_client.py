#!/usr/bin/python3
"""A Python grpcio client of a running memoria-server (Debian's python3-grpcio, no grpc_tools).

Generates the message classes with protoc into a temp dir, then calls the service through plain
channel methods; checks the replies and exits non-zero with a message on the first mismatch.

  --model llama (default): a server of stories260K: Generate, GenerateStream, ServerInfo, the
      standard health check, an error path and reflection.
  --model t5: a T5/LUMEN server with an empty store: Ingest (client streaming), Generate with
      passage_ids and with retrieve_top_k, GenerateStream, ServerInfo, health and NOT_FOUND.

    tests/server_client.py --target 127.0.0.1:50051 --proto-dir proto [--model t5]
"""
import argparse
import subprocess
import sys
import tempfile

import grpc

KNOWN_STORY = "Once upon a time, there was a little girl named Lily."


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--proto-dir", required=True)
    parser.add_argument("--expect-reflection", choices=["on", "off"], default="off")
    parser.add_argument("--model", choices=["llama", "t5"], default="llama")
    args = parser.parse_args()

    out = tempfile.mkdtemp(prefix="memoria-pyclient-")
    # health.proto is compiled from its own directory so that its module is a top-level
    # health_pb2 (a grpc/health/v1 package would shadow the installed grpc package).
    health_dir = f"{args.proto_dir}/grpc/health/v1"
    subprocess.check_call(["protoc", "--python_out", out, "-I", args.proto_dir, f"{args.proto_dir}/memoria.proto"])
    subprocess.check_call(["protoc", "--python_out", out, "-I", health_dir, f"{health_dir}/health.proto"])
    sys.path.insert(0, out)
    import memoria_pb2 as pb  # noqa: E402
    import health_pb2  # noqa: E402

    channel = grpc.insecure_channel(args.target)
    method = "/memoria.v1.Memoria/"
    generate = channel.unary_unary(method + "Generate", request_serializer=pb.GenerateRequest.SerializeToString,
                                   response_deserializer=pb.GenerateReply.FromString)
    stream = channel.unary_stream(method + "GenerateStream", request_serializer=pb.GenerateRequest.SerializeToString,
                                  response_deserializer=pb.GenerateStreamReply.FromString)
    info = channel.unary_unary(method + "ServerInfo", request_serializer=pb.ServerInfoRequest.SerializeToString,
                               response_deserializer=pb.ServerInfoReply.FromString)
    health = channel.unary_unary("/grpc.health.v1.Health/Check",
                                 request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                                 response_deserializer=health_pb2.HealthCheckResponse.FromString)

    def check(condition, message):
        if not condition:
            sys.exit("server_client.py: " + message)

    status = health(health_pb2.HealthCheckRequest(service=""), timeout=10)
    check(status.status == health_pb2.HealthCheckResponse.SERVING, f"health {status}")
    if args.model == "t5":
        check_t5(pb, channel, generate, stream, info, check)
        print("server_client.py: all T5 checks passed")
        return

    request = pb.GenerateRequest(prompt="Once upon a time", params=pb.DecodingParams(max_new_tokens=20))
    reply = generate(request, timeout=30)
    check(("Once upon a time" + reply.text).startswith(KNOWN_STORY), f"unexpected text {reply.text!r}")
    check(reply.completion_tokens == 20 and len(reply.token_ids) == 20, f"counts {reply}")
    check(reply.stop_reason == pb.STOP_REASON_MAX_TOKENS, f"stop reason {reply.stop_reason}")

    pieces, done = [], None
    for message in stream(request, timeout=30):
        if message.HasField("done"):
            done = message.done
        else:
            pieces.append(message.text)
    check("".join(pieces) == reply.text, f"stream {''.join(pieces)!r} != unary {reply.text!r}")
    check(done is not None and done.text == reply.text, "missing or wrong summary message")

    server = info(pb.ServerInfoRequest(), timeout=10)
    check(server.model_type == "llama" and server.vocab_size == 512, f"server info {server}")

    try:
        generate(pb.GenerateRequest(prompt="hi", params=pb.DecodingParams(top_p=3)), timeout=10)
        check(False, "top_p 3 was accepted")
    except grpc.RpcError as error:
        check(error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"code {error.code()}")
        check("top_p must be in (0, 1], got 3" in error.details(), f"message {error.details()!r}")
    # Server reflection, spoken in raw bytes (Debian ships no reflection stubs for Python):
    # ServerReflectionRequest{list_services: ""} is field 7, length 0.
    reflection = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                       request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        replies = list(reflection(iter([b"\x3a\x00"]), timeout=10))
        check(args.expect_reflection == "on", "reflection answered although it is off")
        check(any(b"memoria.v1.Memoria" in r for r in replies), f"reflection lists no memoria.v1.Memoria: {replies}")
    except grpc.RpcError as error:
        check(args.expect_reflection == "off", f"reflection failed: {error.code()} {error.details()}")
        check(error.code() == grpc.StatusCode.UNIMPLEMENTED, f"reflection off gave {error.code()}")
    print(f"server_client.py: all checks passed (reflection {args.expect_reflection})")


PASSAGES = [
    ("paris", "Paris", "Paris is the capital and most populous city of France, on the river Seine."),
    ("oxygen", "Oxygen", "Oxygen is the chemical element with the symbol O and atomic number 8."),
    ("everest", "Mount Everest", "Mount Everest is Earth's highest mountain above sea level, in the Himalayas."),
]


def check_t5(pb, channel, generate, stream, info, check):
    """The T5/LUMEN path: ingest, answers by ids and by retrieval, streaming, ServerInfo."""
    ingest = channel.stream_unary("/memoria.v1.Memoria/Ingest", request_serializer=pb.IngestRequest.SerializeToString,
                                  response_deserializer=pb.IngestReply.FromString)
    messages = (pb.IngestRequest(passage=pb.Passage(id=i, title=t, text=x)) for i, t, x in PASSAGES)
    ingested = ingest(messages, timeout=60)
    check(ingested.ingested == len(PASSAGES) and ingested.tokens > 3 * 10, f"ingest {ingested}")

    question = "What is the capital of France?"
    params = pb.DecodingParams(max_new_tokens=8)
    by_ids = generate(pb.GenerateRequest(question=question, passage_ids=["paris", "oxygen"], params=params),
                      timeout=30)
    check(list(by_ids.passage_ids) == ["paris", "oxygen"], f"passage ids {by_ids.passage_ids}")
    check(0 < by_ids.completion_tokens <= 8 and len(by_ids.token_ids) == by_ids.completion_tokens,
          f"counts {by_ids}")
    check(by_ids.passage_tokens > 0 and by_ids.question_tokens > 0, f"token counts {by_ids}")
    check(by_ids.timings.live_encoder_seconds > 0 and by_ids.timings.decoder_seconds > 0, f"timings {by_ids}")

    retrieved = generate(pb.GenerateRequest(question=question, retrieve_top_k=2, params=params), timeout=30)
    check(len(retrieved.passage_ids) == 2 and retrieved.passage_ids[0] == "paris",
          f"retrieved {list(retrieved.passage_ids)}")
    check(len(retrieved.retrieval_scores) == 2 and retrieved.retrieval_scores[0] >= retrieved.retrieval_scores[1],
          f"scores {list(retrieved.retrieval_scores)}")

    tokens, pieces, done = [], [], None
    for message in stream(pb.GenerateRequest(question=question, passage_ids=["paris", "oxygen"], params=params),
                          timeout=30):
        if message.HasField("done"):
            done = message.done
        else:
            check(done is None, "a token message after the summary")
            tokens.append(message.token_id)
            pieces.append(message.text)
    check(tokens == list(by_ids.token_ids), f"streamed {tokens} != unary {list(by_ids.token_ids)}")
    check("".join(pieces) == by_ids.text, f"stream text {''.join(pieces)!r} != {by_ids.text!r}")
    check(done is not None and list(done.token_ids) == list(by_ids.token_ids), "missing or wrong summary")

    server = info(pb.ServerInfoRequest(), timeout=10)
    check(server.model_type == "t5" and server.store_configured, f"server info {server}")
    check(server.store_passages == len(PASSAGES), f"store passages {server.store_passages}")
    check(server.store_tokens == ingested.tokens, f"store tokens {server.store_tokens} != {ingested.tokens}")
    check(server.store_bytes > 0 and server.store_bytes_per_token > 0, f"store size {server}")
    check(server.bytes_per_token > 0 and server.compression_ratio > 0 and server.codec, f"codec {server}")
    check(0 <= server.alpha <= 1 and server.memory_layers >= 0, f"split {server}")

    try:
        generate(pb.GenerateRequest(question=question, passage_ids=["paris", "nope"], params=params), timeout=10)
        check(False, "an unknown passage id was accepted")
    except grpc.RpcError as error:
        check(error.code() == grpc.StatusCode.NOT_FOUND, f"code {error.code()}")
        check("'nope'" in error.details(), f"message {error.details()!r}")


if __name__ == "__main__":
    main()
