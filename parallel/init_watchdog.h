// Bounded start-up: a blocking initialisation (MPI_Init, ncclCommInitRank) that waits for every
// rank can wait for ever when one never arrives. An InitWatchdog lives around such a call; if
// it is still alive `timeout_s` later, its thread writes `message` to stderr (write(2) only)
// and ends the process with exit 1 (_exit: the initialisation holds locks nothing may touch).
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace sparta::parallel {

class InitWatchdog {
 public:
  // timeout_s <= 0: no bound (no thread).
  InitWatchdog(double timeout_s, std::string message);
  ~InitWatchdog();  // the call returned in time: the thread ends
  InitWatchdog(const InitWatchdog&) = delete;
  InitWatchdog& operator=(const InitWatchdog&) = delete;

 private:
  std::string message_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace sparta::parallel
