#!/usr/bin/python3
"""The Python client of sparta.v1.Control (Debian's python3-grpcio and python3-protobuf; no
generated service stubs: the methods are called by name). The twin of control_probe.cpp, with
the same commands and output, plus `malformed METHOD` (bytes that are not a message).

usage: control_client.py GEN_DIR [--token T] HOST:PORT status | metrics K [NAME...] | events K |
                         checkpoint | stop after_checkpoint|now|unspecified|BAD_NUMBER | health |
                         health-watch |
                         malformed METHOD
GEN_DIR holds control_pb2.py and health_pb2.py (protoc --python_out). Exit: 0 the call
succeeded, 3 it failed ("rpc error: CODE: message"), 2 bad usage.
"""
import sys

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
import control_pb2 as pb  # noqa: E402
import health_pb2 as hpb  # noqa: E402

args = sys.argv[2:]
meta = []
if len(args) >= 2 and args[0] == "--token":
    meta = [("authorization", "Bearer " + args[1])]
    args = args[2:]
if len(args) < 2:
    print(__doc__, file=sys.stderr)
    sys.exit(2)
channel = grpc.insecure_channel(args[0])
cmd, rest = args[1], args[2:]


def method(name, req, resp, stream=False, service="sparta.v1.Control"):
    make = channel.unary_stream if stream else channel.unary_unary
    return make(f"/{service}/{name}", request_serializer=req.SerializeToString,
                response_deserializer=resp.FromString)


def failed(e):
    print(f"rpc error: {e.code().value[0]}: {e.details()}")
    sys.exit(3)


try:
    if cmd == "status":
        st = method("GetStatus", pb.GetStatusRequest, pb.Status)(
            pb.GetStatusRequest(), metadata=meta, timeout=20)
        print(f"state={st.state} step={st.step} total={st.total_steps} "
              f"last_checkpoint={st.last_checkpoint_step} heartbeats={len(st.heartbeats)} "
              f"layout={st.layout}")
    elif cmd == "metrics":
        k = int(rest[0])
        stream = method("StreamMetrics", pb.StreamMetricsRequest, pb.MetricsSample, True)(
            pb.StreamMetricsRequest(interval_ms=100, names=rest[1:]), metadata=meta, timeout=60)
        got = []
        for sample in stream:
            got.append(sample)
            if len(got) == k:
                break
        stream.cancel()  # midway: the run must not notice
        if len(got) < k:
            print(f"rpc error: stream ended after {len(got)} samples")
            sys.exit(3)
        print(f"samples={k} first_step={got[0].step} last_step={got[-1].step} "
              f"series={len(got[-1].metrics)} cancelled={int(stream.code() == grpc.StatusCode.CANCELLED)}")
    elif cmd == "events":
        k, n = int(rest[0]), 0
        stream = method("StreamEvents", pb.StreamEventsRequest, pb.Event, True)(
            pb.StreamEventsRequest(), metadata=meta, timeout=120)
        for e in stream:
            print(f"event {pb.Event.Kind.Name(e.kind)} step={e.step} {e.message}", flush=True)
            n += 1
            if n == k:
                stream.cancel()
                break
        print(f"events={n} ended={'cancelled' if n == k else 'ok'}")
    elif cmd == "checkpoint":
        r = method("RequestCheckpoint", pb.RequestCheckpointRequest, pb.RequestCheckpointReply)(
            pb.RequestCheckpointRequest(), metadata=meta, timeout=20)
        print(f"step={r.step}")
    elif cmd == "stop":
        modes = {"after_checkpoint": 1, "now": 2, "unspecified": 0}
        mode = modes[rest[0]] if rest[0] in modes else int(rest[0])
        r = method("RequestStop", pb.RequestStopRequest, pb.RequestStopReply)(
            pb.RequestStopRequest(mode=mode), metadata=meta, timeout=20)
        print(f"step={r.step}")
    elif cmd == "health":
        r = method("Check", hpb.HealthCheckRequest, hpb.HealthCheckResponse,
                   service="grpc.health.v1.Health")(hpb.HealthCheckRequest(), metadata=meta,
                                                    timeout=20)
        print(f"health={hpb.HealthCheckResponse.ServingStatus.Name(r.status)}")
    elif cmd == "health-watch":
        stream = method("Watch", hpb.HealthCheckRequest, hpb.HealthCheckResponse, True,
                        service="grpc.health.v1.Health")(hpb.HealthCheckRequest(), metadata=meta,
                                                         timeout=120)
        try:
            for r in stream:
                print(f"health={hpb.HealthCheckResponse.ServingStatus.Name(r.status)}", flush=True)
        except grpc.RpcError as e:
            print(f"watch ended: {e.code().value[0]}")
            sys.exit(0)
        print("watch ended: 0")
    elif cmd == "malformed":
        raw = channel.unary_unary(f"/sparta.v1.Control/{rest[0]}",
                                  request_serializer=lambda b: b,
                                  response_deserializer=lambda b: b)
        raw(b"\xff\xff\xff\xff not a protobuf message", metadata=meta, timeout=20)
        print("accepted")
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
except grpc.RpcError as e:
    failed(e)
