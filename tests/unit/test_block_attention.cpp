// The ring's building blocks (spec context-parallel-attention.md T1, T2): block attention over a
// mask window against the double reference and finite differences, empty rows, and the exact
// log-sum-exp merge: any partition of the keys, merged in any order, equals one call over all of
// them, forward and (through the final o and lse) backward.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "kernels/ops.h"
#include "tests/common/reference_ops.h"
#include "tests/common/test_util.h"

namespace sparta::test {
namespace {

namespace k = sparta::kernels;
using k::AttnMask;
using ref::Vec;

constexpr double kFwdTol = 2e-5;
constexpr double kGradTol = 2e-4;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

std::pair<Vec, Vec> reference(const HostF32& q, const HostF32& kk, const HostF32& v, int64_t BH,
                              int64_t Tq, int64_t Tk, int64_t D, const AttnMask& m) {
  return ref::block_attention(q.d(), kk.d(), v.d(), BH, Tq, Tk, D, m.q_begin, m.q_end, m.k_begin,
                              m.k_end, m.diag);
}

// Finite entries compared relative to the reference's scale; -inf entries must match exactly.
void expect_lse(const std::vector<float>& got, const Vec& want) {
  Vec g, w;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isinf(want[i])) {
      EXPECT_EQ(got[i], kNegInf) << "row " << i;
    } else {
      g.push_back(got[i]);
      w.push_back(want[i]);
    }
  }
  EXPECT_LT(rel_err(g, w), kFwdTol);
}

struct BlockCase {
  const char* name;
  int64_t Tq, Tk;
  AttnMask m;
};

class BlockAttention : public ::testing::TestWithParam<BlockCase> {};

TEST_P(BlockAttention, MatchesReferenceAndFiniteDifferences) {
  const auto c = GetParam();
  const int64_t BH = 2, D = 5;
  auto q = randn({1, BH, c.Tq, D}, 41), kk = randn({1, BH, c.Tk, D}, 42);
  auto v = randn({1, BH, c.Tk, D}, 43), dy = randn({1, BH, c.Tq, D}, 44);
  HostF32 o({1, BH, c.Tq, D}), lse({1, BH, c.Tq});
  k::attention_forward(o.t, lse.t, q.t, kk.t, v.t, c.m);
  const auto [ro, rl] = reference(q, kk, v, BH, c.Tq, c.Tk, D, c.m);
  EXPECT_LT(rel_err(o.v, ro), kFwdTol);
  expect_lse(lse.v, rl);
  for (float x : o.v) ASSERT_TRUE(std::isfinite(x));
  auto f = [&](const std::vector<Vec>& x) {
    return ref::block_attention(x[0], x[1], x[2], BH, c.Tq, c.Tk, D, c.m.q_begin, c.m.q_end,
                                c.m.k_begin, c.m.k_end, c.m.diag)
        .first;
  };
  const std::vector<Vec> in = {q.d(), kk.d(), v.d()};
  HostF32 dq({1, BH, c.Tq, D}), dk({1, BH, c.Tk, D}), dv({1, BH, c.Tk, D});
  k::attention_backward(dq.t, dk.t, dv.t, dy.t, q.t, kk.t, v.t, o.t, lse.t, c.m);
  EXPECT_LT(rel_err(dq.v, fd_of(f, in, 0, dy.d())), kGradTol);
  EXPECT_LT(rel_err(dk.v, fd_of(f, in, 1, dy.d())), kGradTol);
  EXPECT_LT(rel_err(dv.v, fd_of(f, in, 2, dy.d())), kGradTol);
}

