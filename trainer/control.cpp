#include "trainer/control.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "kernels/check.h"

namespace sparta::trainer {

namespace {
// Lock-free on every platform we build for (static_asserts below), hence async-signal-safe.
std::atomic<uint32_t> g_bits{0};
std::atomic<int> g_signal{0};
std::array<std::atomic<int>, 4> g_signal_counts{};  // TERM, USR1, USR2, HUP
std::atomic<int> g_terms{0};
std::atomic<bool> g_announce{false};
static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<int>::is_always_lock_free);

template <size_t N>
void write_stderr(const char (&msg)[N]) {
  const ssize_t r = ::write(STDERR_FILENO, msg, N - 1);
  (void)r;  // nothing to do about a failed diagnostic write inside a handler
}

void raise_max(std::atomic<int>& a, int v) {
  int prev = a.load();
  while (v > prev && !a.compare_exchange_weak(prev, v)) {
  }
}

extern "C" void on_control_signal(int sig) {
  if (sig == SIGTERM && g_terms.fetch_add(1) >= 1) {
    write_stderr("sparta-train: second SIGTERM: exiting at once, nothing saved (exit 143)\n");
    ::_exit(kExitSecondTerm);
  }
  const int slot = sig == SIGTERM ? 0 : sig == SIGUSR1 ? 1 : sig == SIGUSR2 ? 2 : 3;
  g_signal_counts[static_cast<size_t>(slot)].fetch_add(1);
  raise_max(g_signal, sig);
  g_bits.fetch_or(kCheckpoint | kStop | kRequeue | kFromSignal);
  if (!g_announce.load()) return;
  if (sig == SIGTERM)
    write_stderr(
        "sparta-train: SIGTERM: checkpoint at the next step boundary, then exit 75 (a second "
        "SIGTERM exits at once)\n");
  else
    write_stderr(
        "sparta-train: checkpoint signal: checkpoint at the next step boundary, then "
        "exit 75\n");
}

void install(int sig, struct sigaction* saved) {
  struct sigaction sa {};
  sa.sa_handler = on_control_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // interrupted reads and waits resume; the flag is read at the step
  SPARTA_CHECK(::sigaction(sig, &sa, saved) == 0, "sigaction({}) failed: {}", sig,
               std::strerror(errno));
}
}  // namespace

void ControlInbox::post(uint32_t bits) {
  g_bits.fetch_or(bits);
}

void ControlInbox::post_signal(uint32_t bits, int sig) {
  raise_max(g_signal, sig);
  g_bits.fetch_or(bits);
}

ControlWord ControlInbox::take() {
  ControlWord w;
  w.bits = g_bits.exchange(0);
  w.signal = g_signal.exchange(0);
  return w;
}

std::array<int, 4> ControlInbox::signal_counts() {
  std::array<int, 4> out{};
  for (size_t i = 0; i < out.size(); ++i) out[i] = g_signal_counts[i].load();
  return out;
}

SignalHandlers::SignalHandlers(int checkpoint_signal, bool announce)
    : checkpoint_signal_(checkpoint_signal) {
  g_terms = 0;
  g_announce = announce;
  install(SIGTERM, &saved_term_);
  if (checkpoint_signal_ != 0 && checkpoint_signal_ != SIGTERM)
    install(checkpoint_signal_, &saved_signal_);
}

SignalHandlers::~SignalHandlers() {
  ::sigaction(SIGTERM, &saved_term_, nullptr);
  if (checkpoint_signal_ != 0 && checkpoint_signal_ != SIGTERM)
    ::sigaction(checkpoint_signal_, &saved_signal_, nullptr);
}

int signal_number(const std::string& name) {
  if (name == "USR1") return SIGUSR1;
  if (name == "USR2") return SIGUSR2;
  if (name == "HUP") return SIGHUP;
  if (name == "none") return 0;
  SPARTA_USAGE_ERROR("control.checkpoint_signal = \"{}\": expected USR1, USR2, HUP or none", name);
}

std::string signal_name(int sig) {
  switch (sig) {
    case SIGUSR1:
      return "SIGUSR1";
    case SIGUSR2:
      return "SIGUSR2";
    case SIGHUP:
      return "SIGHUP";
    case SIGTERM:
      return "SIGTERM";
    default:
      return fmt::format("signal {}", sig);
  }
}

