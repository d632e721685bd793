// The CUDA twin of every op in kernels/backend_ops.inc, plus device memory. Compiled only when
// SPARTA_HAVE_CUDA; otherwise kernels/cuda/no_cuda.cpp provides the memory entry points (device
// count 0, allocation refused) and kernels/ops.cpp never dispatches here.
//
// All kernels run on the default stream of the current device; host<->device copies synchronise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/op_types.h"

namespace sparta::kernels::cuda {

int device_count();  // 0 when there is no usable GPU or driver (never throws)
void* malloc_device(int device, size_t bytes);
void free_device(int device, void* p);
void* malloc_pinned(size_t bytes);
void free_pinned(void* p);
void copy_bytes(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes);
void zero_bytes(void* p, size_t bytes);
void synchronize();
// What monitoring reports about a device: "GPU-<uuid>", bytes in use (total - free), and an
// estimate of the fp32 FMA peak (SMs x 128 lanes x 2 FLOPs x clock).
struct DeviceInfo {
  std::string uuid;
  double peak_fp32_flops = 0;
};
DeviceInfo device_info(int device);
size_t device_memory_used(int device);

#ifdef SPARTA_HAVE_CUDA
#include "kernels/backend_ops.inc"
#endif

}  // namespace sparta::kernels::cuda
