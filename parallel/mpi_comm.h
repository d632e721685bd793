// MPI communicators (Open MPI) and the job-wide failure protocol.
//
// Data: host tensors go to MPI directly; device tensors are staged through page-locked host
// buffers (grown on first use, then reused: no allocation in a steady-state step), since the
// Debian/Ubuntu Open MPI is not CUDA-aware. Every collective is issued non-blocking and then
// polled, so a rank waiting in a collective can notice two things:
//
// 1. A failure notice. When a rank fails (an exception reaches the program's main), fail_job()
//    prints its error and its flight-recorder tail, sends "exit code + message" to every other
//    rank on a private control communicator, and waits; a rank that finds the notice while
//    polling prints "rank R failed: <message>" with its own flight-recorder tail and aborts the
//    job with the failing rank's exit code. A rank busy computing sees the notice at its next
//    collective.
// 2. No progress. A collective that does not complete within the timeout (parallel.timeout_s,
//    default 60 s) means a peer died or is stuck elsewhere: the rank prints which collective of
//    which communicator it is in, with the flight-recorder tail, and aborts the job (exit 1).
//
// Either way no rank hangs: the job ends within the timeout, with a message on every rank that
// notices. Polling sleeps briefly between tests (after a short spin) so that waiting ranks do not
// steal cores from computing ones on an oversubscribed machine.
#pragma once

#include <memory>
#include <string>

#include "parallel/comm.h"

namespace sparta::parallel {

// Process-wide MPI state. init() before any communicator (it is a no-op when the program was
// not started by an MPI launcher and world size is 1); finalize() at a clean exit.
class MpiRuntime {
 public:
  // Bounded start-up: when MPI_Init does not return within `init_timeout_s` (> 0) seconds (the
  // launcher's PMIx server or another rank never came up), a watchdog thread prints why on this
  // rank, naming `who` (e.g. "rank 1 of 2, launched by mpirun"), and exits 1. Every rank that
  // started runs its own watchdog, so each one says so; 0 waits for ever.
  static void init(int* argc, char*** argv, double init_timeout_s = 0, const std::string& who = "");
  static bool active();
  static void set_timeout(double seconds);  // for every collective from now on
  static double timeout();
  static void finalize();
  // Announces this rank's failure to the job and ends it (see the header comment), printing the
  // flight-recorder tail of every MPI communicator this process created.
  [[noreturn]] static void fail_job(int exit_code, const std::string& message);
  // The world communicator (MPI_COMM_WORLD duplicated, so library traffic never mixes with ours).
  static std::unique_ptr<Comm> world();

  // For other backends' wait loops (NCCL): act on a pending failure notice, if any; end the job
  // with a diagnosis (every registered flight recorder printed); and register a recorder.
  static void poll_failures();
  [[noreturn]] static void abort_job(int exit_code, const std::string& message);
  static void register_recorder(const std::string& name, std::shared_ptr<const FlightRecorder> r);
};

}  // namespace sparta::parallel
