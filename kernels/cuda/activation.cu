#include "kernels/cuda/common.cuh"

namespace sparta::kernels::cuda {

namespace {
constexpr int kThreads = 256;
constexpr float kGeluK = 0.7978845608028654f;
constexpr float kGeluC = 0.044715f;

__device__ inline float sigmoidf(float x) {
  return 1.0f / (1.0f + expf(-x));
}

__global__ void gelu_fwd_k(float* out, const float* inp, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float x = inp[i];
    out[i] = 0.5f * x * (1.0f + tanhf(kGeluK * (x + kGeluC * x * x * x)));
  }
}
__global__ void gelu_bwd_k(float* dinp, const float* dout, const float* inp, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float x = inp[i];
    const float t = tanhf(kGeluK * (x + kGeluC * x * x * x));
    const float dt = kGeluK * (1.0f + 3.0f * kGeluC * x * x) * (1.0f - t * t);
    dinp[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * x * dt);
  }
}
__global__ void swiglu_fwd_k(float* out, const float* inp, int64_t N, int64_t F) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < N * F;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t n = i / F, f = i % F;
    const float g = inp[n * 2 * F + f], u = inp[n * 2 * F + F + f];
    out[i] = g * sigmoidf(g) * u;
  }
}
__global__ void swiglu_bwd_k(float* dinp, const float* dout, const float* inp, int64_t N,
                             int64_t F) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < N * F;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t n = i / F, f = i % F;
    const float g = inp[n * 2 * F + f], u = inp[n * 2 * F + F + f];
    const float s = sigmoidf(g);
    dinp[n * 2 * F + f] += dout[i] * u * s * (1.0f + g * (1.0f - s));
    dinp[n * 2 * F + F + f] += dout[i] * g * s;
  }
}
}  // namespace

void gelu_forward(float* out, const float* inp, int64_t n) {
  gelu_fwd_k<<<blocks_for(n, kThreads), kThreads>>>(out, inp, n);
  SPARTA_CUDA_LAUNCHED();
}
void gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
  gelu_bwd_k<<<blocks_for(n, kThreads), kThreads>>>(dinp, dout, inp, n);
  SPARTA_CUDA_LAUNCHED();
}
void swiglu_forward(float* out, const float* inp, int64_t N, int64_t F) {
  swiglu_fwd_k<<<blocks_for(N * F, kThreads), kThreads>>>(out, inp, N, F);
  SPARTA_CUDA_LAUNCHED();
}
void swiglu_backward(float* dinp, const float* dout, const float* inp, int64_t N, int64_t F) {
  swiglu_bwd_k<<<blocks_for(N * F, kThreads), kThreads>>>(dinp, dout, inp, N, F);
  SPARTA_CUDA_LAUNCHED();
}

}  // namespace sparta::kernels::cuda
