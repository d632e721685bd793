#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/rng.h"

namespace sparta::kernels::cuda {

namespace {
constexpr int kThreads = 256;

__global__ void add_k(float* out, const float* a, const float* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    out[i] = a[i] + b[i];
}
__global__ void acc_k(float* dst, const float* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    dst[i] += src[i];
}
__global__ void scale_k(float* x, float s, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    x[i] *= s;
}

constexpr int kSumBlocks = 512;
// Each block writes one double partial; the host adds them in order: deterministic.
__global__ void sumsq_k(double* partial, const float* x, int64_t n) {
  __shared__ double sh[kThreads];
  double s = 0.0;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    s += static_cast<double>(x[i]) * x[i];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w >>= 1) {
    if (static_cast<int>(threadIdx.x) < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = sh[0];
}

__global__ void noise_k(float* x, int64_t n, float sigma, uint64_t seed, uint32_t param_id,
                        uint32_t step, int64_t offset) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    x[i] += sigma * static_cast<float>(
                        noise_normal(seed, param_id, step, static_cast<uint64_t>(offset + i)));
}

__global__ void adamw_k(float* param, const float* grad, float* m, float* v, int64_t n,
                        AdamWParams p, float bc1, float bc2) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float g = grad[i] * p.grad_scale;
    const float mi = p.beta1 * m[i] + (1.0f - p.beta1) * g;
    const float vi = p.beta2 * v[i] + (1.0f - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] -= p.lr * ((mi / bc1) / (sqrtf(vi / bc2) + p.eps) + p.weight_decay * param[i]);
  }
}
}  // namespace

void add(float* out, const float* a, const float* b, int64_t n) {
  add_k<<<blocks_for(n, kThreads), kThreads>>>(out, a, b, n);
  SPARTA_CUDA_LAUNCHED();
}
void accumulate(float* dst, const float* src, int64_t n) {
  acc_k<<<blocks_for(n, kThreads), kThreads>>>(dst, src, n);
  SPARTA_CUDA_LAUNCHED();
}
void scale(float* x, float s, int64_t n) {
  scale_k<<<blocks_for(n, kThreads), kThreads>>>(x, s, n);
  SPARTA_CUDA_LAUNCHED();
}

double sum_squares(const float* x, int64_t n) {
  auto* partial = static_cast<double*>(scratch(kSumBlocks * sizeof(double)));
  sumsq_k<<<kSumBlocks, kThreads>>>(partial, x, n);
  SPARTA_CUDA_LAUNCHED();
  double host[kSumBlocks];
  SPARTA_CUDA_CHECK(cudaMemcpy(host, partial, sizeof(host), cudaMemcpyDeviceToHost));
  double s = 0.0;
  for (double h : host) s += h;
  return s;
}

void add_noise(float* x, int64_t n, float sigma, uint64_t seed, uint32_t param_id, uint32_t step,
               int64_t offset) {
  noise_k<<<blocks_for(n, kThreads), kThreads>>>(x, n, sigma, seed, param_id, step, offset);
  SPARTA_CUDA_LAUNCHED();
}

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWParams& p) {
  const float bc1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(p.beta1), p.step));
  const float bc2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(p.beta2), p.step));
  adamw_k<<<blocks_for(n, kThreads), kThreads>>>(param, grad, m, v, n, p, bc1, bc2);
  SPARTA_CUDA_LAUNCHED();
}

}  // namespace sparta::kernels::cuda
