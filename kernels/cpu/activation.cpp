#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace sparta::kernels::cpu {

namespace {
constexpr float kGeluK = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluC = 0.044715f;
inline float sigmoid(float x) {
  return 1.0f / (1.0f + std::exp(-x));
}
}  // namespace

void gelu_forward(float* out, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float x = inp[i];
    out[i] = 0.5f * x * (1.0f + std::tanh(kGeluK * (x + kGeluC * x * x * x)));
  }
}

void gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float x = inp[i];
    const float t = std::tanh(kGeluK * (x + kGeluC * x * x * x));
    const float dt = kGeluK * (1.0f + 3.0f * kGeluC * x * x) * (1.0f - t * t);
    dinp[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * x * dt);
  }
}

void swiglu_forward(float* out, const float* inp, int64_t N, int64_t F) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* g = inp + n * 2 * F;
    const float* u = g + F;
    float* o = out + n * F;
    for (int64_t f = 0; f < F; ++f) o[f] = g[f] * sigmoid(g[f]) * u[f];
  }
}

void swiglu_backward(float* dinp, const float* dout, const float* inp, int64_t N, int64_t F) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* g = inp + n * 2 * F;
    const float* u = g + F;
    const float* dy = dout + n * F;
    float* dg = dinp + n * 2 * F;
    float* du = dg + F;
    for (int64_t f = 0; f < F; ++f) {
      const float s = sigmoid(g[f]);
      dg[f] += dy[f] * u[f] * s * (1.0f + g[f] * (1.0f - s));
      du[f] += dy[f] * g[f] * s;
    }
  }
}

}  // namespace sparta::kernels::cpu
