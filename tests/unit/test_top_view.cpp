// sparta-top's screen (monitoring/top_view.h) from a snapshot: what each line shows.
#include <gtest/gtest.h>

#include "monitoring/top_view.h"

namespace sparta::monitoring {
namespace {

bool has_line(const std::vector<std::string>& lines, const std::string& text) {
  for (const auto& l : lines)
    if (l.find(text) != std::string::npos) return true;
  return false;
}

TEST(TopView, SparklineScalesMinToMax) {
  EXPECT_EQ(sparkline({1, 2, 3}, 10, false), "_=#");    // 0, 3.5 -> 4, 7 of "_.-~=+*#"
  EXPECT_EQ(sparkline({4, 4}, 10, false), "~~");        // flat: the middle
  EXPECT_EQ(sparkline({9, 1, 2, 3}, 3, false), "_=#");  // the newest `width`
  EXPECT_EQ(sparkline({1, 2}, 10, true), "\u2581\u2588");
  EXPECT_EQ(sparkline({}, 10, true), "");
}

TEST(TopView, ScreenShowsStepLossSpeedPhasesExpertsAndRanks) {
  TopSnapshot s;
  s.unicode = false;
  s.status.state = "training";
  s.status.step = 250;
  s.status.total_steps = 1000;
  s.status.eta_s = 95;
  s.status.loss = 2.34567;
  s.status.val_loss = 2.5;
  s.status.tokens_per_s = 12345;
  s.status.mfu = 0.25;
  s.status.last_checkpoint_step = 200;
  s.status.layout = "tp1 cp1 ep2 dp1 zero0";
  s.status.run_dir = "/runs/a";
  s.status.heartbeats = {{0, 0.2}, {1, -1}};
  s.losses = {3, 2.5, 2.3};
  s.metrics = {
      {"sparta_phase_seconds_total", {{"phase", "forward"}}, 3},
      {"sparta_phase_seconds_total", {{"phase", "comm_wait"}}, 1},
      {"sparta_expert_tokens_step", {{"layer", "1"}, {"block", "moe"}, {"expert", "0"}}, 8},
      {"sparta_expert_tokens_step", {{"layer", "1"}, {"block", "moe"}, {"expert", "1"}}, 0},
      {"sparta_dead_experts", {{"layer", "1"}, {"block", "moe"}}, 1}};
  const auto lines = render_top(s, 100);
  EXPECT_TRUE(has_line(lines, "/runs/a  [training]  tp1 cp1 ep2 dp1 zero0"));
  EXPECT_TRUE(has_line(lines, "step      250 / 1000 (25.0%)  ETA 1m35s"));
  EXPECT_TRUE(has_line(lines, "loss      2.3457  #-_"));  // 3, 2.5, 2.3 -> levels 7, 2, 0
  EXPECT_TRUE(has_line(lines, "val loss  2.5000"));
  EXPECT_TRUE(has_line(lines, "12345 tokens/s  MFU 25.0%"));
  EXPECT_TRUE(has_line(lines, "checkpoint step 200"));
  EXPECT_TRUE(has_line(lines, "forward 75% comm_wait 25%"));
  EXPECT_TRUE(has_line(lines, "comm      25.0% of the step time"));
  EXPECT_TRUE(has_line(lines, "L1  moe      |@ | dead 1"));
  EXPECT_TRUE(has_line(lines, "ranks     0:0.2s 1:-"));
  for (const auto& l : render_top(s, 20)) EXPECT_LE(l.size(), 20u);
}

}  // namespace
}  // namespace sparta::monitoring
