#include "trainer/control_plane.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "kernels/check.h"
#include "trainer/control.h"

namespace sparta::trainer {

namespace fs = std::filesystem;
namespace mon = sparta::monitoring;

namespace {
double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string read_token(const std::string& path) {
  std::ifstream in(path);
  if (!in) SPARTA_USAGE_ERROR("[control] token_file = '{}' cannot be read", path);
  std::stringstream text;
  text << in.rdbuf();
  std::string t = text.str();
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
  if (t.empty()) SPARTA_USAGE_ERROR("[control] token_file = '{}' is empty", path);
  if (t.find_first_of(" \t\r\n") != std::string::npos)
    SPARTA_USAGE_ERROR("[control] token_file = '{}': the token is one word (no spaces or lines)",
                       path);
  return t;
}
}  // namespace

ControlPlane::ControlPlane(const Config& cfg, const launch::World& world,
                           const std::string& run_dir, const std::string& layout,
                           const mon::LiveMetrics* live, const mon::ControlEndpointFactory& factory)
    : live_(live), world_size_(world.size) {
  board_.total_steps = cfg.train.steps;
  board_.restarts = static_cast<int>(world.restarts);
  board_.layout = layout;
  board_.run_dir = run_dir.empty() ? "" : fs::absolute(run_dir).lexically_normal().string();
  board_.heartbeats.resize(static_cast<size_t>(world.size));
  for (int r = 0; r < world.size; ++r) board_.heartbeats[static_cast<size_t>(r)].rank = r;
  const auto& c = cfg.control;
  if (world.rank != 0 || !factory || c.grpc_bind == "none") return;
  mon::ControlServerOptions opt;
  opt.bind = c.grpc_bind;
  if (!c.token_file.empty()) opt.token = read_token(c.token_file);
  if (!mon::is_loopback_bind(opt.bind) && opt.token.empty())
    SPARTA_USAGE_ERROR(
        "[control] grpc_bind = '{}' is not a loopback address: set [control] token_file (a "
        "file holding the token clients must send), or bind 127.0.0.1",
        opt.bind);
  endpoint_ = factory(opt, *this, events_);
  if (run_dir.empty()) return;
  fs::create_directories(run_dir);
  address_file_ = (fs::path(run_dir) / "control.address").string();
  std::ofstream(address_file_) << endpoint_->address() << '\n';
}

// The address file goes with the server: a run directory without one is a run that is not
// serving (sparta-top then reads <run-dir>/status to say how it ended).
ControlPlane::~ControlPlane() {
  events_.close();
  if (endpoint_) endpoint_->stop();
  if (!address_file_.empty()) std::remove(address_file_.c_str());
}

std::string ControlPlane::address() const {
  return endpoint_ ? endpoint_->address() : "";
}

void ControlPlane::set_state(const std::string& state, int64_t step) {
  std::lock_guard lock(mu_);
  if (board_.state == "draining" || board_.state == "finished") return;
  board_.state = state;
  board_.step = step;
}

void ControlPlane::on_checkpoint(int64_t step, const std::string& path) {
  {
    std::lock_guard lock(mu_);
    board_.last_checkpoint_step = step;
    board_.last_checkpoint_unix_s = unix_now();
  }
  event(mon::EventKind::checkpoint_saved, step, path);
}

void ControlPlane::on_heartbeats(const std::vector<double>& unix_s) {
  std::lock_guard lock(mu_);
  for (size_t r = 0; r < unix_s.size() && r < board_.heartbeats.size(); ++r)
    board_.heartbeats[r].age_s = unix_s[r];  // a time here; status() turns it into an age
}

void ControlPlane::event(mon::EventKind kind, int64_t step, const std::string& message) {
  if (endpoint_) events_.push({kind, step, unix_now(), message});
}

void ControlPlane::drain(int64_t step, const std::string& why) {
  {
    std::lock_guard lock(mu_);
    board_.state = "draining";
    board_.step = step;
  }
  event(mon::EventKind::control, step, why);
  if (endpoint_) endpoint_->set_draining();
}

void ControlPlane::finish(int64_t step, int exit_code) {
  {
    std::lock_guard lock(mu_);
    board_.state = "finished";
    board_.step = step;
  }
  event(mon::EventKind::control, step, fmt::format("the run ended (exit {})", exit_code));
  events_.close();
  if (endpoint_) endpoint_->set_draining();
}

mon::RunStatus ControlPlane::status() const {
  mon::RunStatus s;
  {
    std::lock_guard lock(mu_);
    s = board_;
  }
  const double now = unix_now();
  for (auto& h : s.heartbeats) h.age_s = h.age_s > 0 ? std::max(0.0, now - h.age_s) : -1;
  if (!live_) return s;
  const mon::MetricsState m = live_->snapshot();
  s.step = static_cast<int64_t>(m.step);
  s.loss = m.loss;
  s.val_loss = m.val_loss;
  s.mfu = m.mfu;
  if (m.step_sum > 0) {
    const double per_step = m.step_sum / m.step_count;
    s.tokens_per_s = m.tokens_total * world_size_ / m.step_sum;
    s.eta_s = per_step * static_cast<double>(std::max<int64_t>(0, s.total_steps - s.step));
  }
  return s;
}

std::vector<mon::MetricValue> ControlPlane::metrics() const {
  return live_ ? mon::control_metrics(live_->snapshot()) : std::vector<mon::MetricValue>{};
}

int64_t ControlPlane::request(mon::ControlRequest r) {
  uint32_t bits = kFromRpc;
  switch (r) {
    case mon::ControlRequest::checkpoint:
      bits |= kCheckpoint;
      break;
    case mon::ControlRequest::stop_after_checkpoint:
      bits |= kCheckpoint | kStop;
      break;
    case mon::ControlRequest::stop_now:
      bits |= kStopNow;
      break;
  }
  ControlInbox::post(bits);
  std::lock_guard lock(mu_);
  // Training: the step in progress ends at step + 1. Evaluating (after step `step`) or before
  // the first step: the request acts at the boundary of step `step` itself.
  return board_.state == "training" ? board_.step + 1 : board_.step;
}

}  // namespace sparta::trainer