uint32_t parse_control_words(const std::string& text, std::string* bad) {
  uint32_t bits = 0;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    std::string w;
    while (words >> w) {
      if (w == "checkpoint")
        bits |= kCheckpoint;
      else if (w == "stop")
        bits |= kCheckpoint | kStop;
      else if (w == "stop_now")
        bits |= kStopNow;
      else if (w == "dump")
        bits |= kDump;
      else if (bad && bad->empty())
        *bad = w;
    }
  }
  return bits;
}

std::vector<std::string> ControlWord::actions() const {
  std::vector<std::string> out;
  if (has(kCheckpoint)) out.emplace_back("checkpoint");
  if (has(kStop)) out.emplace_back("stop");
  if (has(kStopNow)) out.emplace_back("stop_now");
  if (has(kDump)) out.emplace_back("dump");
  return out;
}

std::vector<std::string> ControlWord::sources() const {
  std::vector<std::string> out;
  if (has(kFromSignal)) out.push_back(signal > 0 ? signal_name(signal) : "signal");
  if (has(kFromFile)) out.emplace_back("file");
  if (has(kFromRpc)) out.emplace_back("rpc");
  return out;
}

// A checkpoint is never harmful, so a stop after one wins over a stop without one.
int ControlWord::exit_code() const {
  if (has(kStop)) return has(kRequeue) ? kExitRequeue : 0;
  if (has(kStopNow)) return kExitStoppedUnsaved;
  return 0;
}

Control::Control(parallel::Comm& world, int rank, std::string trigger_file)
    : world_(world),
      rank_(rank),
      trigger_file_(std::move(trigger_file)),
      buf_(static_cast<size_t>(kControlBits + 1 + 2 * world.size()), 0),
      seen_(static_cast<size_t>(world.size()), 0.0) {}

uint32_t Control::read_trigger_file() {
  if (trigger_file_.empty() || ::access(trigger_file_.c_str(), F_OK) != 0) return 0;
  std::ifstream in(trigger_file_);
  std::stringstream text;
  text << in.rdbuf();
  std::remove(trigger_file_.c_str());
  std::string bad;
  const uint32_t bits = parse_control_words(text.str(), &bad);
  if (!bad.empty())
    fmt::print(stderr,
               "sparta-train: warning: {}: unknown word '{}' ignored (expected checkpoint, stop, "
               "stop_now or dump)\n",
               trigger_file_, bad);
  return bits == 0 ? 0 : bits | kFromFile;
}

ControlWord Control::agree() {
  ControlWord w = ControlInbox::take();
  if (rank_ == 0) w.bits |= read_trigger_file();
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (world_.size() == 1) {
    seen_[0] = now;
    return w;
  }
  std::fill(buf_.begin(), buf_.end(), 0);
  for (int b = 0; b < kControlBits; ++b) buf_[static_cast<size_t>(b)] = (w.bits >> b) & 1u;
  buf_[kControlBits] = w.signal;
  // Only this rank writes its slot (the others stay 0), so MAX gathers every rank's clock.
  const size_t slot = static_cast<size_t>(kControlBits + 1 + 2 * rank_);
  buf_[slot] = static_cast<int32_t>(now);
  buf_[slot + 1] = static_cast<int32_t>((now - std::floor(now)) * 1000.0);
  world_.all_reduce(kernels::Tensor(buf_.data(), kernels::DType::i32, kernels::Device::cpu(),
                                    {static_cast<int64_t>(buf_.size())}),
                    parallel::ReduceOp::max);
  ControlWord agreed;
  for (int b = 0; b < kControlBits; ++b)
    if (buf_[static_cast<size_t>(b)] != 0) agreed.bits |= 1u << b;
  agreed.signal = buf_[kControlBits];
  for (size_t r = 0; r < seen_.size(); ++r) {
    const size_t at = static_cast<size_t>(kControlBits + 1) + 2 * r;
    seen_[r] = static_cast<double>(buf_[at]) + static_cast<double>(buf_[at + 1]) / 1000.0;
  }
  return agreed;
}

}  // namespace sparta::trainer
