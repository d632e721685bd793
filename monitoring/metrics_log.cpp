#include "monitoring/metrics_log.h"

#include <cerrno>
#include <cmath>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kernels/check.h"

namespace sparta::monitoring {

MetricsLog::MetricsLog(const std::string& path, bool append) {
  if (path.empty()) return;
  f_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (!f_) SPARTA_DATA_ERROR("cannot open metrics file {}: {}", path, std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::write(const TrainRecord& r) {
  if (!f_) return;
  nlohmann::json j = {{"step", r.step},
                      {"loss", r.loss},
                      {"lr", r.lr},
                      {"grad_norm", r.grad_norm},
                      {"tokens_per_s", r.tokens_per_s},
                      {"step_ms", r.step_ms}};
  if (!r.layer_grad_norms.empty()) j["layer_grad_norms"] = r.layer_grad_norms;
  if (r.noise_sigma > 0) j["noise_sigma"] = r.noise_sigma;
  if (!r.angular_distances.empty()) j["angular_distance"] = r.angular_distances;
  for (const auto& m : r.moe)
    j["moe"].push_back({{"layer", m.layer},
                        {"block", m.block},
                        {"fillers", m.fillers},
                        {"expert_tokens", m.expert_tokens},
                        {"dropped", m.dropped},
                        {"router_entropy", m.router_entropy},
                        {"load_balance_loss", m.load_balance_loss},
                        {"z_loss", m.z_loss}});
  for (const auto& c : r.comm)
    j["comm"].push_back({{"comm", c.comm},
                         {"kind", c.kind},
                         {"calls", c.calls},
                         {"bytes", c.bytes},
                         {"seconds", c.seconds}});
  for (const auto& [phase, sec] : r.phase_seconds) j["phase_seconds"][phase] = sec;
  std::fputs((j.dump() + "\n").c_str(), f_);
  std::fflush(f_);
}

void MetricsLog::write(const EvalRecord& r) {
  if (!f_) return;
  const nlohmann::json j = {{"step", r.step}, {"val_loss", r.val_loss}, {"val_bpb", r.val_bpb}};
  std::fputs((j.dump() + "\n").c_str(), f_);
  std::fflush(f_);
}

void MetricsLog::write(const ControlRecord& r) {
  if (!f_) return;
  nlohmann::json j = {{"step", r.step}, {"control", r.actions}, {"source", r.sources}};
  if (r.during_eval) j["during_eval"] = true;
  if (r.exit_code >= 0) j["exit_code"] = r.exit_code;
  std::fputs((j.dump() + "\n").c_str(), f_);
  std::fflush(f_);
}

void MetricsLog::write(const CheckpointRecord& r) {
  if (!f_) return;
  const nlohmann::json j = {
      {"step", r.step}, {"checkpoint_seconds", r.seconds}, {"checkpoint_bytes", r.bytes}};
  std::fputs((j.dump() + "\n").c_str(), f_);
  std::fflush(f_);
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<long long>(std::llround(s));
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

std::string progress_line(const TrainRecord& r, int64_t total_steps) {
  const double eta = static_cast<double>(total_steps - r.step) * r.step_ms / 1000.0;
  const int w = static_cast<int>(std::to_string(total_steps).size());
  // MoE runs add the mean load-balance loss (1 = balanced) and the dropped assignments.
  std::string moe;
  if (!r.moe.empty()) {
    double lb = 0;
    int64_t dropped = 0;
    for (const auto& m : r.moe) {
      lb += m.load_balance_loss;
      dropped += m.dropped;
    }
    moe = fmt::format(" | balance {:.3f} | dropped {}", lb / static_cast<double>(r.moe.size()),
                      dropped);
  }
  return fmt::format(
      "step {:>{}}/{} | loss {:.4f} | lr {:.2e} | gnorm {:.3f} | {:.0f} tok/s | "
      "{:.1f} ms | ETA {}{}",
      r.step, w, total_steps, r.loss, r.lr, r.grad_norm, r.tokens_per_s, r.step_ms,
      format_duration(eta), moe);
}

}  // namespace sparta::monitoring
