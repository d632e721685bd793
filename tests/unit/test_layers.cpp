// The pieces the model is composed of: the deferred arena plan, the parameter set (canonical
// order, layout by shard group, layout-independent init), the split checks, the process groups
// of one process, the per-pass independence of the layers (no state carried between passes),
// and the gradient sync's two modes on one rank.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kernels/arena.h"
#include "kernels/ops.h"
#include "parallel/mesh.h"
#include "parallel/process_groups.h"
#include "tests/common/model_util.h"
#include "tests/common/test_util.h"
#include "trainer/grad_sync.h"
#include "trainer/models/param.h"
#include "trainer/models/transformer.h"
#include "trainer/optim/adamw.h"

namespace sparta::test {
namespace {

namespace k = sparta::kernels;
using models::ParamSet;
using models::Shard;
using models::ShardGroup;
using models::Weight;

TEST(ArenaPlan, CarvesEveryRequestZeroedOrFilled) {
  k::ArenaPlan plan("test");
  Tensor a, b, c;
  plan.add(&a, {3, 5});
  plan.add(&b, k::DType::i32, {7});
  plan.add(&c, k::DType::f32, {2, 2}, 1.5f);
  EXPECT_TRUE(a.empty());  // nothing before commit
  const k::Arena arena = plan.commit(k::Device::cpu());
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a.numel(), 15);
  EXPECT_EQ(b.dtype, k::DType::i32);
  for (int64_t i = 0; i < 15; ++i) EXPECT_EQ(a.f32()[i], 0.0f);
  for (int64_t i = 0; i < 7; ++i) EXPECT_EQ(b.i32()[i], 0);
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(c.f32()[i], 1.5f);
  // Each tensor rounded up to the arena's alignment, in request order.
  EXPECT_EQ(arena.used(), 3 * k::Arena::kAlign);
  EXPECT_EQ(static_cast<char*>(b.data) - static_cast<char*>(a.data),
            static_cast<int64_t>(k::Arena::kAlign));
}

TEST(ParamSet, KeepsTheCanonicalOrderAndLaysOutByShardGroup) {
  ParamSet ps;
  Weight a, t, b;
  Tensor buf;
  ps.add(&a, "a", 0, {4, 3}, 0.1f, true);
  ps.add(&t, "t", 0, {4, 6}, 0.1f, true, {ShardGroup::tp, 4, 6, 1, 2, 1}, 1);  // split columns
  ps.add(&b, "b", -1, {5}, models::kInitOnes, false);
  ps.add_buffer(&buf, "router", 0, {2, 2}, 0.2f);
  ps.carve(k::Device::cpu());
  ps.init(9);
  ASSERT_EQ(ps.params().size(), 3u);
  EXPECT_EQ(ps.params()[0].name, "a");
  EXPECT_EQ(ps.params()[1].name, "t");
  EXPECT_EQ(ps.params()[2].name, "b");
  EXPECT_EQ(t.w.dim(0), 4);
  EXPECT_EQ(t.w.dim(1), 3);  // this rank's half of the columns
  EXPECT_EQ(ps.num_params(), 12 + 24 + 5);
  // none group (a, b) first, then tp (t): each group one contiguous range of the flat block.
  const auto [n0, n1] = ps.group_range(ShardGroup::none);
  const auto [t0, t1] = ps.group_range(ShardGroup::tp);
  EXPECT_EQ(n0, 0);
  EXPECT_EQ(n1, t0);
  EXPECT_LE(models::offset_in(ps.flat_params(), t.w) + t.w.numel(), t1);
  EXPECT_LT(models::offset_in(ps.flat_params(), b.w), t0);
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(b.w.f32()[i], 1.0f);
  EXPECT_EQ(a.w.data, ps.params()[0].w.data);
  EXPECT_EQ(ps.buffers().size(), 1u);
  EXPECT_FALSE(buf.empty());

  // The same parameter unsplit: the split rank's values are its columns of the full tensor.
  ParamSet full;
  Weight fa, ft, fb;
  full.add(&fa, "a", 0, {4, 3}, 0.1f, true);
  full.add(&ft, "t", 0, {4, 6}, 0.1f, true);
  full.add(&fb, "b", -1, {5}, models::kInitOnes, false);
  full.carve(k::Device::cpu());
  full.init(9);
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t c = 0; c < 3; ++c) EXPECT_EQ(t.w.f32()[r * 3 + c], ft.w.f32()[r * 6 + 3 + c]);
  EXPECT_EQ(std::memcmp(a.w.data, fa.w.data, 12 * sizeof(float)), 0);
}

