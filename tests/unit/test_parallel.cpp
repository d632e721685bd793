// The process mesh (placement, groups, every refused layout) and the single-process Comm.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "kernels/check.h"
#include "parallel/comm.h"
#include "parallel/init_watchdog.h"
#include "parallel/mesh.h"

namespace sparta::test {
namespace {

using parallel::Dim;
using parallel::MeshLayout;
using parallel::MeshModelLimits;
using parallel::ProcessMesh;

MeshModelLimits model() {
  MeshModelLimits m;
  m.n_heads = 8;
  m.d_ff = 64;
  m.vocab_size = 256;
  m.seq_len = 32;
  m.moe_experts = 8;
  return m;
}

// The bound on MPI_Init and ncclCommInitRank (tests/mpi/startup.sh runs the MPI one for real).
TEST(InitWatchdog, EndsAStuckInitialisationWithItsMessage) {
  EXPECT_EXIT(
      {
        const parallel::InitWatchdog w(0.2, "NCCL communicator 'dp' did not initialise\n");
        std::this_thread::sleep_for(std::chrono::seconds(10));  // the stuck call
      },
      ::testing::ExitedWithCode(1), "NCCL communicator 'dp' did not initialise");
}

TEST(InitWatchdog, StaysQuietWhenTheCallReturnsInTime) {
  const auto t0 = std::chrono::steady_clock::now();
  {
    const parallel::InitWatchdog w(30, "must not appear\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }  // returns at once, not after 30 s
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  const parallel::InitWatchdog unbounded(0, "no thread\n");  // 0: no bound
}

TEST(ProcessMesh, PlacementAndGroups) {
  MeshLayout l;
  l.tp = 2;
  l.ep = 2;  // dp inferred: 16 / 4 = 4
  const ProcessMesh m(l, 16, model());
  EXPECT_EQ(m.size(Dim::dp), 4);
  // Default order tp-cp-ep-dp: tp fastest.
  EXPECT_EQ(m.coord(5, Dim::tp), 1);
  EXPECT_EQ(m.coord(5, Dim::ep), 0);
  EXPECT_EQ(m.coord(5, Dim::dp), 1);
  EXPECT_EQ(m.group_ranks(5, {Dim::tp}), (std::vector<int>{4, 5}));
  EXPECT_EQ(m.group_ranks(5, {Dim::ep}), (std::vector<int>{5, 7}));
  EXPECT_EQ(m.group_ranks(5, {Dim::dp}), (std::vector<int>{1, 5, 9, 13}));
  // Dense data parallel spans ep x dp.
  EXPECT_EQ(m.group_ranks(5, {Dim::ep, Dim::dp}), (std::vector<int>{1, 3, 5, 7, 9, 11, 13, 15}));
  // Every rank is in exactly one group of each kind, and groups partition the world.
  for (int r = 0; r < 16; ++r)
    for (int q = 0; q < 16; ++q)
      EXPECT_EQ(m.group_color(r, {Dim::tp}) == m.group_color(q, {Dim::tp}), r / 2 == q / 2);
  // Another order: dp innermost.
  l.order = "dp-tp-cp-ep";
  const ProcessMesh m2(l, 16, model());
  EXPECT_EQ(m2.group_ranks(0, {Dim::dp}), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_NE(m2.table().find("rank  15: tp 1 cp 0 ep 1 dp 3"), std::string::npos) << m2.table();
}

void expect_refused(MeshLayout l, int world, MeshModelLimits mm, const std::string& msg) {
  try {
    ProcessMesh m(l, world, mm);
    ADD_FAILURE() << "accepted; wanted: " << msg;
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), 2);
    EXPECT_NE(std::string(e.what()).find(msg), std::string::npos) << e.what();
  }
}

TEST(ProcessMesh, InvalidLayoutsSayWhatToChange) {
  MeshLayout l;
  l.dp = 3;
  expect_refused(
      l, 4, model(),
      "tp x cp x ep x dp = 1 x 1 x 1 x 3 = 3, but the job has 4 ranks: set parallel.dp = 4");
  l = {};
  l.tp = 3;
  expect_refused(l, 4, model(), "tp x cp x ep = 3 x 1 x 1 = 3 does not divide the world size 4");
  l.tp = 2;
  MeshModelLimits mm = model();
  mm.n_heads = 3;
  expect_refused(l, 4, mm, "parallel.tp = 2 must divide model.n_heads = 3");
  mm = model();
  mm.d_ff = 63;
  expect_refused(l, 4, mm, "parallel.tp = 2 must divide model.d_ff = 63");
  mm = model();
  mm.vocab_size = 255;
  expect_refused(l, 4, mm, "parallel.tp = 2 must divide model.vocab_size = 255");
  mm = model();
  mm.uoe_attn_experts = 3;
  expect_refused(l, 4, mm, "parallel.tp = 2 must divide uoe.attn_experts = 3");
  l = {};
  l.ep = 4;
  mm = model();
  mm.moe_experts = 6;
  expect_refused(l, 4, mm, "parallel.ep = 4 must divide moe.experts = 6");
  mm.moe_experts = 0;
  expect_refused(l, 4, mm, "parallel.ep = 4 needs an MoE model");
  l = {};
  l.cp = 3;
  expect_refused(l, 3, model(), "parallel.cp = 3 must divide model.seq_len = 32");
  l = {};
  l.tp = 2;
  l.cp = 2;
  mm = model();
  mm.n_heads = 6;
  expect_refused(l, 4, mm, "parallel.tp x cp = 2 x 2 must divide model.n_heads = 6");
  // Ring: the sequence in 2 cp zigzag chunks; any head count (2 x 2 with 6 heads is fine).
  l.cp_algo = parallel::CpAlgo::ring;
  ProcessMesh ring_ok(l, 4, mm);
  EXPECT_EQ(ring_ok.cp_algo(), parallel::CpAlgo::ring);
  l = {};
  l.cp = 3;
  l.cp_algo = parallel::CpAlgo::ring;
  mm = model();
  mm.seq_len = 21;  // cp divides it, 2 cp does not
  expect_refused(l, 3, mm,
                 "parallel.cp_algo = \"ring\" with parallel.cp = 3: 2 x cp = 6 must divide "
                 "model.seq_len = 21");
  l = {};
  l.cp = 2;
  l.cp_algo = parallel::CpAlgo::ring;
  mm = model();
  mm.learned_pos = true;
  EXPECT_THROW(parallel::validate_model_support(l, mm), std::exception);
  l = {};
  l.order = "tp-cp-dp";
  expect_refused(l, 4, model(), "must name tp, cp, ep and dp once each");
  l.order = "tp-tp-ep-dp";
  expect_refused(l, 4, model(), "must name tp, cp, ep and dp once each");
}

template <class F>
void expect_error(F f, const std::string& msg) {
  try {
    f();
    ADD_FAILURE() << "no error; wanted: " << msg;
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(msg), std::string::npos) << e.what();
  }
}

TEST(SelfComm, CollectivesAreTheIdentityAndAreRecorded) {
  parallel::SelfComm c;
  std::vector<float> a = {1, 2, 3}, b(3);
  const kernels::Tensor ta(a.data(), kernels::DType::f32, kernels::Device::cpu(), {3});
  const kernels::Tensor tb(b.data(), kernels::DType::f32, kernels::Device::cpu(), {3});
  c.all_reduce(ta, parallel::ReduceOp::avg);
  c.reduce_scatter(tb, ta, parallel::ReduceOp::sum);
  EXPECT_EQ(b, a);
  c.all_gather(tb, ta);
  c.all_to_all_v(tb, {3}, ta, {3});
  EXPECT_EQ(b, a);
  EXPECT_EQ(c.stats(parallel::CollKind::all_reduce).calls, 1);
  EXPECT_EQ(c.total_bytes(), 4 * 12);
  EXPECT_EQ(c.flight().last_seq(), 4u);
  EXPECT_NE(c.flight().tail().find("#4 all_to_all_v 12 bytes"), std::string::npos)
      << c.flight().tail();
  c.start_sendrecv(tb, 0, ta, 0);  // a ring of one: to itself
  c.wait_all();
  EXPECT_EQ(b, a);
  EXPECT_EQ(c.stats(parallel::CollKind::sendrecv).calls, 1);
  expect_error([&] { c.start_sendrecv(ta, 0, ta, 0); },
               "sendrecv on 'self': receives [3] into [3] (same size and type, another buffer)");
  expect_error([&] { c.start_sendrecv(tb, 1, ta, 0); }, "sendrecv on 'self' from rank 1");
  EXPECT_EQ(parallel::Comm::block_range(10, 4, 3), (std::pair<int64_t, int64_t>{9, 10}));
  EXPECT_EQ(parallel::Comm::block_range(2, 4, 3), (std::pair<int64_t, int64_t>{2, 2}));
}

}  // namespace
}  // namespace sparta::test
