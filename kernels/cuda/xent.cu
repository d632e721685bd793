#include <cfloat>

#include "kernels/cuda/common.cuh"

namespace sparta::kernels::cuda {

namespace {
constexpr int kThreads = 256;

__device__ float block_reduce(float x, bool is_max) {
  __shared__ float sh[kThreads / 32];
  x = is_max ? warp_max(x) : warp_sum(x);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) sh[warp] = x;
  __syncthreads();
  if (warp == 0) {
    x = lane < kThreads / 32 ? sh[lane] : (is_max ? -FLT_MAX : 0.0f);
    x = is_max ? warp_max(x) : warp_sum(x);
    if (lane == 0) sh[0] = x;
  }
  __syncthreads();
  const float r = sh[0];
  __syncthreads();
  return r;
}

// One block per row: loss, and (backward) dloss * (softmax - onehot) written over the logits.
// Vocab-parallel (kernels/backend_ops.inc): this part holds vocabulary [vb, vb + V); row_lse
// replaces the part's own log-sum-exp; target_logit makes losses the part's log-sum-exp.
__global__ void xent_rows_k(float* losses, float* logits, const int32_t* targets, int64_t V,
                            float dloss, bool backward, int64_t vb, const float* row_lse,
                            float* target_logit) {
  const int64_t row = blockIdx.x;
  float* z = logits + row * V;
  const int32_t tgt = targets[row];
  if (tgt < 0) {
    if (threadIdx.x == 0) {
      if (!row_lse) losses[row] = 0.0f;
      if (target_logit) target_logit[row] = 0.0f;
    }
    if (backward)
      for (int64_t j = threadIdx.x; j < V; j += kThreads) z[j] = 0.0f;
    return;
  }
  const int64_t t = static_cast<int64_t>(tgt) - vb;
  const bool here = t >= 0 && t < V;
  float lse;
  if (row_lse) {
    lse = row_lse[row];
  } else {
    float mx = -FLT_MAX;
    for (int64_t j = threadIdx.x; j < V; j += kThreads) mx = fmaxf(mx, z[j]);
    mx = block_reduce(mx, true);
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < V; j += kThreads) s += expf(z[j] - mx);
    s = block_reduce(s, false);
    lse = mx + logf(s);
    const float zt = here ? z[t] : 0.0f;
    __syncthreads();
    if (threadIdx.x == 0) {
      if (target_logit) {
        losses[row] = lse;
        target_logit[row] = zt;
      } else {
        losses[row] = lse - zt;
      }
    }
  }
  if (backward) {
    for (int64_t j = threadIdx.x; j < V; j += kThreads)
      z[j] = dloss * (expf(z[j] - lse) - (here && j == t ? 1.0f : 0.0f));
  }
}
}  // namespace

void lm_head_xent(float* losses, float* logits_ws, const float* hidden, const float* wout,
                  const int32_t* targets, int64_t N, int64_t C, int64_t V, int64_t R, float dloss,
                  float* dhidden, float* dwout, int64_t vb, const float* row_lse,
                  float* target_logit) {
  const bool backward = dhidden || dwout;
  for (int64_t r0 = 0; r0 < N; r0 += R) {
    const int64_t nr = N - r0 < R ? N - r0 : R;
    const float* h = hidden + r0 * C;
    gemm(false, true, nr, V, C, 1.0f, h, C, wout, C, 0.0f, logits_ws, V);
    xent_rows_k<<<static_cast<unsigned>(nr), kThreads>>>(
        losses + r0, logits_ws, targets + r0, V, dloss, backward, vb,
        row_lse ? row_lse + r0 : nullptr, target_logit ? target_logit + r0 : nullptr);
    SPARTA_CUDA_LAUNCHED();
    if (dhidden)
      gemm(false, false, nr, C, V, 1.0f, logits_ws, V, wout, C, 1.0f, dhidden + r0 * C, C);
    if (dwout) gemm(true, false, V, C, nr, 1.0f, logits_ws, V, h, C, 1.0f, dwout, C);
  }
}

}  // namespace sparta::kernels::cuda
