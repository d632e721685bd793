// The op table (tests/common/op_cases.h) on the CPU: each case runs, its outputs are finite, and
// the outputs with a double-precision reference are within the case's tolerance of it.
#include <cmath>

#include "tests/common/op_table_runner.h"

namespace sparta::test {
namespace {

TEST_P(OpTable, CpuMatchesTheDoubleReference) {
  const OpCase& c = op_case();
  OpBackend cpu(kernels::Device::cpu());
  const std::vector<OpOutput> outs = c.run(cpu);
  ASSERT_FALSE(outs.empty());
  for (const OpOutput& o : outs) {
    EXPECT_FALSE(o.v.empty()) << c.name() << ": " << o.name;
    for (double v : o.v) ASSERT_TRUE(std::isfinite(v)) << c.name() << ": " << o.name;
  }
  expect_references(c, outs, false);
}

// Running a case twice on the same backend gives the same outputs, bit for bit (what lets the
// GPU runner compare backends on equal inputs).
TEST_P(OpTable, CpuIsDeterministic) {
  const OpCase& c = op_case();
  OpBackend a(kernels::Device::cpu()), b(kernels::Device::cpu());
  const auto x = c.run(a), y = c.run(b);
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i].v, y[i].v) << c.name() << ": " << x[i].name;
}

INSTANTIATE_TEST_SUITE_P(Cases, OpTable, ::testing::Range<size_t>(0, op_cases().size()),
                         op_case_name);

TEST(OpTableShape, CoversEveryOpFamily) {
  std::vector<std::string> ops;
  for (const OpCase& c : op_cases()) ops.push_back(c.op);
  for (const char* want :
       {"matmul", "embedding_rope", "norms", "activations", "heads_attention", "block_attention",
        "lm_head_xent", "vocab_parallel", "elementwise_adamw", "moe_route_aux",
        "moe_permute_combine", "grouped_gemm", "gru_cell", "uoe_assign", "rope_at_grouped_bias"})
    EXPECT_NE(std::find(ops.begin(), ops.end(), want), ops.end()) << want;
}

}  // namespace
}  // namespace sparta::test
