// The op table's parameterised test: one gtest case per table entry, named after it.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "tests/common/op_cases.h"

namespace sparta::test {

class OpTable : public ::testing::TestWithParam<size_t> {
 protected:
  const OpCase& op_case() const { return op_cases()[GetParam()]; }
};

inline std::string op_case_name(const ::testing::TestParamInfo<size_t>& info) {
  return op_cases()[info.param].name();
}

// Every reference of `c` against the outputs `outs` of one backend, within `slack` more than
// the case's reference tolerance (another backend may be off the CPU by its own tolerance too).
inline void expect_references(const OpCase& c, const std::vector<OpOutput>& outs, bool with_slack) {
  if (!c.reference) return;
  for (const auto& [name, ref] : c.reference()) {
    const OpOutput* o = nullptr;
    for (const OpOutput& x : outs)
      if (x.name == name) o = &x;
    ASSERT_NE(o, nullptr) << c.name() << ": no output '" << name << "' for its reference";
    const OpOutput want{name, ref, 0, false};
    const double tol = c.ref_tol + (with_slack ? o->tol : 0.0);
    EXPECT_LT(op_error(want, o->v), tol) << c.name() << ": " << name << " vs double reference";
  }
}

}  // namespace sparta::test
