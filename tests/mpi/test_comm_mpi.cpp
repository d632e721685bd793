// Every Comm operation of the MPI communicator against values each rank can compute alone, run
// under mpirun with 2 and 4 ranks (ctest label mpi): all_reduce sum/avg/max, reduce_scatter and
// all_gather with uneven blocks (and in place), all_to_all_v with ragged counts, send/recv,
// started ring passes (sendrecv),
// broadcast, barrier, split, the statistics and the flight recorder. The same checks run on
// SelfComm in one process.
#include <gtest/gtest.h>

#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "kernels/arena.h"
#include "kernels/tensor.h"
#include "parallel/comm.h"
#include "parallel/mpi_comm.h"
#include "tests/common/mpi_main.h"

namespace sparta::test {
namespace {

using kernels::DType;
using kernels::Tensor;
using parallel::Comm;
using parallel::ReduceOp;

std::unique_ptr<Comm> g_world;

Tensor view(std::vector<float>& v) {
  return Tensor(v.data(), DType::f32, kernels::Device::cpu(), {static_cast<int64_t>(v.size())});
}

// x_r[i] = 100 r + i: every rank knows every rank's data.
float value(int r, int64_t i) {
  return static_cast<float>(100 * r) + static_cast<float>(i);
}

TEST(MpiComm, AllReduceSumAndAvg) {
  Comm& c = *g_world;
  const int P = c.size(), me = c.rank();
  std::vector<float> a(37), b(37);
  for (int64_t i = 0; i < 37; ++i)
    a[static_cast<size_t>(i)] = b[static_cast<size_t>(i)] = value(me, i);
  c.all_reduce(view(a), ReduceOp::sum);
  c.all_reduce(view(b), ReduceOp::avg);
  for (int64_t i = 0; i < 37; ++i) {
    double s = 0;
    for (int r = 0; r < P; ++r) s += value(r, i);
    EXPECT_FLOAT_EQ(a[static_cast<size_t>(i)], static_cast<float>(s));
    EXPECT_FLOAT_EQ(b[static_cast<size_t>(i)], static_cast<float>(s / P));
  }
}

// Element-wise maxima of i32 words (the trainer's control word: one 0/1 element per bit, so the
// maximum is the OR over ranks) and of floats.
TEST(MpiComm, AllReduceMax) {
  Comm& c = *g_world;
  const int P = c.size(), me = c.rank();
  std::vector<int32_t> bits(4, 0);
  bits[static_cast<size_t>(me % 4)] = 1;
  c.all_reduce(Tensor(bits.data(), DType::i32, kernels::Device::cpu(), {4}), ReduceOp::max);
  for (int b = 0; b < 4; ++b) EXPECT_EQ(bits[static_cast<size_t>(b)], b < P ? 1 : 0) << b;
  std::vector<float> f = {static_cast<float>(-me), static_cast<float>(me)};
  c.all_reduce(view(f), ReduceOp::max);
  EXPECT_EQ(f[0], 0.0f);
  EXPECT_EQ(f[1], static_cast<float>(P - 1));
}

// Several all-reduces in flight at once (the bucketed gradient reduction), with a blocking
// collective between start and wait: each equals the blocking result; the statistics count them.
TEST(MpiComm, StartedAllReducesCompleteInWaitAll) {
  Comm& c = *g_world;
  const int P = c.size(), me = c.rank();
  const int64_t calls = c.stats(parallel::CollKind::all_reduce).calls;
  std::vector<std::vector<float>> bufs;
  for (int64_t n : {int64_t{5}, int64_t{1000}, int64_t{70000}}) {
    bufs.emplace_back(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) bufs.back()[static_cast<size_t>(i)] = value(me, i);
  }
  c.start_all_reduce(view(bufs[0]), ReduceOp::sum);
  c.start_all_reduce(view(bufs[1]), ReduceOp::avg);
  c.progress();
  c.start_all_reduce(view(bufs[2]), ReduceOp::avg);
  c.barrier();
  c.progress();
  c.wait_all();
  c.wait_all();  // nothing pending: a no-op
  for (size_t k = 0; k < bufs.size(); ++k)
    for (size_t i = 0; i < bufs[k].size(); ++i) {
      double s = 0;
      for (int r = 0; r < P; ++r) s += value(r, static_cast<int64_t>(i));
      EXPECT_FLOAT_EQ(bufs[k][i], static_cast<float>(k == 0 ? s : s / P)) << k << " " << i;
    }
  EXPECT_EQ(c.stats(parallel::CollKind::all_reduce).calls, calls + 3);
  EXPECT_EQ(c.flight().tail(8).find("IN FLIGHT"), std::string::npos);
}

// Ring passes in flight together (as the ring attention's backward has them: the accumulator
// of one step and the next step's K/V), beside a started all-reduce: each lands in its own
// buffer, in the order started, and is done after one wait_all.
TEST(MpiComm, StartedSendRecvsRingTheRanks) {
  Comm& c = *g_world;
  const int P = c.size(), me = c.rank();
  const int next = (me + 1) % P, prev = (me + P - 1) % P;
  const int64_t calls = c.stats(parallel::CollKind::sendrecv).calls;
  std::vector<float> a(3000), b(3000), ra(3000, -1), rb(3000, -1), sum(10, 1);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = value(me, static_cast<int64_t>(i));
    b[i] = -value(me, static_cast<int64_t>(i));
  }
  c.start_sendrecv(view(ra), prev, view(a), next);
  c.start_all_reduce(view(sum), ReduceOp::sum);
  c.start_sendrecv(view(rb), prev, view(b), next);
  c.progress();
  c.wait_all();
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(ra[i], value(prev, static_cast<int64_t>(i))) << i;
    ASSERT_EQ(rb[i], -value(prev, static_cast<int64_t>(i))) << i;
  }
  EXPECT_EQ(sum[0], static_cast<float>(P));
  EXPECT_EQ(c.stats(parallel::CollKind::sendrecv).calls, calls + 2);
  EXPECT_EQ(c.stats(parallel::CollKind::sendrecv).bytes % (2 * 3000 * 4), 0);
  const std::string tail = c.flight().tail(3);
  EXPECT_NE(tail.find(fmt::format("sendrecv 12000 bytes peer {}", next)), std::string::npos)
      << tail;
  EXPECT_EQ(tail.find("IN FLIGHT"), std::string::npos) << tail;
}

