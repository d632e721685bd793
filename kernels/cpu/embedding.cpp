#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace sparta::kernels::cpu {
#include "kernels/uoe_backend.inc"

void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                       int64_t B, int64_t T, int64_t C, int64_t vb, int64_t V) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < B * T; ++n) {
    const int64_t row = static_cast<int64_t>(tokens[n]) - vb;
    const float* e = row >= 0 && row < V ? wte + row * C : nullptr;
    const float* p = wpe ? wpe + (n % T) * C : nullptr;
    float* o = out + n * C;
    for (int64_t c = 0; c < C; ++c) o[c] = (e ? e[c] : 0.0f) + (p ? p[c] : 0.0f);
  }
}

void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                        int64_t B, int64_t T, int64_t C, int64_t vb, int64_t V) {
  // Serial over tokens: rows of dwte may repeat, and a fixed order keeps the sum deterministic.
  if (dwte) {
    for (int64_t n = 0; n < B * T; ++n) {
      const int64_t row = static_cast<int64_t>(tokens[n]) - vb;
      if (row < 0 || row >= V) continue;
      float* d = dwte + row * C;
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

namespace {
// Rotary embedding of rows x[g, h, t, :] at position pos(g, t): rope (pos = t) and rope_at
// (explicit positions, UoE slots) are this one loop, so they agree bit for bit.
template <class Pos>
void rope_rows(float* x, int64_t G, int64_t H, int64_t T, int64_t D, float theta, int sign,
               Pos pos) {
  SPARTA_CHECK(D % 2 == 0 && D <= 1024, "rope needs an even head dim <= 1024, got {}", D);
  const int64_t half = D / 2;
#pragma omp parallel for schedule(static)
  for (int64_t gt = 0; gt < G * T; ++gt) {
    const int64_t g = gt / T, t = gt % T;
    float cs[512], sn[512];
    for (int64_t i = 0; i < half; ++i) {
      // Angles in double: at t ~ 4096 an fp32 angle would already be off by ~1e-4 rad.
      const double ang = static_cast<double>(pos(g, t)) *
                         std::pow(static_cast<double>(theta),
                                  -2.0 * static_cast<double>(i) / static_cast<double>(D));
      cs[i] = static_cast<float>(std::cos(ang));
      sn[i] = static_cast<float>(sign) * static_cast<float>(std::sin(ang));
    }
    for (int64_t h = 0; h < H; ++h) {
      float* r = x + ((g * H + h) * T + t) * D;
      for (int64_t i = 0; i < half; ++i) {
        const float x0 = r[2 * i], x1 = r[2 * i + 1];
        r[2 * i] = x0 * cs[i] - x1 * sn[i];
        r[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
      }
    }
  }
}
}  // namespace

void rope(float* x, int64_t BH, int64_t T, int64_t D, float theta, int sign) {
  rope_rows(x, 1, BH, T, D, theta, sign, [](int64_t, int64_t t) { return t; });
}

void rope_at(float* x, const int32_t* pos, int64_t G, int64_t H, int64_t T, int64_t D, float theta,
             int sign) {
  rope_rows(x, G, H, T, D, theta, sign,
            [pos, T](int64_t g, int64_t t) { return static_cast<int64_t>(pos[g * T + t]); });
}

}  // namespace sparta::kernels::cpu
