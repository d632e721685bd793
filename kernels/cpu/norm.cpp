#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace sparta::kernels::cpu {

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gamma,
                       const float* beta, int64_t N, int64_t C, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    double s = 0.0;
    for (int64_t c = 0; c < C; ++c) s += x[c];
    const double mu = s / static_cast<double>(C);
    double ss = 0.0;
    for (int64_t c = 0; c < C; ++c) ss += (x[c] - mu) * (x[c] - mu);
    const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(C) + eps));
    const float m = static_cast<float>(mu);
    float* o = out + n * C;
    for (int64_t c = 0; c < C; ++c) o[c] = (x[c] - m) * r * gamma[c] + beta[c];
    mean[n] = m;
    rstd[n] = r;
  }
}

void layernorm_backward(float* dinp, float* dgamma, float* dbeta, const float* dout,
                        const float* inp, const float* gamma, const float* mean, const float* rstd,
                        int64_t N, int64_t C) {
  if (dinp) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* x = inp + n * C;
      const float* dy = dout + n * C;
      const float m = mean[n], r = rstd[n];
      double sum_g = 0.0, sum_gx = 0.0;  // mean of (gamma*dy) and of (gamma*dy*xhat)
      for (int64_t c = 0; c < C; ++c) {
        const float g = gamma[c] * dy[c];
        sum_g += g;
        sum_gx += g * (x[c] - m) * r;
      }
      const float mg = static_cast<float>(sum_g / static_cast<double>(C));
      const float mgx = static_cast<float>(sum_gx / static_cast<double>(C));
      float* dx = dinp + n * C;
      for (int64_t c = 0; c < C; ++c) {
        const float xhat = (x[c] - m) * r;
        dx[c] += r * (gamma[c] * dy[c] - mg - xhat * mgx);
      }
    }
  }
  if (dgamma || dbeta) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      double sg = 0.0, sb = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const float dy = dout[n * C + c];
        sg += dy * (inp[n * C + c] - mean[n]) * rstd[n];
        sb += dy;
      }
      if (dgamma) dgamma[c] += static_cast<float>(sg);
      if (dbeta) dbeta[c] += static_cast<float>(sb);
    }
  }
}

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* gamma, int64_t N,
                     int64_t C, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    double ss = 0.0;
    for (int64_t c = 0; c < C; ++c) ss += static_cast<double>(x[c]) * x[c];
    const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(C) + eps));
    float* o = out + n * C;
    for (int64_t c = 0; c < C; ++c) o[c] = x[c] * r * gamma[c];
    rstd[n] = r;
  }
}

void rmsnorm_backward(float* dinp, float* dgamma, const float* dout, const float* inp,
                      const float* gamma, const float* rstd, int64_t N, int64_t C) {
  if (dinp) {
    // dx = (gamma*dy)/r - x * sum_j(gamma_j dy_j x_j) / (C r^3), with 1/r = rstd.
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* x = inp + n * C;
      const float* dy = dout + n * C;
      const float r = rstd[n];
      double dot = 0.0;
      for (int64_t c = 0; c < C; ++c) dot += static_cast<double>(gamma[c]) * dy[c] * x[c];
      const float k = static_cast<float>(dot / static_cast<double>(C)) * r * r * r;
      float* dx = dinp + n * C;
      for (int64_t c = 0; c < C; ++c) dx[c] += gamma[c] * dy[c] * r - x[c] * k;
    }
  }
  if (dgamma) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      double s = 0.0;
      for (int64_t n = 0; n < N; ++n) s += dout[n * C + c] * inp[n * C + c] * rstd[n];
      dgamma[c] += static_cast<float>(s);
    }
  }
}

}  // namespace sparta::kernels::cpu
