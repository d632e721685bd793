// sparta.v1.Control (monitoring/control.proto): see and steer a running job over gRPC, served by
// rank 0 (README "Control API").
//
// The service never acts on the run. A request only goes to ControlBackend::request(), which the
// trainer implements by posting bits to its ControlInbox; the ranks agree on them at the next
// step like any other request. Reads come from plain snapshots (ControlBackend::status(), the
// EventLog). Streams run on gRPC's threads and wait on a condition variable with a timeout,
// checking the stopping flag: the sync server's Shutdown does not end a running handler itself.
//
// Security: loopback binds need no token; any other bind refuses to start without one
// ([control] token_file). With a token every call must carry `authorization: Bearer <token>`;
// a call without it, or with a wrong one, is refused (UNAUTHENTICATED) and logged.
#pragma once

#include <memory>
#include <string>

#include "monitoring/control_state.h"

namespace sparta::monitoring {

class ControlServer final : public ControlEndpoint {
 public:
  // Starts serving; throws ConfigError for a non-loopback bind without a token, RuntimeError
  // when the port cannot be bound.
  ControlServer(const ControlServerOptions& opt, ControlBackend& backend, EventLog& events);
  ~ControlServer() override;
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  std::string address() const override;
  void set_draining() override;
  void stop() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The factory sparta-train hands the trainer.
ControlEndpointFactory grpc_control_factory();

}  // namespace sparta::monitoring
