// GEMM through cuBLASLt. fp32 in/out with CUBLAS_COMPUTE_32F (no TF32): the reference-precision
// path the CPU oracle can check to ~1e-5. A bf16 path is a later, separately tested addition.
#include <cublas_v2.h>

#include <vector>

#include "kernels/cuda/common.cuh"

namespace sparta::kernels::cuda {
#include "kernels/moe_backend.inc"

namespace {
struct Lt {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = size_t{32} << 20;
};

Lt& lt() {
  static Lt ctx = [] {
    Lt c;
    SPARTA_CUBLAS_CHECK(cublasLtCreate(&c.handle));
    SPARTA_CUDA_CHECK(cudaMalloc(&c.workspace, c.workspace_bytes));
    return c;
  }();
  return ctx;
}

// Column-major: C[m,n] = alpha * op(A) op(B) + beta * C.
void gemm_cm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* A,
             int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  Lt& ctx = lt();
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  SPARTA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  SPARTA_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
  SPARTA_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
  SPARTA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, ta ? k : m, ta ? m : k, lda));
  SPARTA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, tb ? n : k, tb ? k : n, ldb));
  SPARTA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, m, n, ldc));
  SPARTA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = ctx.workspace_bytes;
  SPARTA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  SPARTA_CUBLAS_CHECK(
      cublasLtMatmulAlgoGetHeuristic(ctx.handle, op, la, lb, lc, lc, pref, 1, &heur, &found));
  if (found == 0) fail(__FILE__, __LINE__, "cublasLtMatmulAlgoGetHeuristic", "no algorithm");
  SPARTA_CUBLAS_CHECK(cublasLtMatmul(ctx.handle, op, &alpha, A, la, B, lb, &beta, C, lc, C, lc,
                                     &heur.algo, ctx.workspace, ctx.workspace_bytes, nullptr));
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatmulDescDestroy(op);
}
}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T with the same buffers.
  gemm_cm(trans_b, trans_a, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc);
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

namespace {
cublasHandle_t blas() {
  static cublasHandle_t h = [] {
    cublasHandle_t x = nullptr;
    SPARTA_CUBLAS_CHECK(cublasCreate(&x));
    // Default math mode: fp32 without TF32, like the cuBLASLt path.
    return x;
  }();
  return h;
}

// One cublasSgemmGroupedBatched call, one group per non-empty expert (each has its own row count),
// in the column-major form of the row-major products (see gemm()). The problem sizes live on the
// host, the matrix pointers in a device array (cuBLAS's contract for batched pointer arrays).
struct Grouped {
  std::vector<cublasOperation_t> ta, tb;
  std::vector<int> m, n, k, lda, ldb, ldc, size;
  std::vector<float> alpha, beta;
  std::vector<const float*> A, B;
  std::vector<float*> C;
  void add(bool a_t, bool b_t, int64_t mm, int64_t nn, int64_t kk, const float* a, int64_t la,
           const float* b, int64_t lb, float bt, float* c, int64_t lc) {
    ta.push_back(a_t ? CUBLAS_OP_T : CUBLAS_OP_N);
    tb.push_back(b_t ? CUBLAS_OP_T : CUBLAS_OP_N);
    m.push_back(static_cast<int>(mm));
    n.push_back(static_cast<int>(nn));
    k.push_back(static_cast<int>(kk));
    lda.push_back(static_cast<int>(la));
    ldb.push_back(static_cast<int>(lb));
    ldc.push_back(static_cast<int>(lc));
    size.push_back(1);
    alpha.push_back(1.0f);
    beta.push_back(bt);
    A.push_back(a);
    B.push_back(b);
    C.push_back(c);
  }
  void run() {
    const size_t g = ta.size();
    if (g == 0) return;
    auto** ptrs = static_cast<void**>(scratch(3 * g * sizeof(void*)));
    std::vector<const void*> host(3 * g);
    for (size_t i = 0; i < g; ++i) {
      host[i] = A[i];
      host[g + i] = B[i];
      host[2 * g + i] = C[i];
    }
    SPARTA_CUDA_CHECK(
        cudaMemcpy(ptrs, host.data(), host.size() * sizeof(void*), cudaMemcpyHostToDevice));
    SPARTA_CUBLAS_CHECK(cublasSgemmGroupedBatched(
        blas(), ta.data(), tb.data(), m.data(), n.data(), k.data(), alpha.data(),
        reinterpret_cast<const float* const*>(ptrs), lda.data(),
        reinterpret_cast<const float* const*>(ptrs + g), ldb.data(), beta.data(),
        reinterpret_cast<float* const*>(ptrs + 2 * g), ldc.data(), static_cast<int>(g),
        size.data()));
  }
};
}  // namespace

void grouped_matmul_forward(float* out, const float* inp, const float* w, const int64_t* off,
                            int64_t E, int64_t IC, int64_t OC) {
  Grouped g;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t rows = off[e + 1] - off[e];
    if (rows > 0)  // column-major out^T[OC, rows] = W_e^T-as-[IC,OC]^T . inp^T[IC, rows]
      g.add(true, false, OC, rows, IC, w + e * OC * IC, IC, inp + off[e] * IC, IC, 0.0f,
            out + off[e] * OC, OC);
  }
  g.run();
}

void grouped_matmul_backward(float* dinp, float* dw, const float* dout, const float* inp,
                             const float* w, const int64_t* off, int64_t E, int64_t IC,
                             int64_t OC) {
  Grouped gi, gw;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t rows = off[e + 1] - off[e];
    if (rows == 0) continue;
    if (dinp)  // dinp^T[IC, rows] += W_e^T-as-[IC,OC] . dout^T[OC, rows]
      gi.add(false, false, IC, rows, OC, w + e * OC * IC, IC, dout + off[e] * OC, OC, 1.0f,
             dinp + off[e] * IC, IC);
    if (dw)  // dW_e^T[IC, OC] += inp^T[IC, rows] . dout[rows, OC]
      gw.add(false, true, IC, OC, rows, inp + off[e] * IC, IC, dout + off[e] * OC, OC, 1.0f,
             dw + e * OC * IC, IC);
  }
  gi.run();
  gw.run();
}

}  // namespace sparta::kernels::cuda