// The zigzag ring's three step shapes (§4.1) at m = 3 local chunk rows, the strict-causal mask,
// a window whose first rows see nothing, and a fully empty block (NONE_EMPTY); sizes straddle
// the CPU kernel's 32-query / 64-key blocks too.
INSTANTIATE_TEST_SUITE_P(Windows, BlockAttention,
                         ::testing::Values(BlockCase{"diagonal_causal", 6, 6, AttnMask::causal(6)},
                                           BlockCase{"all_q_first_half_k", 6, 6, {0, 6, 0, 3, 6}},
                                           BlockCase{"second_half_q_all_k", 6, 6, {3, 6, 0, 6, 6}},
                                           BlockCase{"strict_causal", 7, 7, {0, 7, 0, 7, -1}},
                                           BlockCase{"offset_causal_rect", 5, 9, {0, 5, 2, 9, 3}},
                                           BlockCase{"none_empty", 4, 4, {0, 4, 0, 4, -5}},
                                           BlockCase{"long_rect", 40, 70, {5, 40, 3, 70, 20}}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(BlockAttention, EmptyRowsAreTheMergeIdentity) {
  const int64_t T = 4, D = 3;
  auto q = randn({1, 1, T, D}, 45), kk = randn({1, 1, T, D}, 46), v = randn({1, 1, T, D}, 47);
  HostF32 o({1, 1, T, D}), lse({1, 1, T});
  std::fill(o.v.begin(), o.v.end(), 7.0f);  // overwritten, not accumulated
  k::attention_forward(o.t, lse.t, q.t, kk.t, v.t, AttnMask{0, T, 0, T, -1});
  for (int64_t d = 0; d < D; ++d) EXPECT_EQ(o.v[d], 0.0f);  // row 0 sees no key when strict
  EXPECT_EQ(lse.v[0], kNegInf);
  EXPECT_TRUE(std::isfinite(lse.v[1]));
  // Merging an all-empty part changes nothing, bit for bit.
  HostF32 o2({1, 1, T, D}), lse2({1, 1, T}), oe({1, 1, T, D}), lsee({1, 1, T});
  k::attention_forward(o2.t, lse2.t, q.t, kk.t, v.t, AttnMask::causal(T));
  k::attention_forward(oe.t, lsee.t, q.t, kk.t, v.t, AttnMask{0, T, 0, T, -T - 1});
  const auto before = o2.v, lbefore = lse2.v;
  k::attention_merge(o2.t, lse2.t, oe.t, lsee.t);
  EXPECT_EQ(o2.v, before);
  EXPECT_EQ(lse2.v, lbefore);
  // Two empty rows merge to an empty row, no NaN.
  k::attention_merge(oe.t, lsee.t, oe.t, lsee.t);
  for (float x : oe.v) EXPECT_EQ(x, 0.0f);
  for (float x : lsee.v) EXPECT_EQ(x, kNegInf);
}

// A causal T x T attention split into key windows [cuts[i], cuts[i + 1]), each computed alone
// (the causal cut kept by diag = 0 in global key indices) and merged in a shuffled order, equals
// the single call; the blocks' backwards through the final (o, lse) sum to the single backward.
TEST(BlockAttention, AnyKeyPartitionMergedInAnyOrderEqualsOneCall) {
  const int64_t BH = 3, T = 50, D = 8;
  auto q = randn({1, BH, T, D}, 48), kk = randn({1, BH, T, D}, 49), v = randn({1, BH, T, D}, 50);
  auto dy = randn({1, BH, T, D}, 51);
  HostF32 o({1, BH, T, D}), lse({1, BH, T});
  k::attention_forward(o.t, lse.t, q.t, kk.t, v.t, true);
  HostF32 dq({1, BH, T, D}), dk({1, BH, T, D}), dv({1, BH, T, D});
  k::attention_backward(dq.t, dk.t, dv.t, dy.t, q.t, kk.t, v.t, o.t, lse.t, true);
  const std::vector<int64_t> cuts = {0, 1, 13, 14, 33, 50};
  std::vector<size_t> order(cuts.size() - 1);
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937 rng(7);
  for (int trial = 0; trial < 3; ++trial) {
    std::shuffle(order.begin(), order.end(), rng);
    HostF32 acc({1, BH, T, D}), acc_lse({1, BH, T}), part({1, BH, T, D}), part_lse({1, BH, T});
    std::fill(acc_lse.v.begin(), acc_lse.v.end(), kNegInf);
    for (size_t p : order) {
      k::attention_forward(part.t, part_lse.t, q.t, kk.t, v.t,
                           AttnMask{0, T, cuts[p], cuts[p + 1], 0});
      k::attention_merge(acc.t, acc_lse.t, part.t, part_lse.t);
    }
    EXPECT_LT(rel_err(acc.v, o.d()), 1e-5) << "trial " << trial;
    EXPECT_LT(rel_err(acc_lse.v, lse.d()), 1e-6) << "trial " << trial;
  }
  HostF32 bq({1, BH, T, D}), bk({1, BH, T, D}), bv({1, BH, T, D});
  for (size_t p = 0; p + 1 < cuts.size(); ++p)
    k::attention_backward(bq.t, bk.t, bv.t, dy.t, q.t, kk.t, v.t, o.t, lse.t,
                          AttnMask{0, T, cuts[p], cuts[p + 1], 0});
  EXPECT_LT(rel_err(bq.v, dq.d()), 1e-5);
  EXPECT_LT(rel_err(bk.v, dk.d()), 1e-5);
  EXPECT_LT(rel_err(bv.v, dv.d()), 1e-5);
}

TEST(BlockAttention, RejectsWindowsOutsideTheBlock) {
  HostF32 q({1, 1, 4, 2}), kk({1, 1, 6, 2}), o({1, 1, 4, 2}), lse({1, 1, 4});
  try {
    k::attention_forward(o.t, lse.t, q.t, kk.t, kk.t, AttnMask{0, 4, 0, 7, 0});
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("mask window q [0, 4) k [0, 7) outside Tq 4 Tk 6"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace sparta::test
