// Failure injection for the distributed-runtime tests (tests/mpi/layouts.sh): the environment
// variable SPARTA_TEST_FAIL = "RANK:STEP" makes that rank throw at that (1-based) step,
// "RANK:STEP:hang" makes it stop responding there instead.
#pragma once

#include <cstdint>

namespace sparta::trainer {

class FaultInjection {
 public:
  // Reads SPARTA_TEST_FAIL for this rank; a malformed value is a usage error.
  static FaultInjection from_env(int world_rank);
  // At the end of step `step` (0-based) on the chosen rank: throw, or hang.
  void at_step(int64_t step) const;

 private:
  int64_t step_ = -1;
  bool hang_ = false;
};

}  // namespace sparta::trainer
