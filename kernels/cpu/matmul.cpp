#include <cblas.h>

#include <chrono>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/profile.h"

namespace sparta::kernels::cpu {

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const bool timed = profile::enabled();
  const auto t0 =
      timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(M), static_cast<blasint>(N),
              static_cast<blasint>(K), alpha, A, static_cast<blasint>(lda), B,
              static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
  if (timed)
    profile::add_gemm(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
        2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K));
}

void matmul_forward(float* out, const float* inp, const float* w, int64_t N, int64_t IC,
                    int64_t OC) {
  gemm(false, true, N, OC, IC, 1.0f, inp, IC, w, IC, 0.0f, out, OC);
}

void matmul_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                     int64_t N, int64_t IC, int64_t OC) {
  if (dinp) gemm(false, false, N, IC, OC, 1.0f, dout, OC, w, IC, 1.0f, dinp, IC);
  if (dw) gemm(true, false, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
}

}  // namespace sparta::kernels::cpu
