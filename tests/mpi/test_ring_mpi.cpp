// Zigzag ring attention (trainer/models/ring_attention.h) under mpirun with 2 and 4 ranks (ctest
// label mpi), against single-process causal attention on the gathered rows and against the
// all-gather-K/V variant (written here as the reference): forward (o, lse)
// and backward (dq, dk, dv) within fp32 tolerance for T in {256, 1024, 4096} (spec
// context-parallel-attention.md T3); every rank holds exactly its own dK/dV after the extra pass,
// with K/V passed cp - 1 times and dK/dV cp times (T7); and every step costs every rank the same
// number of score entries, m x 2m, equal to the causal diagonal block (T5).
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "kernels/arena.h"
#include "kernels/ops.h"
#include "parallel/comm.h"
#include "parallel/mpi_comm.h"
#include "tests/common/mpi_main.h"
#include "tests/common/test_util.h"
#include "trainer/models/ring_attention.h"

namespace sparta::test {
namespace {

namespace k = sparta::kernels;
using models::RingAttention;

std::unique_ptr<parallel::Comm> g_world;

// Rows of this rank's zigzag chunks of a [1, H, Tf, D] tensor, as [1, H, T, D].
std::vector<float> local_rows(const std::vector<float>& full, int64_t H, int64_t Tf, int64_t D,
                              int rank, int cp) {
  const int64_t T = Tf / cp;
  std::vector<float> out(static_cast<size_t>(H * T * D));
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < T; ++i) {
      const int64_t g = models::Dims::zigzag_position(i, T, rank, cp);
      std::copy_n(full.begin() + (h * Tf + g) * D, D, out.begin() + (h * T + i) * D);
    }
  return out;
}

int64_t visible_pairs(const k::AttnMask& m) {
  int64_t n = 0;
  for (int64_t i = m.q_begin; i < m.q_end; ++i)
    n += std::max<int64_t>(0, std::min(m.k_end, i + m.diag + 1) - m.k_begin);
  return n;
}

// The all-gather-K/V variant (spec context-parallel-attention.md §3, item 2), the simple
// reference: every rank gathers every K/V block, attends with its own queries over the whole
// sequence in one mask window per zigzag chunk (merged by log-sum-exps), and the whole
// sequence's dK/dV are reduce-scattered back to the blocks' owners. q, k, v, dy: this rank's
// [1, H, T, D]; returns (o, lse, dq, dk, dv) of its rows.
struct AttnGrads {
  HostF32 o, lse, dq, dk, dv;
};
AttnGrads allgather_attention(parallel::Comm& c, const HostF32& q, const HostF32& kk,
                              const HostF32& v, const HostF32& dy, int64_t H, int64_t D) {
  const int P = c.size(), r = c.rank();
  const int64_t T = q.t.dim(2), Tf = T * P, m = T / 2, n = H * T * D;
  const auto pos = [&](int rank, int64_t i) {
    return models::Dims::zigzag_position(i, T, rank, P);
  };
  HostF32 mine({2 * n}), all({2 * n * P});
  std::copy(kk.v.begin(), kk.v.end(), mine.v.begin());
  std::copy(v.v.begin(), v.v.end(), mine.v.begin() + n);
  c.all_gather(all.t, mine.t);
  HostF32 K({1, H, Tf, D}), V({1, H, Tf, D});  // in sequence order
  for (int s = 0; s < P; ++s)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i) {
        const auto from = all.v.begin() + 2 * n * s + (h * T + i) * D;
        const int64_t to = (h * Tf + pos(s, i)) * D;
        std::copy_n(from, D, K.v.begin() + to);
        std::copy_n(from + n, D, V.v.begin() + to);
      }
  const int64_t sa = pos(r, 0), sb = pos(r, m);
  const k::AttnMask ma{0, m, 0, sa + m, sa}, mb{m, T, 0, sb + m, sb - m};
  AttnGrads g{HostF32({1, H, T, D}), HostF32({1, H, T}), HostF32({1, H, T, D}),
              HostF32({1, H, T, D}), HostF32({1, H, T, D})};
  HostF32 o2({1, H, T, D}), lse2({1, H, T});
  k::attention_forward(g.o.t, g.lse.t, q.t, K.t, V.t, ma);
  k::attention_forward(o2.t, lse2.t, q.t, K.t, V.t, mb);
  k::attention_merge(g.o.t, g.lse.t, o2.t, lse2.t);
  HostF32 dK({1, H, Tf, D}), dV({1, H, Tf, D});
  for (const k::AttnMask& w : {ma, mb})
    k::attention_backward(g.dq.t, dK.t, dV.t, dy.t, q.t, K.t, V.t, g.o.t, g.lse.t, w);
  HostF32 owners({2 * n * P}), back({2 * n});  // each owner's rows, owner by owner
  for (int s = 0; s < P; ++s)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i) {
        const int64_t from = (h * Tf + pos(s, i)) * D;
        const auto to = owners.v.begin() + 2 * n * s + (h * T + i) * D;
        std::copy_n(dK.v.begin() + from, D, to);
        std::copy_n(dV.v.begin() + from, D, to + n);
      }
  c.reduce_scatter(back.t, owners.t, parallel::ReduceOp::sum);
  std::copy_n(back.v.begin(), n, g.dk.v.begin());
  std::copy_n(back.v.begin() + n, n, g.dv.v.begin());
  return g;
}

