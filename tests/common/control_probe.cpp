// control_probe: the C++ client of sparta.v1.Control the e2e test drives (tests/e2e/grpc_test.sh;
// tests/common/control_client.py is the Python one). One call per run, printed as key=value.
// usage: control_probe [--token T] HOST:PORT status | metrics K [NAME...] | events K |
//                      checkpoint | stop after_checkpoint|now|unspecified |
//                      health | health-watch
// Exit: 0 the call succeeded; 3 it failed (printed as "rpc error: CODE: message"); 2 bad usage.
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <string>
#include <vector>

#include "control.grpc.pb.h"
#include "health.grpc.pb.h"

namespace {

namespace v1 = sparta::v1;

int failed(const grpc::Status& s) {
  std::printf("rpc error: %d: %s\n", static_cast<int>(s.error_code()), s.error_message().c_str());
  return 3;
}

struct Call {
  std::string token;
  void prepare(grpc::ClientContext* ctx) const {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  }
};

int status(v1::Control::Stub& stub, const Call& call) {
  grpc::ClientContext ctx;
  call.prepare(&ctx);
  v1::Status st;
  const auto s = stub.GetStatus(&ctx, v1::GetStatusRequest(), &st);
  if (!s.ok()) return failed(s);
  std::printf("state=%s step=%lld total=%lld last_checkpoint=%lld heartbeats=%d layout=%s\n",
              st.state().c_str(), static_cast<long long>(st.step()),
              static_cast<long long>(st.total_steps()),
              static_cast<long long>(st.last_checkpoint_step()), st.heartbeats_size(),
              st.layout().c_str());
  for (const auto& h : st.heartbeats())
    std::printf("heartbeat rank=%d age_s=%.3f\n", h.rank(), h.age_s());
  return 0;
}

// Reads k samples, then cancels the stream midway (the run must not notice).
int metrics(v1::Control::Stub& stub, const Call& call, int k,
            const std::vector<std::string>& names) {
  grpc::ClientContext ctx;
  call.prepare(&ctx);
  v1::StreamMetricsRequest req;
  req.set_interval_ms(100);
  for (const auto& n : names) req.add_names(n);
  auto reader = stub.StreamMetrics(&ctx, req);
  v1::MetricsSample m;
  int got = 0;
  long long first = -1, last = -1;
  size_t series = 0;
  while (got < k && reader->Read(&m)) {
    if (first < 0) first = m.step();
    last = m.step();
    series = static_cast<size_t>(m.metrics_size());
    ++got;
  }
  ctx.TryCancel();
  const auto s = reader->Finish();
  if (got < k) return failed(s);
  std::printf("samples=%d first_step=%lld last_step=%lld series=%zu cancelled=%d\n", got, first,
              last, series, s.error_code() == grpc::StatusCode::CANCELLED ? 1 : 0);
  return 0;
}

int events(v1::Control::Stub& stub, const Call& call, int k) {
  grpc::ClientContext ctx;
  call.prepare(&ctx);
  auto reader = stub.StreamEvents(&ctx, v1::StreamEventsRequest());
  v1::Event e;
  int got = 0;
  while (got < k && reader->Read(&e)) {
    std::printf("event %s step=%lld %s\n", v1::Event::Kind_Name(e.kind()).c_str(),
                static_cast<long long>(e.step()), e.message().c_str());
    std::fflush(stdout);
    ++got;
  }
  if (got == k) ctx.TryCancel();
  const auto s = reader->Finish();
  std::printf("events=%d ended=%s\n", got, s.ok() ? "ok" : "cancelled");
  return s.ok() || got == k ? 0 : failed(s);
}

int checkpoint(v1::Control::Stub& stub, const Call& call) {
  grpc::ClientContext ctx;
  call.prepare(&ctx);
  v1::RequestCheckpointReply r;
  const auto s = stub.RequestCheckpoint(&ctx, v1::RequestCheckpointRequest(), &r);
  if (!s.ok()) return failed(s);
  std::printf("step=%lld\n", static_cast<long long>(r.step()));
  return 0;
}

int stop(v1::Control::Stub& stub, const Call& call, const std::string& mode) {
  v1::RequestStopRequest req;
  if (mode == "after_checkpoint")
    req.set_mode(v1::RequestStopRequest::AFTER_CHECKPOINT);
  else if (mode == "now")
    req.set_mode(v1::RequestStopRequest::NOW);
  grpc::ClientContext ctx;
  call.prepare(&ctx);
  v1::RequestStopReply r;
  const auto s = stub.RequestStop(&ctx, req, &r);
  if (!s.ok()) return failed(s);
  std::printf("step=%lld\n", static_cast<long long>(r.step()));
  return 0;
}

int health(const std::shared_ptr<grpc::Channel>& ch, const Call& call) {
  auto stub = grpc::health::v1::Health::NewStub(ch);
  grpc::ClientContext ctx;
  call.prepare(&ctx);
  grpc::health::v1::HealthCheckResponse r;
  const auto s = stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &r);
  if (!s.ok()) return failed(s);
  std::printf("health=%s\n",
              grpc::health::v1::HealthCheckResponse::ServingStatus_Name(r.status()).c_str());
  return 0;
}

// Prints every status the server sends until the stream ends (the server shut down).
int health_watch(const std::shared_ptr<grpc::Channel>& ch, const Call& call) {
  auto stub = grpc::health::v1::Health::NewStub(ch);
  grpc::ClientContext ctx;
  if (!call.token.empty()) ctx.AddMetadata("authorization", "Bearer " + call.token);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto reader = stub->Watch(&ctx, grpc::health::v1::HealthCheckRequest());
  grpc::health::v1::HealthCheckResponse r;
  while (reader->Read(&r)) {
    std::printf("health=%s\n",
                grpc::health::v1::HealthCheckResponse::ServingStatus_Name(r.status()).c_str());
    std::fflush(stdout);
  }
  const auto s = reader->Finish();
  std::printf("watch ended: %d\n", static_cast<int>(s.error_code()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  Call call;
  if (a.size() >= 2 && a[0] == "--token") {
    call.token = a[1];
    a.erase(a.begin(), a.begin() + 2);
  }
  if (a.size() < 2) {
    std::fprintf(stderr, "usage: control_probe [--token T] HOST:PORT COMMAND [ARGS]\n");
    return 2;
  }
  const auto ch = grpc::CreateChannel(a[0], grpc::InsecureChannelCredentials());
  auto stub = v1::Control::NewStub(ch);
  const std::string& cmd = a[1];
  if (cmd == "status") return status(*stub, call);
  if (cmd == "metrics" && a.size() >= 3)
    return metrics(*stub, call, std::stoi(a[2]), std::vector<std::string>(a.begin() + 3, a.end()));
  if (cmd == "events" && a.size() == 3) return events(*stub, call, std::stoi(a[2]));
  if (cmd == "checkpoint") return checkpoint(*stub, call);
  if (cmd == "stop" && a.size() == 3) return stop(*stub, call, a[2]);
  if (cmd == "health") return health(ch, call);
  if (cmd == "health-watch") return health_watch(ch, call);
  std::fprintf(stderr, "control_probe: unknown command '%s'\n", cmd.c_str());
  return 2;
}