TEST(MpiComm, ReduceScatterAndAllGatherWithUnevenBlocks) {
  Comm& c = *g_world;
  const int P = c.size(), me = c.rank();
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{64}, int64_t{1001}}) {
    std::vector<float> in(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) in[static_cast<size_t>(i)] = value(me, i);
    const auto [b, e] = Comm::block_range(n, P, me);
    std::vector<float> out(static_cast<size_t>(std::max<int64_t>(e - b, 0)) + 1);
    Tensor o(out.data(), DType::f32, kernels::Device::cpu(), {e - b});
    c.reduce_scatter(o, view(in), ReduceOp::avg);
    for (int64_t i = b; i < e; ++i) {
      double s = 0;
      for (int r = 0; r < P; ++r) s += value(r, i);
      EXPECT_FLOAT_EQ(out[static_cast<size_t>(i - b)], static_cast<float>(s / P)) << n << " " << i;
    }
    // all_gather, in place: each rank's block already sits in `full`.
    std::vector<float> full(static_cast<size_t>(n), -1.0f);
    for (int64_t i = b; i < e; ++i) full[static_cast<size_t>(i)] = value(me, i);
    Tensor f = view(full);
    c.all_gather(f, f.rows(b, e));
    for (int r = 0; r < P; ++r) {
      const auto [rb, re] = Comm::block_range(n, P, r);
      for (int64_t i = rb; i < re; ++i) EXPECT_EQ(full[static_cast<size_t>(i)], value(r, i));
    }
    // and out of place
    std::vector<float> mine(static_cast<size_t>(e - b) + 1), full2(static_cast<size_t>(n));
    for (int64_t i = b; i < e; ++i) mine[static_cast<size_t>(i - b)] = value(me, i);
    c.all_gather(view(full2), Tensor(mine.data(), DType::f32, kernels::Device::cpu(), {e - b}));
    EXPECT_EQ(full2, full);
  }
}

TEST(MpiComm, AllToAllVWithRaggedCounts) {
  Comm& c = *g_world;
  const int P = c.size(), me = c.rank();
  // Rank r sends (r + s + 1) elements to rank s, valued 1000 r + 10 s + k.
  std::vector<int64_t> sc(static_cast<size_t>(P)), rc(static_cast<size_t>(P));
  std::vector<float> in, out;
  for (int s = 0; s < P; ++s) {
    sc[static_cast<size_t>(s)] = me + s + 1;
    rc[static_cast<size_t>(s)] = s + me + 1;
    for (int k = 0; k < me + s + 1; ++k) in.push_back(static_cast<float>(1000 * me + 10 * s + k));
  }
  out.assign(static_cast<size_t>(std::accumulate(rc.begin(), rc.end(), int64_t{0})), -1.0f);
  c.all_to_all_v(view(out), rc, view(in), sc);
  size_t at = 0;
  for (int r = 0; r < P; ++r)
    for (int k = 0; k < r + me + 1; ++k)
      EXPECT_EQ(out[at++], static_cast<float>(1000 * r + 10 * me + k));
}

