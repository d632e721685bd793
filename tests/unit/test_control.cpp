// The control word (trainer/control.h): trigger-file words, what a word means (actions, sources,
// exit codes), real signals through the installed handlers, and one process's agreement reading
// and removing the trigger file. Multi-rank agreement runs in tests/e2e/control_test.sh.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "kernels/check.h"
#include "trainer/config.h"
#include "trainer/control.h"
#include "trainer/control_plane.h"

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

TEST(Control, AgreeRecordsEachRanksClock) {
  parallel::SelfComm world;
  Control c(world, 0, "");
  EXPECT_EQ(c.last_seen().at(0), 0.0);
  const double before = static_cast<double>(std::time(nullptr));
  (void)c.agree();
  EXPECT_GE(c.last_seen()[0], before);
  EXPECT_LE(c.last_seen()[0], before + 5);
}

// The endpoint the plane is handed: records what it was started with (the real gRPC server is
// tested in test_control_service and end to end in tests/e2e/grpc_test.sh).
struct RecordingEndpoint final : monitoring::ControlEndpoint {
  monitoring::ControlServerOptions opt;
  bool* draining;
  std::string address() const override { return "127.0.0.1:4242"; }
  void set_draining() override { *draining = true; }
  void stop() override {}
};

TEST(ControlPlane, RequestsPostBitsAndAnswerTheStep) {
  Config cfg = load_config("", {"train.steps=100"});
  launch::World world;
  world.size = 2;
  ControlPlane plane(cfg, world, "", "tp1 cp1 ep1 dp2 zero0", nullptr, nullptr);
  EXPECT_FALSE(plane.serving());
  (void)ControlInbox::take();
  plane.set_state("training", 7);
  EXPECT_EQ(plane.request(monitoring::ControlRequest::checkpoint), 8);  // the step in progress
  EXPECT_EQ(ControlInbox::take().bits, kCheckpoint | kFromRpc);
  plane.set_state("evaluating", 8);
  EXPECT_EQ(plane.request(monitoring::ControlRequest::stop_after_checkpoint), 8);
  EXPECT_EQ(ControlInbox::take().bits, kCheckpoint | kStop | kFromRpc);
  EXPECT_EQ(plane.request(monitoring::ControlRequest::stop_now), 8);
  EXPECT_EQ(ControlInbox::take().bits, kStopNow | kFromRpc);
  const double now = static_cast<double>(std::time(nullptr));
  plane.on_heartbeats({now - 3, 0});
  const auto st = plane.status();
  EXPECT_EQ(st.state, "evaluating");
  EXPECT_EQ(st.total_steps, 100);
  EXPECT_EQ(st.layout, "tp1 cp1 ep1 dp2 zero0");
  ASSERT_EQ(st.heartbeats.size(), 2u);
  EXPECT_EQ(st.heartbeats[1].rank, 1);
  EXPECT_NEAR(st.heartbeats[0].age_s, 3.0, 1.5);
  EXPECT_EQ(st.heartbeats[1].age_s, -1);  // rank 1 not heard from yet
  plane.drain(8, "stop");
  plane.set_state("training", 9);  // a drained run does not go back
  EXPECT_EQ(plane.status().state, "draining");
  plane.finish(8, 0);
  EXPECT_EQ(plane.status().state, "finished");
}

TEST(ControlPlane, StartsTheEndpointOnRankZeroWithTheTokenAndWritesTheAddress) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("sparta_plane_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "token") << "abc123\n";
  bool draining = false;
  monitoring::ControlServerOptions seen;
  const monitoring::ControlEndpointFactory factory = [&](const monitoring::ControlServerOptions& o,
                                                         monitoring::ControlBackend&,
                                                         monitoring::EventLog&) {
    seen = o;
    auto e = std::make_unique<RecordingEndpoint>();
    e->draining = &draining;
    return std::unique_ptr<monitoring::ControlEndpoint>(std::move(e));
  };
  const std::string run = (dir / "run").string();
  launch::World world;
  {
    Config cfg = load_config(
        "", {"control.grpc_bind=0.0.0.0:0", "control.token_file=" + (dir / "token").string()});
    ControlPlane plane(cfg, world, run, "", nullptr, factory);
    EXPECT_TRUE(plane.serving());
    EXPECT_EQ(seen.bind, "0.0.0.0:0");
    EXPECT_EQ(seen.token, "abc123");  // the file's text, its newline dropped
    std::ifstream in(dir / "run" / "control.address");
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(line, "127.0.0.1:4242");
    plane.drain(3, "stop");
    EXPECT_TRUE(draining);
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "run" / "control.address"));  // gone with it
  world.rank = 1;                                                          // only rank 0 serves
  EXPECT_FALSE(ControlPlane(load_config("", {}), world, run, "", nullptr, factory).serving());
  world.rank = 0;
  EXPECT_FALSE(
      ControlPlane(load_config("", {"control.grpc_bind=none"}), world, run, "", nullptr, factory)
          .serving());
  const auto usage = [&](const std::vector<std::string>& sets, const std::string& needle) {
    try {
      ControlPlane p(load_config("", sets), world, run, "", nullptr, factory);
      ADD_FAILURE() << "expected a usage error: " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.exit_code(), 2);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  usage({"control.grpc_bind=0.0.0.0:0"}, "is not a loopback address: set [control] token_file");
  usage({"control.token_file=" + (dir / "none").string()}, "cannot be read");
  std::ofstream(dir / "empty") << "\n";
  usage({"control.token_file=" + (dir / "empty").string()}, "is empty");
  std::ofstream(dir / "two") << "a b\n";
  usage({"control.token_file=" + (dir / "two").string()}, "one word");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sparta::trainer
