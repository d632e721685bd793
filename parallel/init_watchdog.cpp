#include "parallel/init_watchdog.h"

#include <unistd.h>

#include <chrono>

namespace sparta::parallel {

InitWatchdog::InitWatchdog(double timeout_s, std::string message) : message_(std::move(message)) {
  if (timeout_s <= 0) return;
  thread_ = std::thread([this, timeout_s] {
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, std::chrono::duration<double>(timeout_s), [this] { return done_; }))
      return;
    const ssize_t r = ::write(STDERR_FILENO, message_.data(), message_.size());
    (void)r;  // the exit below is what the launcher sees
    ::_exit(1);
  });
}

InitWatchdog::~InitWatchdog() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

}  // namespace sparta::parallel
