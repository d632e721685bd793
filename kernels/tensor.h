// Tensor: a small non-owning view (pointer, dtype, device, shape up to 4 dims, row-major,
// contiguous). Owning memory lives in kernels/arena.h. Dimension letters used everywhere:
// B batch, T tokens, C model width, H heads, D head dim, F FFN width, V vocab, L layers, N = B*T.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "kernels/check.h"

namespace sparta::kernels {

enum class DType : uint8_t { f32, bf16, f16, i32, u16 };
enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  bool operator==(const Device&) const = default;
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  static Device cpu() { return {}; }
  static Device cuda(int i = 0) { return {DeviceType::cuda, i}; }
};

std::string to_string(DType t);
std::string to_string(Device d);
size_t dtype_size(DType t);

struct Tensor {
  static constexpr int kMaxDims = 4;
  void* data = nullptr;
  DType dtype = DType::f32;
  Device device{};
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};

  Tensor() = default;
  Tensor(void* ptr, DType t, Device dev, std::initializer_list<int64_t> dims);

  bool empty() const { return data == nullptr; }
  int64_t dim(int i) const { return shape[static_cast<size_t>(i < 0 ? ndim + i : i)]; }
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  std::string shape_str() const;

  // Same memory, new shape; the element count must match.
  Tensor view(std::initializer_list<int64_t> dims) const;
  // Rows [begin, end) of the leading dimension, as a tensor of the same rank.
  Tensor rows(int64_t begin, int64_t end) const;

  float* f32() const { return typed<float>(DType::f32); }
  int32_t* i32() const { return typed<int32_t>(DType::i32); }
  uint16_t* u16() const { return typed<uint16_t>(DType::u16); }

 private:
  template <class T>
  T* typed(DType want) const {
    SPARTA_CHECK(dtype == want, "tensor has dtype {}, wanted {}", to_string(dtype),
                 to_string(want));
    return static_cast<T*>(data);
  }
};

}  // namespace sparta::kernels
