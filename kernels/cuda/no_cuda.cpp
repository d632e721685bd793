// Built instead of the CUDA sources when SPARTA_CUDA is off: no device is ever reported, so no
// CUDA tensor can exist and kernels/ops.cpp never dispatches to the CUDA twins.
#include "kernels/check.h"
#include "kernels/cuda/cuda_ops.h"

namespace sparta::kernels::cuda {

static constexpr const char* kMsg =
    "this sparta was built without CUDA (SPARTA_CUDA=OFF or no nvcc at configure time)";

int device_count() {
  return 0;
}
void* malloc_device(int, size_t) {
  throw Error(ErrorKind::usage, kMsg);
}
void free_device(int, void*) {}
void* malloc_pinned(size_t) {
  throw Error(ErrorKind::usage, kMsg);
}
void free_pinned(void*) {}
void copy_bytes(void*, bool, const void*, bool, size_t) {
  throw Error(ErrorKind::usage, kMsg);
}
void zero_bytes(void*, size_t) {
  throw Error(ErrorKind::usage, kMsg);
}
void synchronize() {}
DeviceInfo device_info(int) {
  throw Error(ErrorKind::usage, kMsg);
}
size_t device_memory_used(int) {
  return 0;
}

}  // namespace sparta::kernels::cuda
