#include "kernels/cuda/common.cuh"

namespace sparta::kernels::cuda {

int device_count() {
  // Without a driver this returns cudaErrorInsufficientDriver (35), not cudaErrorNoDevice:
  // any error means "no GPU" (see notes/environment.md section 1.3).
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

void* malloc_device(int device, size_t bytes) {
  SPARTA_CUDA_CHECK(cudaSetDevice(device));
  void* p = nullptr;
  SPARTA_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void free_device(int device, void* p) {
  cudaSetDevice(device);
  cudaFree(p);  // never throws: called from destructors
}

void* malloc_pinned(size_t bytes) {
  void* p = nullptr;
  SPARTA_CUDA_CHECK(cudaMallocHost(&p, bytes));
  return p;
}

void free_pinned(void* p) {
  cudaFreeHost(p);  // never throws: called from destructors
}

void copy_bytes(void* dst, bool, const void* src, bool, size_t bytes) {
  SPARTA_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}

void zero_bytes(void* p, size_t bytes) {
  SPARTA_CUDA_CHECK(cudaMemset(p, 0, bytes));
}

void synchronize() {
  SPARTA_CUDA_CHECK(cudaDeviceSynchronize());
}

void* scratch(size_t bytes) {
  static void* buf = nullptr;
  static size_t cap = 0;
  if (bytes > cap) {
    if (buf) SPARTA_CUDA_CHECK(cudaFree(buf));
    SPARTA_CUDA_CHECK(cudaMalloc(&buf, bytes));
    cap = bytes;
  }
  return buf;
}

}  // namespace sparta::kernels::cuda
