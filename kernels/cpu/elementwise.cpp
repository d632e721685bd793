#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/rng.h"

namespace sparta::kernels::cpu {

void add(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void accumulate(float* dst, const float* src, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

void scale(float* x, float s, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

double sum_squares(const float* x, int64_t n) {
  // Fixed chunking (not the thread count) decides the summation order, so the result is the
  // same on any number of threads: chunks are summed in parallel, chunk totals in order.
  constexpr int64_t kChunk = 1 << 14;
  const int64_t nchunks = (n + kChunk - 1) / kChunk;
  double total = 0.0;
  double partial[64];
  for (int64_t base = 0; base < nchunks; base += 64) {
    const int64_t cnt = std::min<int64_t>(64, nchunks - base);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < cnt; ++c) {
      const int64_t lo = (base + c) * kChunk, hi = std::min(n, lo + kChunk);
      double s = 0.0;
      for (int64_t i = lo; i < hi; ++i) s += static_cast<double>(x[i]) * x[i];
      partial[c] = s;
    }
    for (int64_t c = 0; c < cnt; ++c) total += partial[c];
  }
  return total;
}

void add_noise(float* x, int64_t n, float sigma, uint64_t seed, uint32_t param_id, uint32_t step,
               int64_t offset) {
  // One Philox block serves the four consecutive global indices 4j..4j+3.
  const int64_t first = offset / 4, last = (offset + n + 3) / 4;
#pragma omp parallel for schedule(static)
  for (int64_t j = first; j < last; ++j) {
    double b[4];
    noise_block(seed, param_id, step, static_cast<uint64_t>(j), b);
    for (int64_t q = 0; q < 4; ++q) {
      const int64_t i = 4 * j + q - offset;
      if (i >= 0 && i < n) x[i] += sigma * static_cast<float>(b[q]);
    }
  }
}

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWParams& p) {
  const float bc1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(p.beta1), p.step));
  const float bc2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(p.beta2), p.step));
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] * p.grad_scale;
    const float mi = p.beta1 * m[i] + (1.0f - p.beta1) * g;
    const float vi = p.beta2 * v[i] + (1.0f - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / bc1, vhat = vi / bc2;
    param[i] -= p.lr * (mhat / (std::sqrt(vhat) + p.eps) + p.weight_decay * param[i]);
  }
}

}  // namespace sparta::kernels::cpu
