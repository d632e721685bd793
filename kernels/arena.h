// Arena: one owning allocation per (purpose, device), carved into tensors by a bump pointer.
//
// Memory is planned, not discovered: a component runs its allocation code once against a
// measuring arena (no memory, just the byte count), then once against a real arena of exactly that
// size. After construction nothing is allocated, so the training step never touches the heap.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "kernels/tensor.h"

namespace sparta::kernels {

class Arena {
 public:
  static constexpr size_t kAlign = 256;  // covers AVX-512 rows and CUDA's 256-byte alignment

  // A measuring arena: alloc() returns tensors with no data and only counts bytes.
  static Arena measuring(Device device = Device::cpu());

  Arena() = default;
  Arena(Device device, size_t capacity_bytes, std::string name = "arena");
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  Arena(Arena&& o) noexcept;
  Arena& operator=(Arena&& o) noexcept;

  // Zero-initialised tensor carved from the arena.
  Tensor alloc(DType dtype, std::initializer_list<int64_t> dims);
  Tensor alloc(DType dtype, const std::vector<int64_t>& dims);

  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }
  bool is_measuring() const { return measuring_; }
  Device device() const { return device_; }
  // The whole used range as one flat f32 tensor (all tensors of an f32 arena in order, padding
  // included; padding is zero and stays zero, so norms and optimizer steps over it are exact).
  Tensor flat_f32() const;

 private:
  void release();
  Device device_{};
  std::string name_;
  char* base_ = nullptr;
  size_t capacity_ = 0;
  size_t used_ = 0;
  bool measuring_ = false;
};

// A deferred plan of one arena: components ask for their tensors while they are built (the
// destinations are their own members, which must not move afterwards), then commit() sizes the
// arena by a measuring pass, allocates it once and points every destination at its tensor, in
// request order. Lets a composition of modules plan memory in a single construction.
class ArenaPlan {
 public:
  explicit ArenaPlan(std::string name) : name_(std::move(name)) {}
  // A zero-filled tensor (fill != 0: filled with that value at commit).
  void add(Tensor* dst, DType dtype, std::vector<int64_t> dims, float fill = 0.0f);
  void add(Tensor* dst, std::vector<int64_t> dims) { add(dst, DType::f32, std::move(dims)); }
  // Allocates and fills every destination; afterwards the plan is spent. Returns the arena.
  Arena commit(Device device);
  size_t requests() const { return requests_.size(); }

 private:
  struct Request {
    Tensor* dst;
    DType dtype;
    std::vector<int64_t> dims;
    float fill;
  };
  std::string name_;
  std::vector<Request> requests_;
};

// Device memory and transfers. Host<->device copies are synchronous.
void* device_malloc(Device d, size_t bytes);
void device_free(Device d, void* p);
// Page-locked host memory (cudaMallocHost) when a GPU is usable, plain aligned host memory
// otherwise: the staging buffers of communicators that move device tensors through the host.
void* pinned_host_malloc(size_t bytes);
void pinned_host_free(void* p);
void copy(Tensor dst, Tensor src);  // any device pair; shapes' element counts and dtypes match
void zero(Tensor t);
bool cuda_available();  // false when built without CUDA, or no usable GPU/driver
int cuda_device_count();

}  // namespace sparta::kernels
