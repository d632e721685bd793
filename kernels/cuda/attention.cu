// Attention twin: one warp per query row (forward, dQ) or key row (dK, dV), online softmax over
// the other side, probabilities recomputed from the saved log-sum-exp in the backward. No atomics:
// each output row is owned by one warp, so results are deterministic. Correctness-first; a tiled
// tensor-core kernel replaces it behind the same signature once it is measured.
#include <cfloat>

#include "kernels/cuda/common.cuh"

namespace sparta::kernels::cuda {

namespace {
constexpr int kThreads = 256;
constexpr int kMaxPerLane = 8;  // D <= 256

__global__ void split_k(float* q, float* k, float* v, const float* qkv, int64_t B, int64_t T,
                        int64_t H, int64_t D) {
  const int64_t C = H * D, n = B * H * T * D;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t d = i % D, t = (i / D) % T, h = (i / (D * T)) % H, b = i / (D * T * H);
    const float* src = qkv + (b * T + t) * 3 * C + h * D + d;
    q[i] = src[0];
    k[i] = src[C];
    v[i] = src[2 * C];
  }
}
__global__ void split_bwd_k(float* dqkv, const float* dq, const float* dk, const float* dv,
                            int64_t B, int64_t T, int64_t H, int64_t D) {
  const int64_t C = H * D, n = B * H * T * D;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t d = i % D, t = (i / D) % T, h = (i / (D * T)) % H, b = i / (D * T * H);
    float* dst = dqkv + (b * T + t) * 3 * C + h * D + d;
    dst[0] += dq[i];
    dst[C] += dk[i];
    dst[2 * C] += dv[i];
  }
}
__global__ void merge_k(float* out, const float* o, int64_t B, int64_t T, int64_t H, int64_t D,
                        bool backward) {
  const int64_t C = H * D, n = B * H * T * D;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t d = i % D, t = (i / D) % T, h = (i / (D * T)) % H, b = i / (D * T * H);
    const int64_t j = (b * T + t) * C + h * D + d;
    if (backward)
      out[i] += o[j];  // here out = d(o) [B,H,T,D], o = d(out) [B,T,C]
    else
      out[j] = o[i];
  }
}

__device__ inline float warp_dot(const float* a_lane, const float* b, int64_t D, int lane) {
  float s = 0.0f;
  int r = 0;
  for (int64_t d = lane; d < D; d += 32, ++r) s += a_lane[r] * b[d];
  return warp_sum(s);
}

__global__ void attn_fwd_k(float* o, float* lse, const float* q, const float* k, const float* v,
                           int64_t T, int64_t D, bool causal, float sc) {
  const int64_t i = blockIdx.x * int64_t{kThreads / 32} + threadIdx.x / 32;
  const int64_t bh = blockIdx.y;
  const int lane = threadIdx.x % 32;
  if (i >= T) return;
  const int64_t base = bh * T * D;
  float qr[kMaxPerLane], acc[kMaxPerLane];
  int r = 0;
  for (int64_t d = lane; d < D; d += 32, ++r) {
    qr[r] = q[base + i * D + d];
    acc[r] = 0.0f;
  }
  float m = -FLT_MAX, l = 0.0f;
  const int64_t jend = causal ? i + 1 : T;
  for (int64_t j = 0; j < jend; ++j) {
    const float s = warp_dot(qr, k + base + j * D, D, lane) * sc;
    const float mn = fmaxf(m, s);
    const float corr = __expf(m - mn), p = __expf(s - mn);
    l = l * corr + p;
    r = 0;
    for (int64_t d = lane; d < D; d += 32, ++r) acc[r] = acc[r] * corr + p * v[base + j * D + d];
    m = mn;
  }
  r = 0;
  for (int64_t d = lane; d < D; d += 32, ++r) o[base + i * D + d] = acc[r] / l;
  if (lane == 0) lse[bh * T + i] = m + logf(l);
}

__global__ void attn_delta_k(float* delta, const float* dout, const float* o, int64_t T,
                             int64_t D) {
  const int64_t i = blockIdx.x * int64_t{kThreads / 32} + threadIdx.x / 32;
  const int64_t bh = blockIdx.y;
  const int lane = threadIdx.x % 32;
  if (i >= T) return;
  const int64_t row = (bh * T + i) * D;
  float s = 0.0f;
  for (int64_t d = lane; d < D; d += 32) s += dout[row + d] * o[row + d];
  s = warp_sum(s);
  if (lane == 0) delta[bh * T + i] = s;
}

__global__ void attn_dq_k(float* dq, const float* dout, const float* q, const float* k,
                          const float* v, const float* lse, const float* delta, int64_t T,
                          int64_t D, bool causal, float sc) {
  const int64_t i = blockIdx.x * int64_t{kThreads / 32} + threadIdx.x / 32;
  const int64_t bh = blockIdx.y;
  const int lane = threadIdx.x % 32;
  if (i >= T) return;
  const int64_t base = bh * T * D;
  float qr[kMaxPerLane], dor[kMaxPerLane], acc[kMaxPerLane];
  int r = 0;
  for (int64_t d = lane; d < D; d += 32, ++r) {
    qr[r] = q[base + i * D + d];
    dor[r] = dout[base + i * D + d];
    acc[r] = 0.0f;
  }
  const float L = lse[bh * T + i], dl = delta[bh * T + i];
  const int64_t jend = causal ? i + 1 : T;
  for (int64_t j = 0; j < jend; ++j) {
    const float p = __expf(warp_dot(qr, k + base + j * D, D, lane) * sc - L);
    const float dp = warp_dot(dor, v + base + j * D, D, lane);
    const float ds = p * (dp - dl) * sc;
    r = 0;
    for (int64_t d = lane; d < D; d += 32, ++r) acc[r] += ds * k[base + j * D + d];
  }
  r = 0;
  for (int64_t d = lane; d < D; d += 32, ++r) dq[base + i * D + d] += acc[r];
}