TEST(MpiComm, SendRecvBroadcastBarrierSplit) {
  Comm& c = *g_world;
  const int P = c.size(), me = c.rank();
  // A ring: send to the right, receive from the left (even ranks send first: no deadlock).
  std::vector<float> s(5, static_cast<float>(me)), r(5, -1.0f);
  const int right = (me + 1) % P, left = (me + P - 1) % P;
  if (P == 1) {
    r = s;  // no peer to talk to
  } else if (me % 2 == 0) {
    c.send(view(s), right);
    c.recv(view(r), left);
  } else {
    c.recv(view(r), left);
    c.send(view(s), right);
  }
  for (float x : r) EXPECT_EQ(x, static_cast<float>(left));
  std::vector<float> bc(3, me == P - 1 ? 42.0f : 0.0f);
  c.broadcast(view(bc), P - 1);
  for (float x : bc) EXPECT_EQ(x, 42.0f);
  c.barrier();
  // Split into even and odd ranks; reduce within each.
  auto sub = c.split(me % 2, me, "parity");
  EXPECT_EQ(sub->size(), (P + 1 - me % 2) / 2);
  EXPECT_EQ(sub->rank(), me / 2);
  std::vector<float> one(1, static_cast<float>(me));
  sub->all_reduce(view(one), ReduceOp::sum);
  float want = 0;
  for (int q = me % 2; q < P; q += 2) want += static_cast<float>(q);
  EXPECT_EQ(one[0], want);
}

TEST(MpiComm, StatisticsAndFlightRecorder) {
  Comm& c = *g_world;
  auto sub = c.split(0, c.rank(), "stats");
  std::vector<float> v(256, 1.0f);
  for (int i = 0; i < 3; ++i) sub->all_reduce(view(v), ReduceOp::sum);
  sub->barrier();
  EXPECT_EQ(sub->stats(parallel::CollKind::all_reduce).calls, 3);
  EXPECT_EQ(sub->stats(parallel::CollKind::all_reduce).bytes, 3 * 1024);
  EXPECT_EQ(sub->stats(parallel::CollKind::barrier).calls, 1);
  EXPECT_GT(sub->stats(parallel::CollKind::all_reduce).seconds, 0.0);
  EXPECT_EQ(sub->flight().last_seq(), 4u);
  const std::string tail = sub->flight().tail(2);
  EXPECT_NE(tail.find("#3 all_reduce 1024 bytes"), std::string::npos) << tail;
  EXPECT_NE(tail.find("#4 barrier"), std::string::npos) << tail;
  EXPECT_EQ(tail.find("IN FLIGHT"), std::string::npos) << tail;
}

// Device tensors through the MPI communicator (staged through pinned host buffers): what the
// GPU machine runs with several ranks on its one GPU. Skipped without a GPU.
TEST(MpiComm, DeviceTensorsAreStagedThroughTheHost) {
  if (!kernels::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  Comm& c = *g_world;
  const int P = c.size(), me = c.rank();
  const int64_t n = 1000;
  const kernels::Device dev = kernels::Device::cuda(0);
  auto on_device = [&](std::vector<float>& h) {
    Tensor t(kernels::device_malloc(dev, h.size() * sizeof(float)), DType::f32, dev,
             {static_cast<int64_t>(h.size())});
    kernels::copy(t, view(h));
    return t;
  };
  auto back = [&](Tensor t) {
    std::vector<float> h(static_cast<size_t>(t.numel()));
    kernels::copy(view(h), t);
    kernels::device_free(dev, t.data);
    return h;
  };
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = value(me, i);
  Tensor d = on_device(x);
  c.all_reduce(d, ReduceOp::sum);
  const std::vector<float> sum = back(d);
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int r = 0; r < P; ++r) s += value(r, i);
    EXPECT_FLOAT_EQ(sum[static_cast<size_t>(i)], static_cast<float>(s));
  }
  // reduce_scatter into a device block, then all_gather it back in place on the device.
  Tensor full = on_device(x);
  const auto [b, e] = Comm::block_range(n, P, me);
  c.reduce_scatter(full.rows(b, e), full, ReduceOp::sum);
  c.all_gather(full, full.rows(b, e));
  const std::vector<float> g = back(full);
  for (int64_t i = 0; i < n; ++i)
    EXPECT_FLOAT_EQ(g[static_cast<size_t>(i)], sum[static_cast<size_t>(i)]);
}

}  // namespace
}  // namespace sparta::test

int main(int argc, char** argv) {
  return sparta::test::run_mpi_tests(argc, argv, sparta::test::g_world);
}
