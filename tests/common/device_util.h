// Moving test tensors between host and GPU (tests/gpu only).
#pragma once

#include <vector>

#include "kernels/arena.h"
#include "tests/common/test_util.h"

namespace sparta::test {

// A device copy of a host tensor; freed on destruction.
struct DeviceTensor {
  Tensor t;
  template <class H>
  explicit DeviceTensor(const H& host) {
    t = host.t;
    t.device = kernels::Device::cuda(0);
    t.data = kernels::device_malloc(t.device, t.nbytes() ? t.nbytes() : 4);
    kernels::copy(t, host.t);
  }
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;
  ~DeviceTensor() { kernels::device_free(t.device, t.data); }
  std::vector<double> to_host() const {
    std::vector<float> h(static_cast<size_t>(t.numel()));
    Tensor ht = t;
    ht.device = kernels::Device::cpu();
    ht.data = h.data();
    kernels::copy(ht, t);
    return {h.begin(), h.end()};
  }
};

#define SPARTA_REQUIRE_GPU()                                                 \
  do {                                                                       \
    if (!::sparta::kernels::cuda_available()) GTEST_SKIP() << "no CUDA GPU"; \
  } while (0)

}  // namespace sparta::test
