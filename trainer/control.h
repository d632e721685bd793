// Steering a running job: one control word the ranks agree on once per step (and once per
// evaluation batch), README "Controlling a run".
//
// Requests arrive asynchronously: a signal, a line in the trigger file, an RPC. None of them acts:
// each only sets bits in this process's ControlInbox (lock-free atomics, async-signal-safe). At
// the agreed points every rank calls Control::agree(), which all-reduces the pending bits (MAX of
// 0/1 elements = OR over ranks) on the world communicator, so every rank sees the same word and
// acts at the same step; nothing runs inside a signal handler except the flag and one write(2).
//
// Exit codes of a run that was steered (launch/program.h has the rest):
//   0   stopped after a checkpoint as an operator asked (trigger file, RPC)
//   75  checkpointed on a signal (SIGTERM, or [control] checkpoint_signal): requeue me
//   76  stopped without saving as an operator asked (the newest checkpoint is older)
//   143 a second SIGTERM: exit at once, nothing saved
#pragma once

#include <signal.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "parallel/comm.h"

namespace sparta::trainer {

// The bits of the word. Actions first, then where they came from.
enum ControlBit : uint32_t {
  kCheckpoint = 1u << 0,  // save a checkpoint at the end of this step
  kStop = 1u << 1,        // stop after that checkpoint
  kStopNow = 1u << 2,     // stop without saving
  kDump = 1u << 3,        // write diagnostics (flight recorders, phase times) on every rank
  kRequeue = 1u << 4,     // a signal asked: exit 75 so that the batch script requeues the job
  kFromSignal = 1u << 5,
  kFromFile = 1u << 6,
  kFromRpc = 1u << 7,
};
constexpr int kControlBits = 8;

constexpr int kExitRequeue = 75, kExitStoppedUnsaved = 76, kExitSecondTerm = 143;

// What one agreement decided.
struct ControlWord {
  uint32_t bits = 0;
  int signal = 0;  // the highest signal number any rank received since the last agreement
  bool any() const { return bits != 0; }
  bool has(ControlBit b) const { return (bits & b) != 0; }
  bool wants_boundary() const { return (bits & (kCheckpoint | kStop | kStopNow)) != 0; }
  // "checkpoint+stop", "dump", ... and "signal SIGUSR1", "file", "rpc".
  std::vector<std::string> actions() const;
  std::vector<std::string> sources() const;
  int exit_code() const;  // of a stop: 75, 0 or 76 (see above); 0 when not a stop
};

// This process's pending requests. Process-wide because signals are.
class ControlInbox {
 public:
  static void post(uint32_t bits);                  // any thread
  static void post_signal(uint32_t bits, int sig);  // from a signal handler
  static ControlWord take();                        // clears what it returns
  // Signals received since the process started: SIGTERM, SIGUSR1, SIGUSR2, SIGHUP
  // (monitoring::kSignalNames order).
  static std::array<int, 4> signal_counts();
};

// Installs the handlers: `checkpoint_signal` (0: none) and SIGTERM post checkpoint + stop +
// requeue; a second SIGTERM calls _exit(143). `announce`: say so on stderr (rank 0). Restores
// the previous handlers when destroyed.
class SignalHandlers {
 public:
  SignalHandlers(int checkpoint_signal, bool announce);
  ~SignalHandlers();
  SignalHandlers(const SignalHandlers&) = delete;
  SignalHandlers& operator=(const SignalHandlers&) = delete;

 private:
  int checkpoint_signal_ = 0;
  struct sigaction saved_signal_ {
  }, saved_term_{};
};

// "USR1" -> SIGUSR1, "none" -> 0 (a usage error for anything else).
int signal_number(const std::string& name);
std::string signal_name(int sig);  // SIGUSR1 -> "SIGUSR1"

// Parses the trigger file's words (one per line: checkpoint, stop, stop_now, dump; '#' starts a
// comment) into bits; an unknown word is returned in `bad`.
uint32_t parse_control_words(const std::string& text, std::string* bad);

class Control {
 public:
  // world: every rank's communicator (host memory). trigger_file: "" for none; rank 0 reads and
  // removes it at each agreement.
  Control(parallel::Comm& world, int rank, std::string trigger_file);
  // Collective over the world: every rank calls it at the same points. It also gathers each
  // rank's wall clock at the call (the heartbeat: a rank that stops reaching agreements ages).
  ControlWord agree();
  const std::string& trigger_file() const { return trigger_file_; }
  // Unix seconds at which each rank made the newest agreement (its own clock; 0 before one).
  const std::vector<double>& last_seen() const { return seen_; }

 private:
  uint32_t read_trigger_file();
  parallel::Comm& world_;
  int rank_;
  std::string trigger_file_;
  // One 0/1 element per bit, the signal, then (seconds, milliseconds) of each rank's clock.
  std::vector<int32_t> buf_;
  std::vector<double> seen_;
};

}  // namespace sparta::trainer
