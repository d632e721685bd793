// One warp per row for the row-wise parts; one thread per column for gamma/beta gradients
// (a fixed summation order over rows: deterministic).
#include "kernels/cuda/common.cuh"

namespace sparta::kernels::cuda {

namespace {
constexpr int kWarpsPerBlock = 8;

__global__ void ln_fwd_k(float* out, float* mean, float* rstd, const float* inp, const float* gamma,
                         const float* beta, int64_t N, int64_t C, float eps) {
  const int64_t n = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (n >= N) return;
  const float* x = inp + n * C;
  float s = 0.0f;
  for (int64_t c = lane; c < C; c += 32) s += x[c];
  const float mu = warp_sum(s) / static_cast<float>(C);
  float ss = 0.0f;
  for (int64_t c = lane; c < C; c += 32) ss += (x[c] - mu) * (x[c] - mu);
  const float r = rsqrtf(warp_sum(ss) / static_cast<float>(C) + eps);
  for (int64_t c = lane; c < C; c += 32) out[n * C + c] = (x[c] - mu) * r * gamma[c] + beta[c];
  if (lane == 0) {
    mean[n] = mu;
    rstd[n] = r;
  }
}

__global__ void ln_bwd_dx_k(float* dinp, const float* dout, const float* inp, const float* gamma,
                            const float* mean, const float* rstd, int64_t N, int64_t C) {
  const int64_t n = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (n >= N) return;
  const float* x = inp + n * C;
  const float* dy = dout + n * C;
  const float m = mean[n], r = rstd[n];
  float sg = 0.0f, sgx = 0.0f;
  for (int64_t c = lane; c < C; c += 32) {
    const float g = gamma[c] * dy[c];
    sg += g;
    sgx += g * (x[c] - m) * r;
  }
  const float mg = warp_sum(sg) / static_cast<float>(C);
  const float mgx = warp_sum(sgx) / static_cast<float>(C);
  for (int64_t c = lane; c < C; c += 32)
    dinp[n * C + c] += r * (gamma[c] * dy[c] - mg - (x[c] - m) * r * mgx);
}

__global__ void ln_bwd_params_k(float* dgamma, float* dbeta, const float* dout, const float* inp,
                                const float* mean, const float* rstd, int64_t N, int64_t C) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (c >= C) return;
  float sg = 0.0f, sb = 0.0f;
  for (int64_t n = 0; n < N; ++n) {
    const float dy = dout[n * C + c];
    sg += dy * (inp[n * C + c] - mean[n]) * rstd[n];
    sb += dy;
  }
  if (dgamma) dgamma[c] += sg;
  if (dbeta) dbeta[c] += sb;
}

__global__ void rms_fwd_k(float* out, float* rstd, const float* inp, const float* gamma, int64_t N,
                          int64_t C, float eps) {
  const int64_t n = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (n >= N) return;
  const float* x = inp + n * C;
  float ss = 0.0f;
  for (int64_t c = lane; c < C; c += 32) ss += x[c] * x[c];
  const float r = rsqrtf(warp_sum(ss) / static_cast<float>(C) + eps);
  for (int64_t c = lane; c < C; c += 32) out[n * C + c] = x[c] * r * gamma[c];
  if (lane == 0) rstd[n] = r;
}

__global__ void rms_bwd_dx_k(float* dinp, const float* dout, const float* inp, const float* gamma,
                             const float* rstd, int64_t N, int64_t C) {
  const int64_t n = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (n >= N) return;
  const float* x = inp + n * C;
  const float* dy = dout + n * C;
  const float r = rstd[n];
  float dot = 0.0f;
  for (int64_t c = lane; c < C; c += 32) dot += gamma[c] * dy[c] * x[c];
  const float k = warp_sum(dot) / static_cast<float>(C) * r * r * r;
  for (int64_t c = lane; c < C; c += 32) dinp[n * C + c] += gamma[c] * dy[c] * r - x[c] * k;
}

__global__ void rms_bwd_gamma_k(float* dgamma, const float* dout, const float* inp,
                                const float* rstd, int64_t N, int64_t C) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  for (int64_t n = 0; n < N; ++n) s += dout[n * C + c] * inp[n * C + c] * rstd[n];
  dgamma[c] += s;
}

unsigned row_blocks(int64_t N) {
  return static_cast<unsigned>((N + kWarpsPerBlock - 1) / kWarpsPerBlock);
}
unsigned col_blocks(int64_t C) {
  return static_cast<unsigned>((C + 127) / 128);
}
}  // namespace

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gamma,
                       const float* beta, int64_t N, int64_t C, float eps) {
  ln_fwd_k<<<row_blocks(N), kWarpsPerBlock * 32>>>(out, mean, rstd, inp, gamma, beta, N, C, eps);
  SPARTA_CUDA_LAUNCHED();
}

void layernorm_backward(float* dinp, float* dgamma, float* dbeta, const float* dout,
                        const float* inp, const float* gamma, const float* mean, const float* rstd,
                        int64_t N, int64_t C) {
  if (dinp) {
    ln_bwd_dx_k<<<row_blocks(N), kWarpsPerBlock * 32>>>(dinp, dout, inp, gamma, mean, rstd, N, C);
    SPARTA_CUDA_LAUNCHED();
  }
  if (dgamma || dbeta) {
    ln_bwd_params_k<<<col_blocks(C), 128>>>(dgamma, dbeta, dout, inp, mean, rstd, N, C);
    SPARTA_CUDA_LAUNCHED();
  }
}

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* gamma, int64_t N,
                     int64_t C, float eps) {
  rms_fwd_k<<<row_blocks(N), kWarpsPerBlock * 32>>>(out, rstd, inp, gamma, N, C, eps);
  SPARTA_CUDA_LAUNCHED();
}

void rmsnorm_backward(float* dinp, float* dgamma, const float* dout, const float* inp,
                      const float* gamma, const float* rstd, int64_t N, int64_t C) {
  if (dinp) {
    rms_bwd_dx_k<<<row_blocks(N), kWarpsPerBlock * 32>>>(dinp, dout, inp, gamma, rstd, N, C);
    SPARTA_CUDA_LAUNCHED();
  }
  if (dgamma) {
    rms_bwd_gamma_k<<<col_blocks(C), 128>>>(dgamma, dout, inp, rstd, N, C);
    SPARTA_CUDA_LAUNCHED();
  }
}

}  // namespace sparta::kernels::cuda
