#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace sparta::kernels::cpu {

void lm_head_xent(float* losses, float* logits_ws, const float* hidden, const float* wout,
                  const int32_t* targets, int64_t N, int64_t C, int64_t V, int64_t R, float dloss,
                  float* dhidden, float* dwout, int64_t vb, const float* row_lse,
                  float* target_logit) {
  const bool backward = dhidden || dwout;
  for (int64_t r0 = 0; r0 < N; r0 += R) {
    const int64_t nr = std::min(R, N - r0);
    const float* h = hidden + r0 * C;
    gemm(false, true, nr, V, C, 1.0f, h, C, wout, C, 0.0f, logits_ws, V);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nr; ++i) {
      float* z = logits_ws + i * V;
      const int32_t tgt = targets[r0 + i];
      if (tgt < 0) {  // ignored position: no loss, no gradient
        if (!row_lse) losses[r0 + i] = 0.0f;
        if (target_logit) target_logit[r0 + i] = 0.0f;
        if (backward) std::fill(z, z + V, 0.0f);
        continue;
      }
      const int64_t t = static_cast<int64_t>(tgt) - vb;  // in this part of the vocabulary?
      const bool here = t >= 0 && t < V;
      double lse = 0;
      if (row_lse) {
        lse = row_lse[r0 + i];
      } else {
        float mx = z[0];
        for (int64_t j = 1; j < V; ++j) mx = std::max(mx, z[j]);
        double sum = 0.0;
        for (int64_t j = 0; j < V; ++j) sum += std::exp(static_cast<double>(z[j] - mx));
        lse = mx + std::log(sum);
        if (target_logit) {
          losses[r0 + i] = static_cast<float>(lse);
          target_logit[r0 + i] = here ? z[t] : 0.0f;
        } else {
          losses[r0 + i] = static_cast<float>(lse - z[t]);
        }
      }
      if (backward) {  // dlogits = dloss * (softmax - onehot), written over the logits
        for (int64_t j = 0; j < V; ++j)
          z[j] = dloss * static_cast<float>(std::exp(static_cast<double>(z[j]) - lse));
        if (here) z[t] -= dloss;
      }
    }
    if (dhidden)
      gemm(false, false, nr, C, V, 1.0f, logits_ws, V, wout, C, 1.0f, dhidden + r0 * C, C);
    if (dwout) gemm(true, false, V, C, nr, 1.0f, logits_ws, V, h, C, 1.0f, dwout, C);
  }
}

}  // namespace sparta::kernels::cpu
