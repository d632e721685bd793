#include "monitoring/live_metrics.h"

#include <algorithm>

namespace sparta::monitoring {

const char* to_string(Phase p) {
  static const char* const names[] = {"data",      "forward",    "backward", "optimizer",
                                      "comm_wait", "checkpoint", "eval"};
  return names[static_cast<size_t>(p)];
}

const std::vector<double>& step_duration_buckets() {
  static const std::vector<double> b = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25,  0.5,    1,     2.5,  5,     10,   30};
  return b;
}

const std::vector<double>& checkpoint_duration_buckets() {
  static const std::vector<double> b = {0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300};
  return b;
}

namespace {
void observe(std::vector<double>& hist, double& sum, double& count,
             const std::vector<double>& bounds, double v) {
  for (size_t i = 0; i < bounds.size(); ++i)
    if (v <= bounds[i]) hist[i] += 1;
  sum += v;
  count += 1;
}
}  // namespace

void LiveMetrics::configure(const RunInfo& info) {
  std::lock_guard<std::mutex> lock(mu_);
  s_ = MetricsState{};
  s_.info = info;
  s_.layer_grad_norm.assign(static_cast<size_t>(info.layers), 0.0);
  s_.step_hist.assign(step_duration_buckets().size(), 0.0);
  s_.ckpt_hist.assign(checkpoint_duration_buckets().size(), 0.0);
  const size_t R = info.routed.size();
  s_.expert_tokens_total.resize(R);
  s_.expert_tokens_step.resize(R);
  for (size_t i = 0; i < R; ++i) {
    s_.expert_tokens_total[i].assign(static_cast<size_t>(info.routed[i].experts), 0.0);
    s_.expert_tokens_step[i].assign(static_cast<size_t>(info.routed[i].experts), 0.0);
  }
  s_.dropped_total.assign(R, 0.0);
  s_.router_entropy.assign(R, 0.0);
  s_.aux_loss.assign(R, 0.0);
  s_.z_loss.assign(R, 0.0);
  s_.coll_seconds.assign(info.comm_groups.size(), {});
  s_.coll_bytes.assign(info.comm_groups.size(), {});
}

void LiveMetrics::on_step(const StepSample& x) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.step = static_cast<double>(x.step);
  s_.steps_total += 1;
  s_.tokens_total += x.tokens;
  s_.model_flops_total += x.model_flops;
  s_.mfu = s_.info.peak_flops > 0 && x.seconds > 0 ? x.model_flops / x.seconds / s_.info.peak_flops
                                                   : 0.0;
  s_.loss = x.loss;
  s_.lr = x.lr;
  s_.grad_norm = x.grad_norm;
  s_.noise_sigma = x.noise_sigma;
  for (size_t p = 0; p < kPhases; ++p) s_.phase_seconds_total[p] += x.phase_seconds[p];
  observe(s_.step_hist, s_.step_sum, s_.step_count, step_duration_buckets(), x.seconds);
  s_.last_step_ts = x.timestamp;
}

void LiveMetrics::on_phase(Phase p, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.phase_seconds_total[static_cast<size_t>(p)] += seconds;
}

void LiveMetrics::on_layer_grad_norms(const std::vector<double>& norms) {
  std::lock_guard<std::mutex> lock(mu_);
  std::copy_n(norms.begin(), std::min(norms.size(), s_.layer_grad_norm.size()),
              s_.layer_grad_norm.begin());
}

void LiveMetrics::on_routing(size_t i, const int64_t* tokens, int64_t dropped, double entropy,
                             double aux, double z) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& total = s_.expert_tokens_total[i];
  auto& step = s_.expert_tokens_step[i];
  for (size_t e = 0; e < total.size(); ++e) {
    step[e] = static_cast<double>(tokens[e]);
    total[e] += step[e];
  }
  s_.dropped_total[i] += static_cast<double>(dropped);
  s_.router_entropy[i] = entropy;
  s_.aux_loss[i] = aux;
  s_.z_loss[i] = z;
}

void LiveMetrics::on_collectives(size_t g, size_t op, double seconds, double bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.coll_seconds[g][op] = seconds;
  s_.coll_bytes[g][op] = bytes;
}

void LiveMetrics::on_eval(double loss, double bpb) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.val_loss = loss;
  s_.val_bpb = bpb;
}

void LiveMetrics::on_checkpoint(double seconds, size_t reason, double timestamp) {
  std::lock_guard<std::mutex> lock(mu_);
  observe(s_.ckpt_hist, s_.ckpt_sum, s_.ckpt_count, checkpoint_duration_buckets(), seconds);
  s_.checkpoints_total[reason] += 1;
  s_.last_ckpt_ts = timestamp;
  s_.phase_seconds_total[static_cast<size_t>(Phase::checkpoint)] += seconds;
}

void LiveMetrics::on_control(const std::array<double, 4>& signals,
                             const std::array<double, 4>& actions) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.signals_total = signals;
  s_.control_total = actions;
}

void LiveMetrics::on_device_memory(double bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.device_memory_bytes = bytes;
}

MetricsState LiveMetrics::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return s_;
}

}  // namespace sparta::monitoring
