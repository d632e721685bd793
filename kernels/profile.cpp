#include "kernels/profile.h"

#include <immintrin.h>
#include <omp.h>

#include <atomic>
#include <chrono>
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

namespace {
constexpr long kFmaIters = 160000000;  // per thread: about 0.1 s at 50 GFLOP/s a core

// Each returns the FLOPs it executed; the sink keeps the compiler from dropping the chains.
__attribute__((target("avx512f"))) double fma_avx512() {
  __m512 acc[16];
  for (auto& a : acc) a = _mm512_set1_ps(0.0f);
  const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(0.001f);
  for (long i = 0; i < kFmaIters / 16; ++i)
    for (auto& a : acc) a = _mm512_fmadd_ps(a, x, y);
  __m512 s = acc[0];
  for (int j = 1; j < 16; ++j) s = _mm512_add_ps(s, acc[j]);
  float sink[16];
  _mm512_storeu_ps(sink, s);
  return 2.0 * 16 * 16 * static_cast<double>(kFmaIters / 16) + (sink[0] == 12345.f ? 1 : 0);
}

__attribute__((target("avx2,fma"))) double fma_avx2() {
  __m256 acc[16];
  for (auto& a : acc) a = _mm256_set1_ps(0.0f);
  const __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(0.001f);
  for (long i = 0; i < kFmaIters / 16; ++i)
    for (auto& a : acc) a = _mm256_fmadd_ps(a, x, y);
  __m256 s = acc[0];
  for (int j = 1; j < 16; ++j) s = _mm256_add_ps(s, acc[j]);
  float sink[8];
  _mm256_storeu_ps(sink, s);
  return 2.0 * 8 * 16 * static_cast<double>(kFmaIters / 16) + (sink[0] == 12345.f ? 1 : 0);
}

double fma_scalar() {
  float acc[16] = {};
  for (long i = 0; i < kFmaIters / 16; ++i)
    for (float& a : acc) a = a * 0.999f + 0.001f;
  float s = 0;
  for (float a : acc) s += a;
  return 2.0 * 16 * static_cast<double>(kFmaIters / 16) + (s == 12345.f ? 1 : 0);
}
}  // namespace

double fma_peak_flops() {
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  double flops = 0;
#pragma omp parallel
  { (void)fma_scalar; }  // start the thread pool outside the timed region
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel reduction(+ : flops)
  flops += avx512 ? fma_avx512() : avx2 ? fma_avx2() : fma_scalar();
  return flops / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace sparta::kernels::profile
