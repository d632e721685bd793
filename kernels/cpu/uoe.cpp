// CPU reference of the UoE stages (kernels/uoe.h, uoe_backend.inc).
#include <cmath>
#include <cstdint>

#include "kernels/check.h"

namespace sparta::kernels::cpu {
#include "kernels/uoe_backend.inc"

void uoe_assign_clean(int32_t* row_token, int32_t* pos, int32_t* slot_pos, int64_t* counts_host,
                      const int32_t* idx, int64_t N, int64_t K, int64_t E, int64_t G, int64_t I,
                      int64_t gs, int64_t is, int64_t T) {
  for (int64_t i = 0; i < N * E; ++i) pos[i] = -1;
  for (int64_t i = 0; i < 3 * E; ++i) counts_host[i] = 0;
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t g = 0; g < G; ++g) {
      const int64_t base = (e * G + g) * T;
      int64_t t = 0, members = 0;
      for (int64_t i = 0; i < I; ++i) {  // ascending item order: admission is causal
        const int64_t n = g * gs + i * is;
        bool chose = false;
        for (int64_t k = 0; k < K; ++k) chose = chose || idx[n * K + k] == e;
        if (!chose) continue;
        ++members;
        if (t == T) continue;  // overflow drops the latest members
        row_token[base + t] = static_cast<int32_t>(n);
        slot_pos[base + t] = static_cast<int32_t>(i);
        pos[n * E + e] = static_cast<int32_t>(base + t);
        ++t;
      }
      counts_host[e] += members;
      counts_host[E + e] += t;
      for (; t < T; ++t) {  // masked slots
        row_token[base + t] = static_cast<int32_t>(g * gs);
        slot_pos[base + t] = 0;
      }
    }
  }
}

// rope_at shares its loop with rope (kernels/cpu/embedding.cpp).

void grouped_bias_forward(float* x, const float* b, int64_t E, int64_t R, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t er = 0; er < E * R; ++er) {
    const float* be = b + (er / R) * C;
    float* xr = x + er * C;
    for (int64_t c = 0; c < C; ++c) xr[c] += be[c];
  }
}

void grouped_bias_backward(float* db, const float* dx, int64_t E, int64_t R, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t ec = 0; ec < E * C; ++ec) {
    const int64_t e = ec / C, c = ec % C;
    double s = 0;  // fixed row order: deterministic
    for (int64_t r = 0; r < R; ++r) s += dx[(e * R + r) * C + c];
    db[ec] += static_cast<float>(s);
  }
}

}  // namespace sparta::kernels::cpu
