// ControlServer: the gRPC side of sparta.v1.Control (monitoring/control_service.h).
#include "monitoring/control_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "control.grpc.pb.h"
#include "kernels/check.h"

namespace sparta::monitoring {

namespace {

constexpr double kStreamWaitS = 0.25;  // how soon a stream notices stopping

class Service final : public sparta::v1::Control::Service {
 public:
  Service(ControlBackend& backend, EventLog& events, std::string token)
      : backend_(backend), events_(events), token_(std::move(token)) {}

  void stop() { stopping_ = true; }

  grpc::Status GetStatus(grpc::ServerContext* ctx, const sparta::v1::GetStatusRequest*,
                         sparta::v1::Status* out) override {
    if (auto s = authorize(ctx, "GetStatus"); !s.ok()) return s;
    const RunStatus r = backend_.status();
    out->set_state(r.state);
    out->set_step(r.step);
    out->set_total_steps(r.total_steps);
    out->set_eta_s(r.eta_s);
    out->set_loss(r.loss);
    out->set_val_loss(r.val_loss);
    out->set_tokens_per_s(r.tokens_per_s);
    out->set_mfu(r.mfu);
    out->set_last_checkpoint_step(r.last_checkpoint_step);
    out->set_last_checkpoint_unix_s(r.last_checkpoint_unix_s);
    for (const auto& h : r.heartbeats) {
      auto* p = out->add_heartbeats();
      p->set_rank(h.rank);
      p->set_age_s(h.age_s);
    }
    out->set_restarts(r.restarts);
    out->set_layout(r.layout);
    out->set_run_dir(r.run_dir);
    return grpc::Status::OK;
  }

  grpc::Status StreamMetrics(grpc::ServerContext* ctx, const sparta::v1::StreamMetricsRequest* req,
                             grpc::ServerWriter<sparta::v1::MetricsSample>* w) override {
    if (auto s = authorize(ctx, "StreamMetrics"); !s.ok()) return s;
    if (req->interval_ms() < 100 || req->interval_ms() > 3600000)
      return {grpc::StatusCode::INVALID_ARGUMENT,
              fmt::format("interval_ms must be in [100, 3600000], got {}", req->interval_ms())};
    const std::vector<std::string> names(req->names().begin(), req->names().end());
    const auto period = std::chrono::milliseconds(req->interval_ms());
    auto due = std::chrono::steady_clock::now();
    while (!stopping_ && !ctx->IsCancelled()) {
      sparta::v1::MetricsSample sample;
      const RunStatus st = backend_.status();
      sample.set_step(st.step);
      sample.set_unix_s(
          std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
              .count());
      for (const auto& m : backend_.metrics()) {
        if (!names.empty() && std::find(names.begin(), names.end(), m.name) == names.end())
          continue;
        auto* p = sample.add_metrics();
        p->set_name(m.name);
        p->set_value(m.value);
        for (const auto& [k, v] : m.labels) (*p->mutable_labels())[k] = v;
      }
      if (!w->Write(sample)) break;  // the client went away
      due += period;
      while (!stopping_ && !ctx->IsCancelled() && std::chrono::steady_clock::now() < due)
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
            due - std::chrono::steady_clock::now(), std::chrono::milliseconds(50)));
      if (st.state == "finished") break;
    }
    return grpc::Status::OK;
  }

