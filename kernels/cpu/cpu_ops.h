// CPU reference implementations: fp32 storage, double or fp32 accumulation, OpenMP across rows,
// GEMMs through OpenBLAS. These are the oracle the CUDA twins are tested against.
#pragma once

#include <cstdint>

#include "kernels/ops.h"

namespace sparta::kernels::cpu {
#include "kernels/backend_ops.inc"

// Row-major SGEMM: C[M,N] = alpha * op(A) · op(B) + beta * C.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
}  // namespace sparta::kernels::cpu
