// The NCCL communicator with one rank (the GPU machine has one GPU and NCCL refuses two ranks on
// it): bootstrap through MPI, every collective on device tensors, split, statistics, and the
// refusal of host tensors. Run under mpirun -np 1; exits 77 (skipped) without a GPU.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/arena.h"
#include "kernels/check.h"
#include "parallel/mpi_comm.h"
#include "parallel/nccl_comm.h"

namespace sparta::test {
namespace {

using kernels::DType;
using kernels::Tensor;
using parallel::Comm;
using parallel::ReduceOp;

std::unique_ptr<Comm> g_mpi, g_nccl;
const kernels::Device kDev = kernels::Device::cuda(0);

Tensor host(std::vector<float>& v) {
  return Tensor(v.data(), DType::f32, kernels::Device::cpu(), {static_cast<int64_t>(v.size())});
}
Tensor device_copy(std::vector<float>& v) {
  Tensor t(kernels::device_malloc(kDev, v.size() * sizeof(float)), DType::f32, kDev,
           {static_cast<int64_t>(v.size())});
  kernels::copy(t, host(v));
  return t;
}
std::vector<float> take(Tensor t) {
  std::vector<float> h(static_cast<size_t>(t.numel()));
  kernels::copy(host(h), t);
  kernels::device_free(kDev, t.data);
  return h;
}

TEST(NcclComm, CollectivesOnDeviceTensors) {
  Comm& c = *g_nccl;
  ASSERT_EQ(c.size(), 1);
  std::vector<float> x(4097);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.5f;
  Tensor a = device_copy(x);
  c.all_reduce(a, ReduceOp::sum);
  c.all_reduce(a, ReduceOp::avg);
  c.broadcast(a, 0);
  c.barrier();
  EXPECT_EQ(take(a), x);
  Tensor in = device_copy(x), out = device_copy(x);
  kernels::zero(out);
  c.reduce_scatter(out, in, ReduceOp::sum);
  EXPECT_EQ(take(out), x);
  Tensor g = device_copy(x), src = device_copy(x);
  kernels::zero(g);
  c.all_gather(g, src);
  EXPECT_EQ(take(g), x);
  Tensor s = device_copy(x), r = device_copy(x);
  kernels::zero(r);
  c.all_to_all_v(r, {4097}, s, {4097});
  EXPECT_EQ(take(r), x);
  take(in);
  take(src);
  take(s);
  auto sub = c.split(0, 0, "sub");
  std::vector<float> one(1, 3.0f);
  Tensor o = device_copy(one);
  sub->all_reduce(o, ReduceOp::sum);
  EXPECT_EQ(take(o), one);
  EXPECT_EQ(c.stats(parallel::CollKind::all_reduce).calls, 2);
  EXPECT_EQ(c.flight().last_seq(), 8u);
}

// The bucketed gradient reduction's calls: on NCCL a started all-reduce completes at once.
TEST(NcclComm, StartedAllReduceCompletesByWaitAll) {
  Comm& c = *g_nccl;
  std::vector<float> x(1000, 2.0f);
  Tensor a = device_copy(x);
  c.start_all_reduce(a, ReduceOp::avg);
  c.progress();
  c.wait_all();
  EXPECT_EQ(take(a), x);
  EXPECT_EQ(c.flight().tail(4).find("IN FLIGHT"), std::string::npos);
}

TEST(NcclComm, HostTensorsAreRefused) {
  std::vector<float> x(3, 1.0f);
  try {
    g_nccl->all_reduce(host(x), ReduceOp::sum);
    ADD_FAILURE() << "accepted a host tensor";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NCCL moves device memory only"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace sparta::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (!sparta::kernels::cuda_available()) return 77;  // ctest: skipped
  sparta::parallel::MpiRuntime::init(&argc, &argv);
  sparta::test::g_mpi = sparta::parallel::MpiRuntime::world();
  sparta::test::g_nccl = sparta::parallel::make_nccl_comm(*sparta::test::g_mpi, 0, "nccl-test");
  const int rc = RUN_ALL_TESTS();
  sparta::test::g_nccl.reset();
  sparta::test::g_mpi.reset();
  sparta::parallel::MpiRuntime::finalize();
  return rc;
}
