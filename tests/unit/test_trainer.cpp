// The training loop: learning happens, runs are deterministic, gradient accumulation equals the
// larger batch, the schedule has its documented shape, and bad runtime choices are refused.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/common/data_util.h"
#include "tests/common/trainer_util.h"
#include "trainer/config.h"
#include "trainer/trainer.h"

namespace sparta::test {
namespace {

using trainer::Config;
using trainer::RunOptions;
using trainer::Trainer;

Config tiny(const std::string& data_dir, std::vector<std::string> extra = {}) {
  extra.insert(extra.begin(), "optim.lr=1e-2");
  return tiny_config(data_dir, extra);
}

RunOptions quiet() { return quiet_run(); }

const std::string& data_dir() {
  static const std::string d = prepared_data("trainer");
  return d;
}

TEST(Trainer, LearnsBelowTheUnigramBaseline) {
  Trainer t(tiny(data_dir(), {"train.steps=60"}), quiet());
  const auto sum = t.run();
  const auto& l = sum.losses;
  ASSERT_EQ(l.size(), 60u);
  EXPECT_LT(l.back(), l.front() - 1.0);
  EXPECT_LT(sum.final_val_loss, sum.unigram_val_loss);
  EXPECT_GT(sum.final_val_bpb, 0.0);
  EXPECT_NEAR(sum.final_val_bpb / sum.final_val_loss, sum.unigram_val_bpb / sum.unigram_val_loss,
              1e-9);
}

TEST(Trainer, SameSeedSameLossesBitForBit) {
  const auto a = Trainer(tiny(data_dir(), {"train.steps=5"}), quiet()).run().losses;
  const auto b = Trainer(tiny(data_dir(), {"train.steps=5"}), quiet()).run().losses;
  EXPECT_EQ(a, b);
  const auto c = Trainer(tiny(data_dir(), {"train.steps=5", "train.seed=7"}), quiet()).run().losses;
  EXPECT_NE(a, c);
}

// B = 4 in one micro-batch and B = 2 in two micro-batches see the same samples (the loader's
// global sample index), so losses and weights agree up to fp32 summation order.
TEST(Trainer, GradientAccumulationEqualsTheLargerBatch) {
  Trainer big(tiny(data_dir(), {"train.steps=4", "train.batch_size=4"}), quiet());
  Trainer acc(tiny(data_dir(), {"train.steps=4", "train.batch_size=2", "train.grad_accum=2"}),
              quiet());
  for (int64_t s = 0; s < 4; ++s) {
    const auto a = big.step(s), b = acc.step(s);
    EXPECT_NEAR(a.loss, b.loss, 1e-5 * std::fabs(a.loss));
    EXPECT_NEAR(a.grad_norm, b.grad_norm, 1e-4 * a.grad_norm);
  }
  const auto pa = big.model().flat_params(), pb = acc.model().flat_params();
  ASSERT_EQ(pa.numel(), pb.numel());
  double max_diff = 0;
  for (int64_t i = 0; i < pa.numel(); ++i)
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(pa.f32()[i] - pb.f32()[i])));
  EXPECT_LT(max_diff, 1e-5);
}

TEST(Trainer, LearningRateScheduleShape) {
  using trainer::lr_at;
  EXPECT_DOUBLE_EQ(lr_at(0, 100, 1.0, 10, 0.1), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(9, 100, 1.0, 10, 0.1), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(99, 100, 1.0, 10, 0.1), 0.1);
  EXPECT_NEAR(lr_at(10 + 89 / 2.0, 100, 1.0, 10, 0.1), 0.55, 0.01);
  for (int64_t s = 10; s < 99; ++s)
    EXPECT_GE(lr_at(s, 100, 1.0, 10, 0.1), lr_at(s + 1, 100, 1.0, 10, 0.1));
  EXPECT_DOUBLE_EQ(lr_at(0, 1, 2.0, 0, 0.5), 2.0);
}

TEST(Trainer, RefusesCudaWithoutAGpuAndAMissingDataDir) {
  try {
    if (kernels::cuda_available()) GTEST_SKIP() << "a GPU is present";
    Trainer t(tiny(data_dir(), {"train.device=cuda"}), quiet());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::usage);
    EXPECT_NE(std::string(e.what()).find("no usable GPU"), std::string::npos) << e.what();
  }
  try {
    Trainer t(tiny("/nonexistent/data"), quiet());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/data"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sparta::test
