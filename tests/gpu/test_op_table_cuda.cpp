// The op table (tests/common/op_cases.h) on the GPU: every case's outputs against the CPU op's
// on the same inputs, each within its stated tolerance (0: identical), and against the double
// references. Replaces the hand-written per-op CUDA tests. Skipped without a GPU.
#include "tests/common/device_util.h"
#include "tests/common/op_table_runner.h"

namespace sparta::test {
namespace {

TEST_P(OpTable, CudaMatchesTheCpu) {
  SPARTA_REQUIRE_GPU();
  const OpCase& c = op_case();
  OpBackend cpu(kernels::Device::cpu()), gpu(kernels::Device::cuda(0));
  const std::vector<OpOutput> want = c.run(cpu), got = c.run(gpu);
  ASSERT_EQ(want.size(), got.size()) << c.name();
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(want[i].name, got[i].name) << c.name();
    if (want[i].tol == 0)
      EXPECT_EQ(got[i].v, want[i].v) << c.name() << ": " << want[i].name << " must be identical";
    else
      EXPECT_LT(op_error(want[i], got[i].v), want[i].tol) << c.name() << ": " << want[i].name;
  }
  expect_references(c, got, true);
}

INSTANTIATE_TEST_SUITE_P(Cases, OpTable, ::testing::Range<size_t>(0, op_cases().size()),
                         op_case_name);

}  // namespace
}  // namespace sparta::test
