// The main() of the tests under mpirun (ctest label mpi): MPI is started, `world` holds the
// world communicator for the tests, only rank 0 prints gtest's results, and the exit code is 1
// when a test failed on any rank.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "kernels/tensor.h"
#include "parallel/comm.h"
#include "parallel/mpi_comm.h"

namespace sparta::test {

inline int run_mpi_tests(int argc, char** argv, std::unique_ptr<parallel::Comm>& world) {
  ::testing::InitGoogleTest(&argc, argv);
  parallel::MpiRuntime::init(&argc, &argv);
  world = parallel::MpiRuntime::world();
  if (world->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int rc = RUN_ALL_TESTS();
  std::vector<float> worst(1, static_cast<float>(rc));
  world->all_reduce(kernels::Tensor(worst.data(), kernels::DType::f32, kernels::Device::cpu(), {1}),
                    parallel::ReduceOp::sum);
  world.reset();
  parallel::MpiRuntime::finalize();
  return worst[0] > 0 ? 1 : 0;
}

}  // namespace sparta::test
