// Annealed gradient noise (../shared/specs/grad-noise.md, "Tests that must hold"): the schedule,
// the statistics (std, not variance), independence, sharding invariance, clip-then-noise order,
// eta = 0 as a bitwise no-op, and one draw per optimizer step under accumulation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kernels/ops.h"
#include "kernels/rng.h"
#include "tests/common/data_util.h"
#include "tests/common/test_util.h"
#include "tests/common/trainer_util.h"
#include "trainer/config.h"
#include "trainer/optim/grad_noise.h"
#include "trainer/trainer.h"

namespace sparta::test {
namespace {

namespace k = sparta::kernels;
using trainer::NoiseParams;

constexpr int64_t kD = 1000000;

std::vector<float> draw(float sigma, uint32_t param, uint32_t step, int64_t n = kD) {
  HostF32 x({n});
  k::add_gaussian_noise(x.t, sigma, 42, param, step);
  return x.v;
}

TEST(GradNoise, ScheduleIsAVarianceAnnealedByStep) {
  const NoiseParams p{0.01, 0.55, 1};
  EXPECT_DOUBLE_EQ(trainer::noise_sigma(p, 0), 0.1);  // T3: std = sqrt(eta), not eta
  EXPECT_NEAR(trainer::noise_sigma(p, 9), std::sqrt(0.01 / std::pow(10.0, 0.55)), 1e-15);
  EXPECT_EQ(trainer::noise_sigma({0.0, 0.55, 1}, 5), 0.0);
}

// T2/T3: mean and variance over 1e6 elements at t = 0 and t = 1e4.
TEST(GradNoise, SampleStatisticsMatchTheSchedule) {
  const NoiseParams p{0.01, 0.55, 42};
  for (uint32_t t : {0u, 10000u}) {
    const double sigma = trainer::noise_sigma(p, t);
    const auto x = draw(static_cast<float>(sigma), 3, t);
    double mean = 0, var = 0;
    for (float v : x) mean += v;
    mean /= kD;
    for (float v : x) var += (v - mean) * (v - mean);
    var /= kD - 1;
    EXPECT_LT(std::fabs(mean), 5 * sigma / std::sqrt(static_cast<double>(kD))) << t;
    EXPECT_NEAR(var / (sigma * sigma), 1.0, 5 * std::sqrt(2.0 / kD)) << t;
    if (t == 0) {
      EXPECT_NEAR(std::sqrt(var), 0.1, 0.1 * 5 * std::sqrt(2.0 / kD));
    }
  }
}

// T4: independent across steps and across parameters.
TEST(GradNoise, DrawsAreUncorrelatedAcrossStepsAndParameters) {
  auto corr = [](const std::vector<float>& a, const std::vector<float>& b) {
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      sab += static_cast<double>(a[i]) * b[i];
      saa += static_cast<double>(a[i]) * a[i];
      sbb += static_cast<double>(b[i]) * b[i];
    }
    return sab / std::sqrt(saa * sbb);
  };
  const auto a = draw(1.0f, 3, 7), b = draw(1.0f, 3, 8), c = draw(1.0f, 4, 7);
  EXPECT_LT(std::fabs(corr(a, b)), 5.0 / std::sqrt(static_cast<double>(kD)));
  EXPECT_LT(std::fabs(corr(a, c)), 5.0 / std::sqrt(static_cast<double>(kD)));
  EXPECT_EQ(draw(1.0f, 3, 7, 1000),
            std::vector<float>(a.begin(), a.begin() + 1000));  // deterministic
}

// T6: a parameter evaluated in chunks at odd offsets gets exactly the noise of the whole.
TEST(GradNoise, ChunkedEvaluationEqualsWholeTensor) {
  const int64_t n = 1001;
  HostF32 whole({n}), pieces({n});
  k::add_gaussian_noise(whole.t, 0.3f, 9, 5, 17);
  for (auto [lo, hi] : {std::pair<int64_t, int64_t>{0, 3}, {3, 500}, {500, 501}, {501, 1001}}) {
    k::Tensor part(pieces.v.data() + lo, k::DType::f32, k::Device::cpu(), {hi - lo});
    k::add_gaussian_noise(part, 0.3f, 9, 5, 17, lo);
  }
  EXPECT_EQ(std::memcmp(whole.v.data(), pieces.v.data(), n * sizeof(float)), 0);
}

const std::string& data_dir() {
  static const std::string d = prepared_data("noise");
  return d;
}

trainer::Config tiny(std::vector<std::string> extra) {
  return tiny_config(data_dir(), extra);
}
trainer::RunOptions quiet() {
  return quiet_run();
}

std::vector<float> params_after(const trainer::Config& c, int steps) {
  trainer::Trainer t(c, quiet());
  for (int s = 0; s < steps; ++s) t.step(s);
  const auto p = t.model().flat_params();
  return {p.f32(), p.f32() + p.numel()};
}

// T1: eta = 0 is bit-identical to no noise at all; eta > 0 changes the weights.
TEST(GradNoise, EtaZeroIsABitwiseNoOp) {
  const auto off = params_after(tiny({}), 3);
  const auto zero = params_after(tiny({"noise.enabled=true", "noise.eta=0"}), 3);
  const auto on = params_after(tiny({"noise.enabled=true", "noise.eta=0.01"}), 3);
  EXPECT_EQ(std::memcmp(off.data(), zero.data(), off.size() * sizeof(float)), 0);
  EXPECT_NE(std::memcmp(off.data(), on.data(), off.size() * sizeof(float)), 0);
}

// T8: clip first, then noise: the post-hook gradient minus the noise has norm <= clip.
TEST(GradNoise, NoiseIsAddedAfterClipping) {
  trainer::Trainer t(tiny({}), quiet());
  t.step(0);
  auto& m = t.model();
  m.zero_grads();
  for (auto& p : m.params())
    for (int64_t i = 0; i < p.g.numel(); ++i) p.g.f32()[i] = 1.0f;  // norm = sqrt(#params) >> clip
  const double clip = 0.5;
  const NoiseParams noise{0.04, 0.55, 77};
  const auto post = trainer::clip_and_noise(m.params(), m.flat_grads(), clip, noise, 3);
  EXPECT_NEAR(post.norm, std::sqrt(static_cast<double>(m.num_params())), 1e-3);
  EXPECT_DOUBLE_EQ(post.optimizer_grad_scale, 1.0);  // already applied to the gradients
  for (size_t i = 0; i < m.params().size(); ++i)     // subtract the same noise again
    k::add_gaussian_noise(m.params()[i].g, -static_cast<float>(post.sigma), 77,
                          static_cast<uint32_t>(i), 3);
  EXPECT_LE(std::sqrt(k::sum_squares(m.flat_grads())), clip * (1 + 1e-5));
  EXPECT_GE(std::sqrt(k::sum_squares(m.flat_grads())), clip * (1 - 1e-5));
}

// Tensor/expert parallel: a parameter split into parts (column-parallel QKV [3, C, C] on C,
// row-parallel [C, F, 1] on F, experts [1, E, inner] on E), each part's noise keyed by its full
// tensor's indices, reassembles into exactly the whole tensor's noise; and Shard's index map
// agrees with the runs the checkpoint gather uses.
TEST(GradNoise, ShardedParametersDrawTheWholeTensorsNoise) {
  struct Case {
    int64_t outer, mid, inner;
  };
  for (const Case c : {Case{3, 8, 8}, Case{8, 12, 1}, Case{1, 4, 30}}) {
    const int64_t n = c.outer * c.mid * c.inner;
    models::Param whole;
    HostF32 gw({n});
    whole.g = gw.t;
    trainer::add_param_noise(whole, 5, whole.g, 0, 0.1f, 9, 3);
    for (int parts : {2, 4}) {
      std::vector<float> assembled(static_cast<size_t>(n), 0.0f);
      for (int r = 0; r < parts; ++r) {
        models::Param p;
        p.shard = {models::ShardGroup::tp, c.outer, c.mid, c.inner, parts, r};
        HostF32 g({n / parts});
        p.g = g.t;
        // Two calls (an uneven split of the local range, as ZeRO blocks cut it).
        const int64_t cut = n / parts / 3;
        trainer::add_param_noise(p, 5, g.t.rows(0, cut), 0, 0.1f, 9, 3);
        trainer::add_param_noise(p, 5, g.t.rows(cut, n / parts), cut, 0.1f, 9, 3);
        for (int64_t j = 0; j < n / parts; ++j)
          assembled[static_cast<size_t>(p.shard.global_index(j))] = g[static_cast<size_t>(j)];
        for (int64_t o = 0; o < p.shard.runs(); ++o)
          EXPECT_EQ(p.shard.global_index(o * p.shard.run_length()), p.shard.run_global(o));
      }
      EXPECT_EQ(assembled, gw.v) << c.outer << "x" << c.mid << "x" << c.inner << " / " << parts;
    }
  }
}

// T9: with accumulation the noise is drawn once per optimizer step, so B = 4 and 2 x B = 2 agree.
TEST(GradNoise, OneDrawPerOptimizerStepUnderAccumulation) {
  const auto big = params_after(tiny({"noise.enabled=true", "noise.eta=0.01"}), 3);
  const auto acc = params_after(
      tiny({"noise.enabled=true", "noise.eta=0.01", "train.batch_size=2", "train.grad_accum=2"}),
      3);
  double max_diff = 0;
  for (size_t i = 0; i < big.size(); ++i)
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(big[i] - acc[i])));
  EXPECT_LT(max_diff, 1e-5);
}

}  // namespace
}  // namespace sparta::test
