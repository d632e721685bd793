#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace sparta::kernels::cpu {

void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                       int64_t B, int64_t T, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < B * T; ++n) {
    const float* e = wte + static_cast<int64_t>(tokens[n]) * C;
    const float* p = wpe ? wpe + (n % T) * C : nullptr;
    float* o = out + n * C;
    for (int64_t c = 0; c < C; ++c) o[c] = e[c] + (p ? p[c] : 0.0f);
  }
}

void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                        int64_t B, int64_t T, int64_t C) {
  // Serial over tokens: rows of dwte may repeat, and a fixed order keeps the sum deterministic.
  if (dwte) {
    for (int64_t n = 0; n < B * T; ++n) {
      float* d = dwte + static_cast<int64_t>(tokens[n]) * C;
      const float* g = dout + n * C;
      for (int64_t c = 0; c < C; ++c) d[c] += g[c];
    }
  }
  if (dwpe) {
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t b = 0; b < B; ++b) {
        const float* g = dout + (b * T + t) * C;
        for (int64_t c = 0; c < C; ++c) dwpe[t * C + c] += g[c];
      }
    }
  }
}

void rope(float* x, int64_t BH, int64_t T, int64_t D, float theta, int sign) {
  SPARTA_CHECK(D % 2 == 0 && D <= 1024, "rope needs an even head dim <= 1024, got {}", D);
  const int64_t half = D / 2;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    float cs[512], sn[512];
    for (int64_t i = 0; i < half; ++i) {
      // Angles in double: at t ~ 4096 an fp32 angle would already be off by ~1e-4 rad.
      const double ang =
          static_cast<double>(t) * std::pow(static_cast<double>(theta),
                                            -2.0 * static_cast<double>(i) / static_cast<double>(D));
      cs[i] = static_cast<float>(std::cos(ang));
      sn[i] = static_cast<float>(sign) * static_cast<float>(std::sin(ang));
    }
    for (int64_t bh = 0; bh < BH; ++bh) {
      float* r = x + (bh * T + t) * D;
      for (int64_t i = 0; i < half; ++i) {
        const float x0 = r[2 * i], x1 = r[2 * i + 1];
        r[2 * i] = x0 * cs[i] - x1 * sn[i];
        r[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
      }
    }
  }
}

}  // namespace sparta::kernels::cpu