__global__ void attn_dkdv_k(float* dk, float* dv, const float* dout, const float* q, const float* k,
                            const float* v, const float* lse, const float* delta, int64_t T,
                            int64_t D, bool causal, float sc) {
  const int64_t j = blockIdx.x * int64_t{kThreads / 32} + threadIdx.x / 32;
  const int64_t bh = blockIdx.y;
  const int lane = threadIdx.x % 32;
  if (j >= T) return;
  const int64_t base = bh * T * D;
  float kr[kMaxPerLane], vr[kMaxPerLane], dka[kMaxPerLane], dva[kMaxPerLane];
  int r = 0;
  for (int64_t d = lane; d < D; d += 32, ++r) {
    kr[r] = k[base + j * D + d];
    vr[r] = v[base + j * D + d];
    dka[r] = 0.0f;
    dva[r] = 0.0f;
  }
  for (int64_t i = causal ? j : 0; i < T; ++i) {
    const float p = __expf(warp_dot(kr, q + base + i * D, D, lane) * sc - lse[bh * T + i]);
    const float dp = warp_dot(vr, dout + base + i * D, D, lane);
    const float ds = p * (dp - delta[bh * T + i]) * sc;
    r = 0;
    for (int64_t d = lane; d < D; d += 32, ++r) {
      dva[r] += p * dout[base + i * D + d];
      dka[r] += ds * q[base + i * D + d];
    }
  }
  r = 0;
  for (int64_t d = lane; d < D; d += 32, ++r) {
    dk[base + j * D + d] += dka[r];
    dv[base + j * D + d] += dva[r];
  }
}

dim3 row_grid(int64_t BH, int64_t T) {
  return dim3(static_cast<unsigned>((T + kThreads / 32 - 1) / (kThreads / 32)),
              static_cast<unsigned>(BH));
}
}  // namespace

void split_heads(float* q, float* k, float* v, const float* qkv, int64_t B, int64_t T, int64_t H,
                 int64_t D) {
  split_k<<<blocks_for(B * T * H * D, kThreads), kThreads>>>(q, k, v, qkv, B, T, H, D);
  SPARTA_CUDA_LAUNCHED();
}
void split_heads_backward(float* dqkv, const float* dq, const float* dk, const float* dv, int64_t B,
                          int64_t T, int64_t H, int64_t D) {
  split_bwd_k<<<blocks_for(B * T * H * D, kThreads), kThreads>>>(dqkv, dq, dk, dv, B, T, H, D);
  SPARTA_CUDA_LAUNCHED();
}
void merge_heads(float* out, const float* o, int64_t B, int64_t T, int64_t H, int64_t D) {
  merge_k<<<blocks_for(B * T * H * D, kThreads), kThreads>>>(out, o, B, T, H, D, false);
  SPARTA_CUDA_LAUNCHED();
}
void merge_heads_backward(float* dmo, const float* dout, int64_t B, int64_t T, int64_t H,
                          int64_t D) {
  merge_k<<<blocks_for(B * T * H * D, kThreads), kThreads>>>(dmo, dout, B, T, H, D, true);
  SPARTA_CUDA_LAUNCHED();
}

void attention_forward(float* o, float* lse, const float* q, const float* k, const float* v,
                       int64_t BH, int64_t T, int64_t D, bool causal) {
  if (D > 32 * kMaxPerLane) fail(__FILE__, __LINE__, "attention_forward", "head dim > 256");
  const float sc = 1.0f / sqrtf(static_cast<float>(D));
  attn_fwd_k<<<row_grid(BH, T), kThreads>>>(o, lse, q, k, v, T, D, causal, sc);
  SPARTA_CUDA_LAUNCHED();
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* o, const float* lse,
                        int64_t BH, int64_t T, int64_t D, bool causal) {
  if (D > 32 * kMaxPerLane) fail(__FILE__, __LINE__, "attention_backward", "head dim > 256");
  const float sc = 1.0f / sqrtf(static_cast<float>(D));
  auto* delta = static_cast<float*>(scratch(static_cast<size_t>(BH * T) * sizeof(float)));
  attn_delta_k<<<row_grid(BH, T), kThreads>>>(delta, dout, o, T, D);
  SPARTA_CUDA_LAUNCHED();
  attn_dq_k<<<row_grid(BH, T), kThreads>>>(dq, dout, q, k, v, lse, delta, T, D, causal, sc);
  SPARTA_CUDA_LAUNCHED();
  attn_dkdv_k<<<row_grid(BH, T), kThreads>>>(dk, dv, dout, q, k, v, lse, delta, T, D, causal, sc);
  SPARTA_CUDA_LAUNCHED();
}

}  // namespace sparta::kernels::cuda
