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

  // A tensor at byte `offset` of this arena, the bump pointer untouched (ArenaPlan's overlays,
  // in a range reserved by one alloc()).
  Tensor carve(size_t offset, DType dtype, const std::vector<int64_t>& dims) const;
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
  // Overlays (train.recompute): between open_overlay(key) and close_overlay() requests go into
  // a new instance of overlay `key`. Every instance of a key starts at the same offset, so they
  // share memory and the key costs its largest instance's bytes. Only one instance may hold live
  // values at a time: its owner recomputes them before each use. Overlaid tensors take no fill
  // value, and nothing may rely on their zero start.
  void open_overlay(int key);
  void close_overlay();
  // Outside any open overlay: a tensor whose values outlive its owner's turn (a block's output
  // is the next block's input).
  void add_kept(Tensor* dst, std::vector<int64_t> dims);
  // Allocates and fills every destination; afterwards the plan is spent. Returns the arena.
  Arena commit(Device device);
  size_t requests() const { return requests_.size(); }
  // Bytes the overlays save against giving every instance its own memory (before commit).
  size_t overlay_savings() const;

 private:
  struct Request {
    Tensor* dst;
    DType dtype;
    std::vector<int64_t> dims;
    float fill;
    int key = -1;  // overlay, or -1
    int instance = 0;
  };
  // Bytes of what is not overlaid, and of each overlay's instances.
  struct Sizes {
    size_t plain = 0;
    std::vector<std::pair<int, std::vector<size_t>>> overlays;  // key -> bytes per instance
  };
  Sizes sizes() const;
  std::string name_;
  std::vector<Request> requests_;
  int open_key_ = -1, open_instance_ = 0;
  std::vector<std::pair<int, int>> instances_;  // key -> instances so far
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
