// The Control service's plain side (no gRPC): the run's event log, the status snapshot, the
// backend the service reads and posts through, and the endpoint the trainer is handed. The gRPC
// server (monitoring/control_service.h, library sparta_control) implements ControlEndpoint; the
// trainer links only this, and sparta-train injects the server (data/CMakeLists.txt says why a
// process with gRPC must not load SentencePiece, so the trainer library stays free of gRPC).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "monitoring/live_metrics.h"

namespace sparta::monitoring {

enum class EventKind {
  checkpoint_saved = 1,
  eval_done,
  signal_received,
  warning,
  failure,
  control
};

struct ControlEvent {
  EventKind kind = EventKind::warning;
  int64_t step = 0;
  double unix_s = 0;
  std::string message;
};

// The run's recent events, numbered; readers wait for numbers they have not seen. Bounded: a
// slow reader skips what fell off (it is told so in one warning event).
class EventLog {
 public:
  explicit EventLog(size_t capacity = 1024) : capacity_(capacity) {}
  void push(ControlEvent e);
  // Events numbered >= *next (advancing *next), waiting up to timeout_s when there are none.
  std::vector<ControlEvent> wait_from(uint64_t* next, double timeout_s) const;
  void close();  // wakes every reader; wait_from returns what is left, then nothing
  bool closed() const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::deque<ControlEvent> events_;
  uint64_t first_ = 0;  // number of events_.front()
  size_t capacity_;
  bool closed_ = false;
};

struct RankHeartbeatView {
  int rank = 0;
  double age_s = 0;
};

// What GetStatus answers (plain values; the backend fills it from its own snapshot).
struct RunStatus {
  std::string state = "starting";  // starting | training | evaluating | draining | finished
  int64_t step = 0, total_steps = 0;
  double eta_s = 0, loss = 0, val_loss = 0, tokens_per_s = 0, mfu = 0;
  int64_t last_checkpoint_step = -1;
  double last_checkpoint_unix_s = 0;
  std::vector<RankHeartbeatView> heartbeats;
  int restarts = 0;
  std::string layout, run_dir;
};

struct MetricValue {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
};

enum class ControlRequest { checkpoint, stop_after_checkpoint, stop_now };

class ControlBackend {
 public:
  virtual ~ControlBackend() = default;
  virtual RunStatus status() const = 0;
  virtual std::vector<MetricValue> metrics() const = 0;
  // Posts the request; returns the step at whose end it takes effect (the next boundary).
  virtual int64_t request(ControlRequest r) = 0;
};

struct ControlServerOptions {
  std::string bind = "127.0.0.1:0";  // host:port; port 0 picks a free one
  std::string token;                 // required unless bind is loopback
};

bool is_loopback_bind(const std::string& bind);

// StreamMetrics' samples from a snapshot: the gauges and counters a dashboard draws, named as in
// the Prometheus exposition (README "Watching a run"), plus sparta_expert_tokens_step (the last
// step's tokens per expert, every expert: sparta-top's heat map).
std::vector<MetricValue> control_metrics(const MetricsState& s);

class ControlEndpoint {
 public:
  virtual ~ControlEndpoint() = default;
  virtual std::string address() const = 0;  // host:port actually bound
  virtual void set_draining() = 0;          // health: NOT_SERVING from now on
  virtual void stop() = 0;                  // ends streams (within their wait), then the server
};

// Starts an endpoint on rank 0; empty where sparta was built without gRPC.
using ControlEndpointFactory = std::function<std::unique_ptr<ControlEndpoint>(
    const ControlServerOptions&, ControlBackend&, EventLog&)>;

}  // namespace sparta::monitoring
