// Device dispatch shared by the op front ends (ops.cpp, moe.cpp): `call` is an unqualified
// backend call, run as cpu::call or cuda::call by the tensors' device. Without CUDA a device
// tensor is a usage error (none can exist, since device allocation already refuses).
#pragma once

#include "kernels/check.h"

namespace sparta::kernels {
[[noreturn]] inline void no_cuda_build() {
  throw Error(ErrorKind::usage, "CUDA tensor given to an op, but sparta was built without CUDA");
}
}  // namespace sparta::kernels

#ifdef SPARTA_HAVE_CUDA
#define SPARTA_DISPATCH(dev, call) \
  do {                             \
    if ((dev).is_cuda())           \
      cuda::call;                  \
    else                           \
      cpu::call;                   \
  } while (0)
#define SPARTA_DISPATCH_RET(dev, call) ((dev).is_cuda() ? cuda::call : cpu::call)
#else
#define SPARTA_DISPATCH(dev, call)               \
  do {                                           \
    if ((dev).is_cuda()) ::sparta::kernels::no_cuda_build(); \
    cpu::call;                                   \
  } while (0)
#define SPARTA_DISPATCH_RET(dev, call) \
  ((dev).is_cuda() ? (::sparta::kernels::no_cuda_build(), cpu::call) : cpu::call)
#endif