  grpc::Status StreamEvents(grpc::ServerContext* ctx, const sparta::v1::StreamEventsRequest*,
                            grpc::ServerWriter<sparta::v1::Event>* w) override {
    if (auto s = authorize(ctx, "StreamEvents"); !s.ok()) return s;
    uint64_t next = 0;
    // The run's last events (the drain, "the run ended") are pushed just before the log closes
    // and the server stops, possibly while this thread is still writing earlier ones. So the
    // end is decided before a read: once closed or stopping, one more read without waiting
    // hands over everything pushed until then, and the stream ends after it.
    while (!ctx->IsCancelled()) {
      const bool last = stopping_ || events_.closed();
      for (const auto& e : events_.wait_from(&next, last ? 0 : kStreamWaitS)) {
        sparta::v1::Event out;
        out.set_kind(static_cast<sparta::v1::Event::Kind>(static_cast<int>(e.kind)));
        out.set_step(e.step);
        out.set_unix_s(e.unix_s);
        out.set_message(e.message);
        if (!w->Write(out)) return grpc::Status::OK;
      }
      if (last) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status RequestCheckpoint(grpc::ServerContext* ctx,
                                 const sparta::v1::RequestCheckpointRequest*,
                                 sparta::v1::RequestCheckpointReply* out) override {
    if (auto s = authorize(ctx, "RequestCheckpoint"); !s.ok()) return s;
    if (auto s = refuse_when_draining(); !s.ok()) return s;
    out->set_step(backend_.request(ControlRequest::checkpoint));
    return grpc::Status::OK;
  }

  grpc::Status RequestStop(grpc::ServerContext* ctx, const sparta::v1::RequestStopRequest* req,
                           sparta::v1::RequestStopReply* out) override {
    if (auto s = authorize(ctx, "RequestStop"); !s.ok()) return s;
    ControlRequest r;
    switch (req->mode()) {
      case sparta::v1::RequestStopRequest::AFTER_CHECKPOINT:
        r = ControlRequest::stop_after_checkpoint;
        break;
      case sparta::v1::RequestStopRequest::NOW:
        r = ControlRequest::stop_now;
        break;
      default:
        return {grpc::StatusCode::INVALID_ARGUMENT,
                fmt::format("RequestStop: mode must be AFTER_CHECKPOINT (1) or NOW (2), got {}",
                            static_cast<int>(req->mode()))};
    }
    if (auto s = refuse_when_draining(); !s.ok()) return s;
    out->set_step(backend_.request(r));
    return grpc::Status::OK;
  }

  std::atomic<bool> draining{false};

 private:
  grpc::Status authorize(grpc::ServerContext* ctx, const char* method) {
    if (token_.empty()) return grpc::Status::OK;
    const auto& md = ctx->client_metadata();
    const auto it = md.find("authorization");
    if (it != md.end() && std::string(it->second.data(), it->second.size()) == "Bearer " + token_)
      return grpc::Status::OK;
    fmt::print(stderr, "control: refused {} from {}: {} token\n", method, ctx->peer(),
               it == md.end() ? "no" : "a wrong");
    return {grpc::StatusCode::UNAUTHENTICATED,
            "this control server needs `authorization: Bearer <token>` ([control] token_file)"};
  }
  grpc::Status refuse_when_draining() const {
    if (!draining) return grpc::Status::OK;
    return {grpc::StatusCode::FAILED_PRECONDITION, "the run is draining: no new requests"};
  }

  ControlBackend& backend_;
  EventLog& events_;
  std::string token_;
  std::atomic<bool> stopping_{false};
};

}  // namespace

struct ControlServer::Impl {
  std::unique_ptr<Service> service;
  std::unique_ptr<grpc::Server> server;
  std::string address;
  bool stopped = false;
};

ControlServer::ControlServer(const ControlServerOptions& opt, ControlBackend& backend,
                             EventLog& events)
    : impl_(std::make_unique<Impl>()) {
  if (!is_loopback_bind(opt.bind) && opt.token.empty())
    SPARTA_USAGE_ERROR(
        "control.grpc_bind = '{}' is not a loopback address: set [control] token_file (a file "
        "holding the token every client must send)",
        opt.bind);
  impl_->service = std::make_unique<Service>(backend, events, opt.token);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder b;
  // Without this, gRPC clones the listener once per poller with SO_REUSEPORT, and with port 0
  // each clone binds a port of its own: a second, unannounced listening port.
  b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int port = 0;
  b.AddListeningPort(opt.bind, grpc::InsecureServerCredentials(), &port);
  b.RegisterService(impl_->service.get());
  impl_->server = b.BuildAndStart();
  if (!impl_->server || port == 0)
    throw Error(
        ErrorKind::usage,
        fmt::format("control: cannot listen on '{}' (in use, or not this host's)", opt.bind));
  const auto colon = opt.bind.rfind(':');
  impl_->address = fmt::format("{}:{}", opt.bind.substr(0, colon), port);
  impl_->server->GetHealthCheckService()->SetServingStatus(true);
}

ControlServer::~ControlServer() {
  stop();
}

std::string ControlServer::address() const {
  return impl_->address;
}

void ControlServer::set_draining() {
  impl_->service->draining = true;
  impl_->server->GetHealthCheckService()->SetServingStatus(false);
}

void ControlServer::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->service->stop();
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  impl_->server->Wait();
}

ControlEndpointFactory grpc_control_factory() {
  return [](const ControlServerOptions& opt, ControlBackend& backend, EventLog& events) {
    return std::unique_ptr<ControlEndpoint>(new ControlServer(opt, backend, events));
  };
}

}  // namespace sparta::monitoring
