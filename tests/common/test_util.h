// Helpers shared by the test binaries: host-owned tensors filled from the counter-based RNG,
// error measures, and central finite differences in double precision.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <vector>

#include "kernels/rng.h"
#include "kernels/tensor.h"

namespace sparta::test {

using kernels::DType;
using kernels::Tensor;

// A host tensor that owns its storage.
struct HostF32 {
  std::vector<float> v;
  Tensor t;
  HostF32() = default;
  explicit HostF32(std::initializer_list<int64_t> dims) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    v.assign(static_cast<size_t>(n), 0.0f);
    t = Tensor(v.data(), DType::f32, kernels::Device::cpu(), dims);
  }
  HostF32(const HostF32& o) : v(o.v), t(o.t) { t.data = v.data(); }
  HostF32& operator=(const HostF32& o) {
    v = o.v;
    t = o.t;
    t.data = v.data();
    return *this;
  }
  float& operator[](size_t i) { return v[i]; }
  float operator[](size_t i) const { return v[i]; }
  size_t size() const { return v.size(); }
  std::vector<double> d() const { return {v.begin(), v.end()}; }
};

struct HostI32 {
  std::vector<int32_t> v;
  Tensor t;
  explicit HostI32(std::initializer_list<int64_t> dims) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    v.assign(static_cast<size_t>(n), 0);
    t = Tensor(v.data(), DType::i32, kernels::Device::cpu(), dims);
  }
};

inline HostF32 randn(std::initializer_list<int64_t> dims, uint64_t stream, float scale = 1.0f,
                     float shift = 0.0f) {
  HostF32 h(dims);
  for (size_t i = 0; i < h.size(); ++i)
    h[i] = shift + scale * static_cast<float>(kernels::normal(
                               1234, kernels::rng_stream(kernels::RngPurpose::test, stream), i));
  return h;
}

// max |a - b| / max(max |b|, floor): an error relative to the reference's scale.
inline double rel_err(const std::vector<double>& a, const std::vector<double>& b,
                      double floor = 1e-6) {
  double num = 0.0, den = floor;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num = std::max(num, std::fabs(a[i] - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return a.size() == b.size() ? num / den : 1e30;
}
inline double rel_err(const std::vector<float>& a, const std::vector<double>& b,
                      double floor = 1e-6) {
  return rel_err(std::vector<double>(a.begin(), a.end()), b, floor);
}

// Central differences of a scalar function f(x) in double.
inline std::vector<double> fd_grad(const std::function<double(const std::vector<double>&)>& f,
                                   std::vector<double> x, double eps = 1e-5) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + eps;
    const double fp = f(x);
    x[i] = x0 - eps;
    const double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * eps);
  }
  return g;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// L(x) = <f(x), w> with x substituted into slot `which` of the double inputs: dL/dx by central
// differences (the backward of f checked through the projection w).
inline std::vector<double> fd_of(
    const std::function<std::vector<double>(const std::vector<std::vector<double>>&)>& f,
    std::vector<std::vector<double>> inputs, size_t which, const std::vector<double>& w) {
  return fd_grad(
      [&](const std::vector<double>& x) {
        inputs[which] = x;
        return dot(f(inputs), w);
      },
      inputs[which]);
}

}  // namespace sparta::test
