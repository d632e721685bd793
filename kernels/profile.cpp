#include "kernels/profile.h"

#include <atomic>
#include <mutex>

namespace sparta::kernels::profile {

namespace {
std::atomic<bool> g_enabled{false};
std::mutex g_mu;
Counters g_counters;
}  // namespace

void enable(bool on) {
  g_enabled.store(on, std::memory_order_relaxed);
}
bool enabled() {
  return g_enabled.load(std::memory_order_relaxed);
}
void reset() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_counters = {};
}
Counters snapshot() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_counters;
}
void add_gemm(double seconds, double flops) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_counters.gemm_seconds += seconds;
  g_counters.gemm_flops += flops;
  ++g_counters.gemm_calls;
}

}  // namespace sparta::kernels::profile
