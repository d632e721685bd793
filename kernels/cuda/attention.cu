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
                           int64_t Tq, int64_t Tk, int64_t D, AttnMask msk, float sc) {
  const int64_t i = blockIdx.x * int64_t{kThreads / 32} + threadIdx.x / 32;
  const int64_t bh = blockIdx.y;
  const int lane = threadIdx.x % 32;
  if (i >= Tq) return;
  const int64_t qbase = bh * Tq * D, kbase = bh * Tk * D;
  float qr[kMaxPerLane], acc[kMaxPerLane];
  int r = 0;
  for (int64_t d = lane; d < D; d += 32, ++r) {
    qr[r] = q[qbase + i * D + d];
    acc[r] = 0.0f;
  }
  float m = -FLT_MAX, l = 0.0f;
  const bool row = i >= msk.q_begin && i < msk.q_end;
  const int64_t jend = row ? min(msk.k_end, i + msk.diag + 1) : msk.k_begin;
  for (int64_t j = msk.k_begin; j < jend; ++j) {
    const float s = warp_dot(qr, k + kbase + j * D, D, lane) * sc;
    const float mn = fmaxf(m, s);
    const float corr = __expf(m - mn), p = __expf(s - mn);
    l = l * corr + p;
    r = 0;
    for (int64_t d = lane; d < D; d += 32, ++r) acc[r] = acc[r] * corr + p * v[kbase + j * D + d];
    m = mn;
  }
  const bool empty = l == 0.0f;  // no visible key: the merge identity (0, -inf)
  r = 0;
  for (int64_t d = lane; d < D; d += 32, ++r) o[qbase + i * D + d] = empty ? 0.0f : acc[r] / l;
  if (lane == 0) lse[bh * Tq + i] = empty ? -INFINITY : m + logf(l);
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
                          const float* v, const float* lse, const float* delta, int64_t Tq,
                          int64_t Tk, int64_t D, AttnMask msk, float sc) {
  const int64_t i = blockIdx.x * int64_t{kThreads / 32} + threadIdx.x / 32;
  const int64_t bh = blockIdx.y;
  const int lane = threadIdx.x % 32;
  if (i < msk.q_begin || i >= msk.q_end || i >= Tq) return;
  const int64_t qbase = bh * Tq * D, kbase = bh * Tk * D;
  float qr[kMaxPerLane], dor[kMaxPerLane], acc[kMaxPerLane];
  int r = 0;
  for (int64_t d = lane; d < D; d += 32, ++r) {
    qr[r] = q[qbase + i * D + d];
    dor[r] = dout[qbase + i * D + d];
    acc[r] = 0.0f;
  }
  const float L = lse[bh * Tq + i], dl = delta[bh * Tq + i];
  const int64_t jend = min(msk.k_end, i + msk.diag + 1);
  for (int64_t j = msk.k_begin; j < jend; ++j) {
    const float p = __expf(warp_dot(qr, k + kbase + j * D, D, lane) * sc - L);
    const float dp = warp_dot(dor, v + kbase + j * D, D, lane);
    const float ds = p * (dp - dl) * sc;
    r = 0;
    for (int64_t d = lane; d < D; d += 32, ++r) acc[r] += ds * k[kbase + j * D + d];
  }
  r = 0;
  for (int64_t d = lane; d < D; d += 32, ++r) dq[qbase + i * D + d] += acc[r];
}

