// One table of op cases, run on every available backend (ggml's test-backend-ops): a case runs
// one op family on tensors of a backend and returns named outputs; the runners compare
//   - every backend's outputs with the CPU op's on the same inputs (tests/gpu/test_op_table),
//     each output with its stated tolerance (0: identical), and
//   - the outputs that have a double-precision reference (tests/common/reference_ops.h) with it,
//     on every backend (tests/unit/test_op_table on the CPU, the GPU runner on the GPU).
// The finite-difference checks of every backward live beside the CPU ops' own tests
// (tests/unit/test_ops.cpp, test_moe.cpp, test_uoe.cpp), at shapes small enough for them.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "kernels/tensor.h"
#include "tests/common/test_util.h"

namespace sparta::test {

// One output of a case: its values (i32 outputs and host counts as doubles) and how close
// another backend must come: max |a - b| / max(max |cpu|, 1e-6) < tol, or max |a - b| < tol
// when `absolute`; tol 0: identical.
struct OpOutput {
  std::string name;
  std::vector<double> v;
  double tol = 0;
  bool absolute = false;
};

// The tensors of one case on one device, freed with the backend.
class OpBackend {
 public:
  explicit OpBackend(kernels::Device device) : device_(device) {}
  ~OpBackend();
  OpBackend(const OpBackend&) = delete;
  OpBackend& operator=(const OpBackend&) = delete;
  kernels::Device device() const { return device_; }
  Tensor put(const HostF32& h);
  Tensor put(const HostI32& h);
  Tensor zeros(std::initializer_list<int64_t> dims, kernels::DType dtype = kernels::DType::f32);
  static std::vector<double> get(const Tensor& t);  // f32 or i32, any device

 private:
  Tensor own(Tensor like);
  kernels::Device device_;
  std::vector<void*> blocks_;
};

struct OpCase {
  std::string op;     // the op family, e.g. "matmul"
  std::string shape;  // e.g. "N33_IC70_OC45"
  kernels::DType dtype = kernels::DType::f32;
  // Runs the case on `be` (inputs made inside from fixed RNG streams: the same on every backend).
  std::function<std::vector<OpOutput>(OpBackend& be)> run;
  // Double-precision references of some outputs (by name), within ref_tol of the reference's
  // scale. Empty: none.
  std::function<std::vector<std::pair<std::string, std::vector<double>>>()> reference;
  double ref_tol = 2e-5;
  std::string name() const { return op + "_" + shape; }
};

// The whole table (dense ops, then MoE/GRU, then UoE).
const std::vector<OpCase>& op_cases();
std::vector<OpCase> dense_op_cases();
std::vector<OpCase> sparse_op_cases();

// How far `got` is from `want` in the output's own measure (see OpOutput).
double op_error(const OpOutput& want, const std::vector<double>& got);

}  // namespace sparta::test
