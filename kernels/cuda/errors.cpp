// Host side of CUDA error reporting (kept out of nvcc so fmt and exceptions stay in g++).
#include <cublasLt.h>

#include "kernels/check.h"
#include "kernels/cuda/common.cuh"

namespace sparta::kernels::cuda {

void fail(const char* file, int line, const char* call, const char* what) {
  int dev = -1;
  cudaGetDevice(&dev);
  throw Error(ErrorKind::internal, fmt::format("{}:{}: CUDA call failed on device {}: {}: {}", file,
                                               line, dev, call, what));
}

const char* cublasLt_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    default:
      return "cuBLAS error";
  }
}

}  // namespace sparta::kernels::cuda
