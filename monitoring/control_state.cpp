// EventLog and the loopback test (monitoring/control_state.h).
#include "monitoring/control_state.h"

#include <chrono>

#include <fmt/format.h>

namespace sparta::monitoring {

void EventLog::push(ControlEvent e) {
  {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(e));
    if (events_.size() > capacity_) {
      events_.pop_front();
      ++first_;
    }
  }
  cv_.notify_all();
}

std::vector<ControlEvent> EventLog::wait_from(uint64_t* next, double timeout_s) const {
  std::unique_lock lock(mu_);
  const auto have = [&] { return closed_ || *next < first_ + events_.size(); };
  cv_.wait_for(lock, std::chrono::duration<double>(timeout_s), have);
  std::vector<ControlEvent> out;
  if (*next < first_) {
    out.push_back({EventKind::warning, 0, 0,
                   fmt::format("{} events were dropped (a slow reader)", first_ - *next)});
    *next = first_;
  }
  for (; *next < first_ + events_.size(); ++*next) out.push_back(events_[*next - first_]);
  return out;
}

void EventLog::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

bool EventLog::closed() const {
  std::lock_guard lock(mu_);
  return closed_;
}

bool is_loopback_bind(const std::string& bind) {
  const auto colon = bind.rfind(':');
  const std::string host = colon == std::string::npos ? bind : bind.substr(0, colon);
  return host == "127.0.0.1" || host == "localhost" || host == "[::1]" ||
         host.rfind("127.", 0) == 0;
}

std::vector<MetricValue> control_metrics(const MetricsState& s) {
  std::vector<MetricValue> out;
  const auto add = [&](const char* name, double v,
                       std::vector<std::pair<std::string, std::string>> labels = {}) {
    out.push_back({name, std::move(labels), v});
  };
  add("sparta_step", s.step);
  add("sparta_target_steps", static_cast<double>(s.info.target_steps));
  add("sparta_loss", s.loss);
  add("sparta_val_loss", s.val_loss);
  add("sparta_val_bpb", s.val_bpb);
  add("sparta_grad_norm", s.grad_norm);
  add("sparta_learning_rate", s.lr);
  add("sparta_noise_sigma", s.noise_sigma);
  add("sparta_mfu_ratio", s.mfu);
  add("sparta_tokens_total", s.tokens_total);
  add("sparta_step_duration_seconds_sum", s.step_sum);
  add("sparta_step_duration_seconds_count", s.step_count);
  for (size_t p = 0; p < kPhases; ++p)
    add("sparta_phase_seconds_total", s.phase_seconds_total[p],
        {{"phase", to_string(static_cast<Phase>(p))}});
  for (size_t g = 0; g < s.coll_seconds.size() && g < s.info.comm_groups.size(); ++g)
    for (size_t op = 0; op < kCollectiveOpCount; ++op)
      if (s.coll_seconds[g][op] > 0)
        add("sparta_collective_seconds_total", s.coll_seconds[g][op],
            {{"group", s.info.comm_groups[g]}, {"op", kCollectiveOps[op]}});
  for (size_t b = 0; b < s.expert_tokens_step.size() && b < s.info.routed.size(); ++b) {
    const auto& r = s.info.routed[b];
    double dead = 0;
    for (size_t e = 0; e < s.expert_tokens_step[b].size(); ++e) {
      const double c = s.expert_tokens_step[b][e];
      if (c == 0) dead += 1;
      add("sparta_expert_tokens_step", c,
          {{"layer", std::to_string(r.layer)}, {"block", r.block}, {"expert", std::to_string(e)}});
    }
    add("sparta_dead_experts", s.steps_total > 0 ? dead : 0,
        {{"layer", std::to_string(r.layer)}, {"block", r.block}});
  }
  return out;
}

}  // namespace sparta::monitoring