TEST(ParamSet, ForEachInRangeWalksTheParametersOfABlock) {
  ParamSet ps;
  Weight a, b;
  ps.add(&a, "a", 0, {100}, 0.1f, true);  // 100 floats, padded to 64 + 64
  ps.add(&b, "b", 0, {10}, 0.1f, true);
  ps.carve(k::Device::cpu());
  const int64_t ob = models::offset_in(ps.flat_params(), b.w);
  std::vector<std::array<int64_t, 4>> seen;
  models::for_each_in_range(ps.params(), ps.flat_params(), 90, ob + 4,
                            [&](size_t i, int64_t in_param, int64_t n, int64_t at) {
                              seen.push_back({static_cast<int64_t>(i), in_param, n, at});
                            });
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], (std::array<int64_t, 4>{0, 90, 10, 90}));
  EXPECT_EQ(seen[1], (std::array<int64_t, 4>{1, 0, 4, ob}));
}

template <class F>
void expect_usage_error(F f, const std::string& needle) {
  try {
    f();
    FAIL() << "expected a usage error containing: " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::usage);
    EXPECT_EQ(e.exit_code(), 2);
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(LayoutChecks, UnsupportedCombinationsAreRefusedWithWhatToChange) {
  parallel::MeshModelLimits moe;
  moe.n_heads = 4;
  moe.d_ff = 8;
  moe.vocab_size = 8;
  moe.seq_len = 8;
  moe.moe_experts = 4;
  parallel::MeshModelLimits uoe = moe;
  uoe.moe_experts = 0;
  uoe.uoe = true;
  expect_usage_error(
      [&] {
        parallel::validate_model_support({2, 1, 1, 0, "tp-cp-ep-dp", 0}, moe);
      },
      "parallel.tp = 2 with moe.experts = 4: MoE layers are split by expert "
      "parallelism");
  expect_usage_error(
      [&] {
        parallel::validate_model_support({1, 2, 1, 0, "tp-cp-ep-dp", 0}, uoe);
      },
      "parallel.cp = 2 with uoe.enabled");
  expect_usage_error(
      [&] {
        parallel::validate_model_support({1, 1, 2, 0, "tp-cp-ep-dp", 1}, moe);
      },
      "parallel.zero = 1 with tp = 1 and ep = 2");
  expect_usage_error(
      [&] {
        parallel::validate_model_support({1, 1, 3, 0, "tp-cp-ep-dp", 0}, moe);
      },
      "parallel.ep = 3 must divide moe.experts = 4");
  parallel::validate_model_support({1, 1, 2, 0, "tp-cp-ep-dp", 0}, moe);  // ep2 MoE: fine
  parallel::validate_model_support({2, 1, 1, 0, "tp-cp-ep-dp", 0}, uoe);  // tp2 UoE: fine
  // The mesh itself checks sizes only: it lays out any divisible split (its groups are tested
  // in test_parallel.cpp).
  EXPECT_NO_THROW(parallel::ProcessMesh({2, 1, 1, 0, "tp-cp-ep-dp", 0}, 2, moe));
}

TEST(ProcessGroups, OneProcessIsEveryGroupAlone) {
  const parallel::ProcessGroups g;
  for (const parallel::Group* grp : {&g.world, &g.dp, &g.tp, &g.cp, &g.ep, &g.edp}) {
    EXPECT_EQ(grp->size(), 1);
    EXPECT_EQ(grp->rank(), 0);
    EXPECT_EQ(grp->host, grp->dev);
  }
  EXPECT_TRUE(g.comms().empty());  // nothing to report
  EXPECT_EQ(g.data_size, 1);
  // A model given these groups equals one built without any.
  const models::ModelConfig c = toy_model_config();
  models::Transformer a(c, 2, k::Device::cpu(), 3), b(c, 2, k::Device::cpu(), 3, &g);
  EXPECT_EQ(host_copy(a.flat_params()), host_copy(b.flat_params()));
}

// Every per-pass value is an argument or rebuilt per pass: two passes over the same batch give
// the same loss and gradients bit for bit, whatever ran in between (an evaluation forward, a
// different batch), for every kind of layer, RMoE's recurrent state included.
TEST(LayerModules, PassesAreIndependentOfEachOther) {
  struct Kind {
    int experts;
    const char* router;
    bool uoe;
  };
  for (const Kind kind : {Kind{0, "linear", false}, Kind{4, "linear", false}, Kind{4, "gru", false},
                          Kind{0, "linear", true}}) {
    models::ModelConfig c = kind.uoe ? toy_uoe_config() : toy_model_config();
    c.moe_experts = kind.experts;
    c.moe_router = kind.router;
    c.moe_gru_dim = 8;
    models::Transformer m(c, 2, k::Device::cpu(), 4);
    auto pass = [&] {
      random_batch(m, 1);
      m.zero_grads();
      const float loss = m.forward_backward(0.5f);
      return std::pair{loss, host_copy(m.flat_grads())};
    };
    const auto first = pass();
    random_batch(m, 2);
    (void)m.forward_loss();
    random_batch(m, 3);
    m.zero_grads();
    (void)m.forward_backward(1.0f);
    const auto second = pass();
    EXPECT_EQ(first.first, second.first) << kind.experts << kind.router << kind.uoe;
    EXPECT_EQ(first.second, second.second) << kind.experts << kind.router << kind.uoe;
  }
}

// On one rank ZeRO-1 holds the whole flat block: the sharded path (reduce-scatter, block norm
// summed in fp32, noise on the block) must give what the replicated path gives.
TEST(GradSync, ShardedAndReplicatedAgreeOnOneRank) {
  const models::ModelConfig c = toy_model_config();
  const parallel::ProcessGroups g;
  std::vector<std::vector<double>> after;
  for (bool zero : {false, true}) {
    models::Transformer m(c, 2, k::Device::cpu(), 5, &g);
    trainer::GradSyncConfig sc;
    sc.zero = zero;
    sc.clip = 0.5;
    sc.noise.eta = 0.01;
    sc.noise.seed = 11;
    trainer::GradSync sync(m, g, sc);
    EXPECT_EQ(sync.shard_begin(), 0);
    EXPECT_EQ(sync.shard_end(), m.flat_params().numel());
    trainer::AdamW opt =
        zero ? trainer::AdamW(m.params(), m.flat_params(), {}, sync.shard_begin(), sync.shard_end())
             : trainer::AdamW(m.params(), m.flat_params(), {});
    for (int64_t step = 0; step < 3; ++step) {
      random_batch(m, static_cast<uint64_t>(10 + step));
      m.zero_grads();
      m.forward_backward(1.0f, sync.backward_hook(true));
      const auto r = sync.reduce(step);
      EXPECT_GT(r.post.norm, 0.5);  // the clip is active
      EXPECT_GT(r.post.sigma, 0.0);
      EXPECT_EQ(r.grad.empty(), !zero);
      opt.step(1e-2, r.post.optimizer_grad_scale, step + 1, r.grad);
      sync.gather_params();
    }
    after.push_back(host_copy(m.flat_params()));
  }
  EXPECT_LT(rel_err(after[1], after[0]), 1e-6);
}

}  // namespace
}  // namespace sparta::test
