#include <cstdio>

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

DeviceInfo device_info(int device) {
  cudaDeviceProp prop{};
  SPARTA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  int clock_khz = 0;
  SPARTA_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device));
  DeviceInfo info;
  char hex[40];
  const auto* b = reinterpret_cast<const unsigned char*>(prop.uuid.bytes);
  std::snprintf(hex, sizeof hex,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  info.uuid = std::string("GPU-") + hex;
  info.peak_fp32_flops = static_cast<double>(prop.multiProcessorCount) * 128.0 * 2.0 *
                         static_cast<double>(clock_khz) * 1e3;
  return info;
}

size_t device_memory_used(int device) {
  SPARTA_CUDA_CHECK(cudaSetDevice(device));
  size_t free_b = 0, total = 0;
  SPARTA_CUDA_CHECK(cudaMemGetInfo(&free_b, &total));
  return total - free_b;
}

}  // namespace sparta::kernels::cuda
