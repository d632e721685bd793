#include "kernels/cuda/common.cuh"

namespace sparta::kernels::cuda {
#include "kernels/uoe_backend.inc"

namespace {
constexpr int kThreads = 256;

__global__ void emb_fwd_k(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                          int64_t BT, int64_t T, int64_t C, int64_t vb, int64_t V) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < BT * C;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t n = i / C, c = i % C, row = static_cast<int64_t>(tokens[n]) - vb;
    float x = row >= 0 && row < V ? wte[row * C + c] : 0.0f;
    if (wpe) x += wpe[(n % T) * C + c];
    out[i] = x;
  }
}

// dwte rows may repeat within a batch: atomics (order-dependent in the last bit; the CPU path is
// the deterministic reference).
__global__ void emb_bwd_wte_k(float* dwte, const float* dout, const int32_t* tokens, int64_t BT,
                              int64_t C, int64_t vb, int64_t V) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < BT * C;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t n = i / C, c = i % C, row = static_cast<int64_t>(tokens[n]) - vb;
    if (row >= 0 && row < V) atomicAdd(dwte + row * C + c, dout[i]);
  }
}

__global__ void emb_bwd_wpe_k(float* dwpe, const float* dout, int64_t B, int64_t T, int64_t C) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < T * C;
       i += int64_t{gridDim.x} * blockDim.x) {
    float s = 0.0f;
    for (int64_t b = 0; b < B; ++b) s += dout[b * T * C + i];
    dwpe[i] += s;
  }
}

// Rotary embedding of rows x[g, h, t, :] at position pos[g * T + t], or t when pos is null:
// rope and rope_at are this one kernel, with the CPU's double-precision angle.
__global__ void rope_k(float* x, const int32_t* pos, int64_t G, int64_t H, int64_t T, int64_t D,
                       float theta, int sign) {
  const int64_t half = D / 2;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < G * H * T * half;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t p = i % half, t = (i / half) % T, g = i / (half * T * H);
    const double at = pos ? static_cast<double>(pos[g * T + t]) : static_cast<double>(t);
    const double ang = at * pow(static_cast<double>(theta),
                                -2.0 * static_cast<double>(p) / static_cast<double>(D));
    double sd, cd;
    sincos(ang, &sd, &cd);
    const float c = static_cast<float>(cd), s = static_cast<float>(sign) * static_cast<float>(sd);
    float* r = x + (i / half) * D + 2 * p;
    const float x0 = r[0], x1 = r[1];
    r[0] = x0 * c - x1 * s;
    r[1] = x0 * s + x1 * c;
  }
}
}  // namespace

void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                       int64_t B, int64_t T, int64_t C, int64_t vb, int64_t V) {
  emb_fwd_k<<<blocks_for(B * T * C, kThreads), kThreads>>>(out, tokens, wte, wpe, B * T, T, C, vb,
                                                           V);
  SPARTA_CUDA_LAUNCHED();
}

void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                        int64_t B, int64_t T, int64_t C, int64_t vb, int64_t V) {
  if (dwte) {
    emb_bwd_wte_k<<<blocks_for(B * T * C, kThreads), kThreads>>>(dwte, dout, tokens, B * T, C, vb,
                                                                 V);
    SPARTA_CUDA_LAUNCHED();
  }
  if (dwpe) {
    emb_bwd_wpe_k<<<blocks_for(T * C, kThreads), kThreads>>>(dwpe, dout, B, T, C);
    SPARTA_CUDA_LAUNCHED();
  }
}

void rope(float* x, int64_t BH, int64_t T, int64_t D, float theta, int sign) {
  rope_k<<<blocks_for(BH * T * (D / 2), kThreads), kThreads>>>(x, nullptr, 1, BH, T, D, theta,
                                                               sign);
  SPARTA_CUDA_LAUNCHED();
}

void rope_at(float* x, const int32_t* pos, int64_t G, int64_t H, int64_t T, int64_t D, float theta,
             int sign) {
  rope_k<<<blocks_for(G * H * T * (D / 2), kThreads), kThreads>>>(x, pos, G, H, T, D, theta, sign);
  SPARTA_CUDA_LAUNCHED();
}

}  // namespace sparta::kernels::cuda