__global__ void attn_dkdv_k(float* dk, float* dv, const float* dout, const float* q, const float* k,
                            const float* v, const float* lse, const float* delta, int64_t Tq,
                            int64_t Tk, int64_t D, AttnMask msk, float sc) {
  const int64_t j = blockIdx.x * int64_t{kThreads / 32} + threadIdx.x / 32;
  const int64_t bh = blockIdx.y;
  const int lane = threadIdx.x % 32;
  if (j < msk.k_begin || j >= msk.k_end || j >= Tk) return;
  const int64_t qbase = bh * Tq * D, kbase = bh * Tk * D;
  float kr[kMaxPerLane], vr[kMaxPerLane], dka[kMaxPerLane], dva[kMaxPerLane];
  int r = 0;
  for (int64_t d = lane; d < D; d += 32, ++r) {
    kr[r] = k[kbase + j * D + d];
    vr[r] = v[kbase + j * D + d];
    dka[r] = 0.0f;
    dva[r] = 0.0f;
  }
  for (int64_t i = max(msk.q_begin, j - msk.diag); i < msk.q_end; ++i) {  // queries seeing j
    const float p = __expf(warp_dot(kr, q + qbase + i * D, D, lane) * sc - lse[bh * Tq + i]);
    const float dp = warp_dot(vr, dout + qbase + i * D, D, lane);
    const float ds = p * (dp - delta[bh * Tq + i]) * sc;
    r = 0;
    for (int64_t d = lane; d < D; d += 32, ++r) {
      dva[r] += p * dout[qbase + i * D + d];
      dka[r] += ds * q[qbase + i * D + d];
    }
  }
  r = 0;
  for (int64_t d = lane; d < D; d += 32, ++r) {
    dk[kbase + j * D + d] += dka[r];
    dv[kbase + j * D + d] += dva[r];
  }
}

// One warp per (bh, row): the row's weights are computed once, lane 0 writes its lse after the
// whole warp has read it.
__global__ void attn_merge_k(float* o, float* lse, const float* o_part, const float* lse_part,
                             int64_t T, int64_t D) {
  const int64_t i = blockIdx.x * int64_t{kThreads / 32} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (i >= T) return;
  const int64_t r = blockIdx.y * T + i;
  const float a = lse[r], b = lse_part[r];
  if (b == -INFINITY) return;  // nothing new (also two empty rows: stays 0, -inf)
  float wa = 0.0f, wb = 1.0f, n = b;
  if (a != -INFINITY) {
    n = fmaxf(a, b) + log1pf(expf(-fabsf(a - b)));
    wa = expf(a - n);
    wb = expf(b - n);
  }
  for (int64_t d = lane; d < D; d += 32) o[r * D + d] = wa * o[r * D + d] + wb * o_part[r * D + d];
  __syncwarp();
  if (lane == 0) lse[r] = n;
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
                       int64_t BH, int64_t Tq, int64_t Tk, int64_t D, const AttnMask& m) {
  if (D > 32 * kMaxPerLane) fail(__FILE__, __LINE__, "attention_forward", "head dim > 256");
  const float sc = 1.0f / sqrtf(static_cast<float>(D));
  attn_fwd_k<<<row_grid(BH, Tq), kThreads>>>(o, lse, q, k, v, Tq, Tk, D, m, sc);
  SPARTA_CUDA_LAUNCHED();
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* o, const float* lse,
                        int64_t BH, int64_t Tq, int64_t Tk, int64_t D, const AttnMask& m) {
  if (D > 32 * kMaxPerLane) fail(__FILE__, __LINE__, "attention_backward", "head dim > 256");
  const float sc = 1.0f / sqrtf(static_cast<float>(D));
  auto* delta = static_cast<float*>(scratch(static_cast<size_t>(BH * Tq) * sizeof(float)));
  attn_delta_k<<<row_grid(BH, Tq), kThreads>>>(delta, dout, o, Tq, D);
  SPARTA_CUDA_LAUNCHED();
  attn_dq_k<<<row_grid(BH, Tq), kThreads>>>(dq, dout, q, k, v, lse, delta, Tq, Tk, D, m, sc);
  SPARTA_CUDA_LAUNCHED();
  attn_dkdv_k<<<row_grid(BH, Tk), kThreads>>>(dk, dv, dout, q, k, v, lse, delta, Tq, Tk, D, m, sc);
  SPARTA_CUDA_LAUNCHED();
}

void attention_merge(float* o, float* lse, const float* o_part, const float* lse_part, int64_t BH,
                     int64_t T, int64_t D) {
  attn_merge_k<<<row_grid(BH, T), kThreads>>>(o, lse, o_part, lse_part, T, D);
  SPARTA_CUDA_LAUNCHED();
}

}  // namespace sparta::kernels::cuda
