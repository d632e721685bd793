// Rank 0's side of the sparta.v1.Control service (README "Control API"): what GetStatus and the
// streams read, and where RequestCheckpoint / RequestStop go. The training thread writes plain
// values here (a few stores under a mutex, at step boundaries); the service's threads read
// copies. A request only posts bits to the ControlInbox, which the ranks agree on at the next
// step like a signal or the trigger file (trainer/control.h): the service never acts itself.
//
// The gRPC server is injected (RunOptions::control_endpoint): sparta_trainer does not link gRPC
// (data/CMakeLists.txt says why). Without a factory, or with [control] grpc_bind = "none", or on
// ranks other than 0, nothing is served and every call here is cheap bookkeeping.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "launch/world.h"
#include "monitoring/control_state.h"
#include "trainer/config.h"

namespace sparta::trainer {

class ControlPlane final : public monitoring::ControlBackend {
 public:
  // Starts the endpoint (rank 0, a factory, grpc_bind != "none") and writes its address to
  // <run_dir>/control.address. `live` (may be null) outlives this object. A non-loopback bind
  // without [control] token_file, or an unreadable or empty token file, is a usage error.
  ControlPlane(const Config& cfg, const launch::World& world, const std::string& run_dir,
               const std::string& layout, const monitoring::LiveMetrics* live,
               const monitoring::ControlEndpointFactory& factory);
  ~ControlPlane() override;
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  bool serving() const { return endpoint_ != nullptr; }
  std::string address() const;  // "" when not serving

  // The training thread's updates.
  void set_state(const std::string& state, int64_t step);  // training | evaluating | ...
  void on_checkpoint(int64_t step, const std::string& path);
  void on_heartbeats(const std::vector<double>& unix_s);  // Control::last_seen()
  void event(monitoring::EventKind kind, int64_t step, const std::string& message);
  void drain(int64_t step, const std::string& why);  // the first agreed stop: NOT_SERVING
  void finish(int64_t step, int exit_code);          // ends the streams, then the server

  // monitoring::ControlBackend (the service's threads).
  monitoring::RunStatus status() const override;
  std::vector<monitoring::MetricValue> metrics() const override;
  int64_t request(monitoring::ControlRequest r) override;

 private:
  const monitoring::LiveMetrics* live_;
  int world_size_;
  mutable std::mutex mu_;
  monitoring::RunStatus board_;  // the fields the trainer owns (state, checkpoint, heartbeats)
  monitoring::EventLog events_;
  std::unique_ptr<monitoring::ControlEndpoint> endpoint_;
  std::string address_file_;
};

}  // namespace sparta::trainer
