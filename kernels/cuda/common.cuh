// Shared helpers of the CUDA twins. Host-only sparta headers (fmt, exceptions) stay out of nvcc:
// failures are reported through cuda::fail(), implemented in errors.cpp, which throws
// sparta::Error.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/cuda_ops.h"

namespace sparta::kernels::cuda {

[[noreturn]] void fail(const char* file, int line, const char* call, const char* what);

#define SPARTA_CUDA_CHECK(call)                                                         \
  do {                                                                                  \
    cudaError_t e_ = (call);                                                            \
    if (e_ != cudaSuccess)                                                              \
      ::sparta::kernels::cuda::fail(__FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
  } while (0)
#define SPARTA_CUBLAS_CHECK(call)                                                         \
  do {                                                                                    \
    cublasStatus_t s_ = (call);                                                           \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                                      \
      ::sparta::kernels::cuda::fail(__FILE__, __LINE__, #call, cublasLt_status_name(s_)); \
  } while (0)
#define SPARTA_CUDA_LAUNCHED() SPARTA_CUDA_CHECK(cudaGetLastError())

const char* cublasLt_status_name(cublasStatus_t s);

// A device scratch buffer that only grows (allocation happens on the first, largest use, never
// in a steady-state step). One per process; kernels use it within a single op call.
void* scratch(size_t bytes);

// Row-major SGEMM on the device: C[M,N] = alpha * op(A) · op(B) + beta * C (cuBLASLt, fp32
// compute, no TF32, so results track the CPU reference to fp32 rounding).
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

inline unsigned blocks_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 65535 * 16 ? b : 65535 * 16);
}

#ifdef __CUDACC__
__device__ inline float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ inline float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
#endif

}  // namespace sparta::kernels::cuda
