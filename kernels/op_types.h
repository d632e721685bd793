// Plain parameter structs shared by the op API and both backends (no dependencies, so the CUDA
// sources can include it without pulling host-only headers into nvcc).
#pragma once

#include <cstdint>

namespace sparta::kernels {

struct AdamWParams {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  float grad_scale = 1.0f;  // multiplies the gradient first (global-norm clipping)
  int64_t step = 1;         // 1-based, for bias correction
};

}  // namespace sparta::kernels
