#include "trainer/fault_injection.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "kernels/check.h"

namespace sparta::trainer {

FaultInjection FaultInjection::from_env(int world_rank) {
  FaultInjection f;
  const char* v = std::getenv("SPARTA_TEST_FAIL");
  if (!v) return f;
  int rank = -1;
  long long s = -1;
  char mode[8] = {};
  const int got = std::sscanf(v, "%d:%lld:%7s", &rank, &s, mode);
  if (got < 2 || s < 1 || (got == 3 && std::string(mode) != "hang"))
    SPARTA_USAGE_ERROR("SPARTA_TEST_FAIL='{}' must be RANK:STEP or RANK:STEP:hang (STEP >= 1)", v);
  if (rank == world_rank) {
    f.step_ = s - 1;
    f.hang_ = got == 3;
  }
  return f;
}

void FaultInjection::at_step(int64_t step) const {
  if (step != step_) return;
  if (hang_) std::this_thread::sleep_for(std::chrono::hours(1));  // a stuck rank
  throw Error(ErrorKind::internal,
              fmt::format("injected failure at step {} (SPARTA_TEST_FAIL)", step + 1));
}

}  // namespace sparta::trainer