class RingVsOneProcess : public ::testing::TestWithParam<int64_t> {};

TEST_P(RingVsOneProcess, ForwardAndBackwardMatchTheGatheredRows) {
  parallel::Comm& c = *g_world;
  const int P = c.size(), r = c.rank();
  const int64_t Tf = GetParam(), H = 2, D = 16, T = Tf / P;
  // The whole sequence on every rank (same seeds), and the single-process attention of it.
  auto q = randn({1, H, Tf, D}, 61), kk = randn({1, H, Tf, D}, 62), v = randn({1, H, Tf, D}, 63);
  auto dy = randn({1, H, Tf, D}, 64);
  HostF32 o({1, H, Tf, D}), lse({1, H, Tf}), dq({1, H, Tf, D}), dk({1, H, Tf, D}),
      dv({1, H, Tf, D});
  k::attention_forward(o.t, lse.t, q.t, kk.t, v.t, true);
  k::attention_backward(dq.t, dk.t, dv.t, dy.t, q.t, kk.t, v.t, o.t, lse.t, true);

  models::Dims d;
  d.B = 1;
  d.Tf = Tf;
  d.T = T;
  d.Ta = T;
  d.Hl = d.Hc = H;
  d.D = D;
  d.cp = d.cpr = P;
  d.cp_rank = d.cpr_rank = r;
  d.ring = true;
  k::ArenaPlan plan("ring test");
  RingAttention ring(plan, d, &c);
  const k::Arena arena = plan.commit(k::Device::cpu());
  auto mine = [&](const HostF32& full) {
    HostF32 h({1, H, T, D});
    h.v = local_rows(full.v, H, Tf, D, r, P);
    h.t = Tensor(h.v.data(), k::DType::f32, k::Device::cpu(), {1, H, T, D});
    return h;
  };
  auto lq = mine(q), lk = mine(kk), lv = mine(v), ldy = mine(dy);
  HostF32 lo({1, H, T, D}), llse({1, H, T}), ldq({1, H, T, D}), ldk({1, H, T, D}),
      ldv({1, H, T, D});
  const auto passes = [&] { return c.stats(parallel::CollKind::sendrecv).calls; };
  const auto before = passes();
  ring.forward(lo.t, llse.t, lq.t, lk.t, lv.t);
  EXPECT_EQ(passes() - before, P - 1);  // K/V
  ring.backward(ldq.t, ldk.t, ldv.t, ldy.t, lq.t, lk.t, lv.t, lo.t, llse.t);
  EXPECT_EQ(passes() - before, 3 * P - 2);  // K/V again, and dK/dV P times

  auto want = [&](const HostF32& full, int64_t inner = 0) {
    const auto rows = local_rows(full.v, H, Tf, inner > 0 ? inner : D, r, P);
    return std::vector<double>(rows.begin(), rows.end());
  };
  EXPECT_LT(rel_err(lo.v, want(o)), 1e-5) << "rank " << r;
  EXPECT_LT(rel_err(llse.v, want(lse, 1)), 1e-6) << "rank " << r;
  EXPECT_LT(rel_err(ldq.v, want(dq)), 1e-4) << "rank " << r;
  EXPECT_LT(rel_err(ldk.v, want(dk)), 1e-4) << "rank " << r;
  EXPECT_LT(rel_err(ldv.v, want(dv)), 1e-4) << "rank " << r;

  // And the all-gather-K/V reference, on the same rows.
  const AttnGrads ag = allgather_attention(c, lq, lk, lv, ldy, H, D);
  auto same = [](const HostF32& a) { return std::vector<double>(a.v.begin(), a.v.end()); };
  EXPECT_LT(rel_err(lo.v, same(ag.o)), 1e-5) << "rank " << r;
  EXPECT_LT(rel_err(llse.v, same(ag.lse)), 1e-6) << "rank " << r;
  EXPECT_LT(rel_err(ldq.v, same(ag.dq)), 1e-4) << "rank " << r;
  EXPECT_LT(rel_err(ldk.v, same(ag.dk)), 1e-4) << "rank " << r;
  EXPECT_LT(rel_err(ldv.v, same(ag.dv)), 1e-4) << "rank " << r;
  EXPECT_LT(rel_err(ag.dk.v, want(dk)), 1e-4) << "rank " << r;  // the reference is right too
}

INSTANTIATE_TEST_SUITE_P(SeqLens, RingVsOneProcess, ::testing::Values(256, 1024, 4096),
                         ::testing::PrintToStringParamName());

// The zigzag masks give every rank the same work at every step: the diagonal's causal 2m x 2m
// triangle (m (2m + 1) entries, the diagonal included) and m x 2m after it.
TEST(RingBalance, EveryStepCostsEveryRankTheSame) {
  for (int P : {2, 3, 4, 8}) {
    const int64_t m = 16, T = 2 * m;
    for (int t = 0; t < P; ++t) {
      std::vector<int64_t> work;
      for (int r = 0; r < P; ++r)
        work.push_back(visible_pairs(RingAttention::step_mask(r, (r - t + P) % P, T)));
      for (int64_t w : work) EXPECT_EQ(w, t == 0 ? m * (2 * m + 1) : 2 * m * m) << P << " " << t;
    }
  }
}

}  // namespace
}  // namespace sparta::test

int main(int argc, char** argv) {
  return sparta::test::run_mpi_tests(argc, argv, sparta::test::g_world);
}
