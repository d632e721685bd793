#include "kernels/tensor.h"

namespace sparta::kernels {

std::string to_string(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::bf16:
      return "bf16";
    case DType::f16:
      return "f16";
    case DType::i32:
      return "i32";
    case DType::u16:
      return "u16";
  }
  return "?";
}

std::string to_string(Device d) {
  return d.is_cpu() ? std::string("cpu") : fmt::format("cuda:{}", d.index);
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
    case DType::i32:
      return 4;
    case DType::bf16:
    case DType::f16:
    case DType::u16:
      return 2;
  }
  return 0;
}

Tensor::Tensor(void* ptr, DType t, Device dev, std::initializer_list<int64_t> dims)
    : data(ptr), dtype(t), device(dev), ndim(static_cast<int>(dims.size())) {
  SPARTA_CHECK(dims.size() >= 1 && dims.size() <= kMaxDims, "rank {} unsupported", dims.size());
  size_t i = 0;
  for (int64_t d : dims) {
    SPARTA_CHECK(d >= 0, "negative dimension {}", d);
    shape[i++] = d;
  }
}

int64_t Tensor::numel() const {
  if (ndim == 0) return 0;
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[static_cast<size_t>(i)];
  return n;
}

std::string Tensor::shape_str() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i)
    s += fmt::format("{}{}", i ? "," : "", shape[static_cast<size_t>(i)]);
  return s + "]";
}

Tensor Tensor::view(std::initializer_list<int64_t> dims) const {
  Tensor t(data, dtype, device, dims);
  SPARTA_CHECK(t.numel() == numel(), "view {} of tensor {} changes the element count",
               t.shape_str(), shape_str());
  return t;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  SPARTA_CHECK(ndim >= 1 && 0 <= begin && begin <= end && end <= shape[0], "rows [{},{}) of {}",
               begin, end, shape_str());
  Tensor t = *this;
  const int64_t row = shape[0] == 0 ? 0 : numel() / shape[0];
  t.data = static_cast<char*>(data) + static_cast<size_t>(begin * row) * dtype_size(dtype);
  t.shape[0] = end - begin;
  return t;
}

}  // namespace sparta::kernels
