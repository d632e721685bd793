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
  return host == "127.0.0.1" || host == "localhost" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

}  // namespace sparta::monitoring
