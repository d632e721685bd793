// Opt-in time accounting for benchmarks: when enabled, the CPU GEMM wrapper records its wall time
// and FLOPs. Disabled (the default), the cost is one relaxed atomic load per GEMM.
#pragma once

#include <cstdint>

namespace sparta::kernels::profile {

struct Counters {
  double gemm_seconds = 0;
  double gemm_flops = 0;
  int64_t gemm_calls = 0;
};

void enable(bool on);
bool enabled();
void reset();
Counters snapshot();
void add_gemm(double seconds, double flops);

// The FMA throughput of every OpenMP thread together (FLOP/s): 16 independent accumulator chains
// per thread with the widest vectors the CPU has (AVX-512, else AVX2 + FMA, else scalar).
// About 0.1-0.2 s. The "peak" of monitoring's MFU on CPUs and of bench/train_step_bench.
double fma_peak_flops();

}  // namespace sparta::kernels::profile
