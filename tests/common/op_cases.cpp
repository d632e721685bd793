#include "tests/common/op_cases.h"

#include <cmath>

#include "kernels/arena.h"

namespace sparta::test {

namespace k = sparta::kernels;

OpBackend::~OpBackend() {
  for (void* p : blocks_) k::device_free(device_, p);
}

Tensor OpBackend::own(Tensor like) {
  like.device = device_;
  like.data = k::device_malloc(device_, like.nbytes() ? like.nbytes() : 4);
  blocks_.push_back(like.data);
  return like;
}

Tensor OpBackend::put(const HostF32& h) {
  const Tensor t = own(h.t);
  k::copy(t, h.t);
  return t;
}

Tensor OpBackend::put(const HostI32& h) {
  const Tensor t = own(h.t);
  k::copy(t, h.t);
  return t;
}

Tensor OpBackend::zeros(std::initializer_list<int64_t> dims, k::DType dtype) {
  Tensor t = own(Tensor(nullptr, dtype, device_, dims));
  k::zero(t);
  return t;
}

std::vector<double> OpBackend::get(const Tensor& t) {
  const auto n = static_cast<size_t>(t.numel());
  Tensor h = t;
  h.device = k::Device::cpu();
  if (t.dtype == k::DType::i32) {
    std::vector<int32_t> v(n);
    h.data = v.data();
    k::copy(h, t);
    return {v.begin(), v.end()};
  }
  std::vector<float> v(n);
  h.data = v.data();
  k::copy(h, t);
  return {v.begin(), v.end()};
}

double op_error(const OpOutput& want, const std::vector<double>& got) {
  if (got.size() != want.v.size()) return 1e30;
  double num = 0, den = 1e-6;
  for (size_t i = 0; i < got.size(); ++i) {
    num = std::max(num, std::fabs(got[i] - want.v[i]));
    den = std::max(den, std::fabs(want.v[i]));
  }
  return want.absolute ? num : num / den;
}

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> all = [] {
    std::vector<OpCase> v = dense_op_cases();
    for (auto& c : sparse_op_cases()) v.push_back(std::move(c));
    return v;
  }();
  return all;
}

}  // namespace sparta::test
