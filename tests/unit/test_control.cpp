// The control word (trainer/control.h): trigger-file words, what a word means (actions, sources,
// exit codes), real signals through the installed handlers, and one process's agreement reading
// and removing the trigger file. Multi-rank agreement runs in tests/e2e/control_test.sh.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "kernels/check.h"
#include "trainer/config.h"
#include "trainer/control.h"

namespace sparta::trainer {
namespace {

TEST(Control, TriggerFileWords) {
  std::string bad;
  EXPECT_EQ(parse_control_words("checkpoint\n", &bad), kCheckpoint);
  EXPECT_EQ(parse_control_words("stop", &bad), kCheckpoint | kStop);
  EXPECT_EQ(parse_control_words("  dump stop_now # why\n\n", &bad), kDump | kStopNow);
  EXPECT_TRUE(bad.empty());
  EXPECT_EQ(parse_control_words("# only a comment", &bad), 0u);
  EXPECT_EQ(parse_control_words("checkpoint\nrestart\nfoo", &bad), kCheckpoint);
  EXPECT_EQ(bad, "restart");  // the first unknown word
}

TEST(Control, WordActionsSourcesAndExitCodes) {
  ControlWord w;
  EXPECT_FALSE(w.any());
  EXPECT_EQ(w.exit_code(), 0);
  w.bits = kCheckpoint | kStop | kRequeue | kFromSignal;
  w.signal = SIGUSR1;
  EXPECT_TRUE(w.wants_boundary());
  EXPECT_EQ(w.actions(), (std::vector<std::string>{"checkpoint", "stop"}));
  EXPECT_EQ(w.sources(), (std::vector<std::string>{"SIGUSR1"}));
  EXPECT_EQ(w.exit_code(), kExitRequeue);
  w.bits = kCheckpoint | kStop | kFromFile;  // an operator's stop: done, no requeue
  EXPECT_EQ(w.exit_code(), 0);
  w.bits = kStopNow | kFromRpc;
  EXPECT_EQ(w.exit_code(), kExitStoppedUnsaved);
  EXPECT_EQ(w.sources(), (std::vector<std::string>{"rpc"}));
  w.bits = kStopNow | kCheckpoint | kStop | kRequeue | kFromSignal | kFromRpc;  // save wins
  EXPECT_EQ(w.exit_code(), kExitRequeue);
  w.bits = kDump | kFromFile;
  EXPECT_FALSE(w.wants_boundary());
  EXPECT_EQ(w.exit_code(), 0);
}

TEST(Control, SignalNamesAndBadSignal) {
  EXPECT_EQ(signal_number("USR1"), SIGUSR1);
  EXPECT_EQ(signal_number("USR2"), SIGUSR2);
  EXPECT_EQ(signal_number("HUP"), SIGHUP);
  EXPECT_EQ(signal_number("none"), 0);
  EXPECT_EQ(signal_name(SIGTERM), "SIGTERM");
  try {
    signal_number("KILL");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), 2);
    EXPECT_NE(std::string(e.what()).find("expected USR1, USR2, HUP or none"), std::string::npos);
  }
}

TEST(Control, ConfigRefusesAnUnknownSignal) {
  try {
    load_config("", {"control.checkpoint_signal=TERM"});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), 2);
    EXPECT_NE(std::string(e.what()).find("checkpoint_signal"), std::string::npos) << e.what();
  }
}

// Real signals: the handler only sets bits, the next take() sees them once; the previous
// disposition comes back when the handlers go.
TEST(Control, SignalsSetBitsAndHandlersAreRestored) {
  (void)ControlInbox::take();
  const auto before = ControlInbox::signal_counts();
  {
    SignalHandlers h(SIGUSR2, /*announce=*/false);
    ASSERT_EQ(::raise(SIGUSR2), 0);
    const ControlWord w = ControlInbox::take();
    EXPECT_EQ(w.bits, kCheckpoint | kStop | kRequeue | kFromSignal);
    EXPECT_EQ(w.signal, SIGUSR2);
    EXPECT_FALSE(ControlInbox::take().any());  // taken once
    ASSERT_EQ(::raise(SIGTERM), 0);            // the first SIGTERM: the same request
    EXPECT_EQ(ControlInbox::take().signal, SIGTERM);
    const auto after = ControlInbox::signal_counts();
    EXPECT_EQ(after[0], before[0] + 1);  // SIGTERM
    EXPECT_EQ(after[2], before[2] + 1);  // SIGUSR2
  }
  struct sigaction now {};
  ASSERT_EQ(::sigaction(SIGUSR2, nullptr, &now), 0);
  EXPECT_EQ(now.sa_handler, SIG_DFL);
  ASSERT_EQ(::sigaction(SIGTERM, nullptr, &now), 0);
  EXPECT_EQ(now.sa_handler, SIG_DFL);
}

TEST(Control, SecondSigtermExitsAtOnce) {
  EXPECT_EXIT(
      {
        SignalHandlers h(SIGUSR1, false);
        ::raise(SIGTERM);
        ::raise(SIGTERM);
        std::exit(0);  // not reached
      },
      ::testing::ExitedWithCode(kExitSecondTerm), "second SIGTERM");
}

TEST(Control, AgreeReadsAndRemovesTheTriggerFile) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("sparta_control_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string file = (dir / "control.request").string();
  parallel::SelfComm world;
  Control c(world, 0, file);
  (void)ControlInbox::take();
  EXPECT_FALSE(c.agree().any());
  std::ofstream(file) << "dump\ncheckpoint\n";
  const ControlWord w = c.agree();
  EXPECT_EQ(w.bits, kDump | kCheckpoint | kFromFile);
  EXPECT_FALSE(std::filesystem::exists(file));
  EXPECT_FALSE(c.agree().any());
  ControlInbox::post(kStopNow | kFromRpc);  // an RPC thread's request
  EXPECT_EQ(c.agree().bits, kStopNow | kFromRpc);
  Control other_rank(world, 1, file);  // only rank 0 reads the file
  std::ofstream(file) << "stop\n";
  EXPECT_FALSE(other_rank.agree().any());
  EXPECT_TRUE(std::filesystem::exists(file));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sparta::trainer
