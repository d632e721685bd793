// train.recompute (models::Recompute): the backward recomputes activations instead of keeping
// them. Losses, gradients and router statistics are bit-identical to keeping everything, for
// every kind of layer (dense Mix-LN, MoE with capacity drops, RMoE's recurrent state, UoE), over
// accumulated micro-batches with an evaluation between; and the activation arena shrinks by
// exactly what the plan says: attention, every layer's attention but one; block, every block's
// activations but one block's and the outputs.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/arena.h"
#include "tests/common/model_util.h"
#include "trainer/models/transformer.h"

namespace sparta::test {
namespace {

namespace k = sparta::kernels;
using models::Recompute;

struct Outcome {
  std::vector<float> losses;
  std::vector<double> grads, eval;
  double aux = 0;
  std::vector<std::vector<int64_t>> expert_tokens;
};

// Two accumulated micro-batches, an evaluation forward, then the two again (the evaluation
// must not disturb what the backward recomputes).
Outcome train(const models::ModelConfig& c, Recompute r) {
  models::Transformer m(c, 2, k::Device::cpu(), 21, nullptr, r);
  Outcome out;
  m.zero_grads();
  for (uint64_t s : {1, 2}) {
    random_batch(m, s);
    out.losses.push_back(m.forward_backward(0.5f));
    out.aux += m.aux_loss();
  }
  random_batch(m, 3);
  out.losses.push_back(m.forward_loss());
  for (uint64_t s : {4, 5}) {
    random_batch(m, s);
    out.losses.push_back(m.forward_train(0.25f));
    m.backward(0.25f);
  }
  out.grads = host_copy(m.flat_grads());
  for (const auto& st : m.moe_stats()) out.expert_tokens.push_back(st.expert_tokens);
  return out;
}

struct Case {
  const char* name;
  models::ModelConfig cfg;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  models::ModelConfig mix = toy_model_config();
  mix.n_layers = 4;
  mix.mixln_post_layers = 2;  // two Post-LN blocks, two Pre-LN: two overlays under block
  out.push_back({"dense Mix-LN", mix});
  models::ModelConfig moe = mix;
  moe.moe_experts = 4;
  moe.moe_layers = "every-other";
  moe.moe_capacity_factor = 0.75;  // drops: rows no forward writes
  out.push_back({"MoE every other, capacity", moe});
  models::ModelConfig rmoe = mix;
  rmoe.moe_experts = 4;
  rmoe.moe_router = "gru";
  rmoe.moe_gru_dim = 8;
  out.push_back({"RMoE", rmoe});
  out.push_back({"UoE", toy_uoe_config()});
  models::ModelConfig gelu = toy_model_config();
  gelu.norm = models::NormType::layernorm;
  gelu.pos = models::PosEncoding::learned;
  gelu.ffn = models::FfnType::gelu;
  gelu.tie_embeddings = true;
  gelu.norm_placement = models::NormPlacement::post;
  out.push_back({"Post-LN LayerNorm GELU learned tied", gelu});
  return out;
}

TEST(Recompute, LossesGradientsAndRoutingAreBitIdentical) {
  for (const Case& c : cases()) {
    const Outcome keep = train(c.cfg, Recompute::none);
    for (Recompute r : {Recompute::attention, Recompute::block}) {
      const Outcome re = train(c.cfg, r);
      const char* mode = r == Recompute::attention ? "attention" : "block";
      EXPECT_EQ(re.losses, keep.losses) << c.name << ", " << mode;
      EXPECT_EQ(re.aux, keep.aux) << c.name << ", " << mode;
      EXPECT_EQ(re.expert_tokens, keep.expert_tokens) << c.name << ", " << mode;
      ASSERT_EQ(re.grads.size(), keep.grads.size());
      size_t differ = 0;
      for (size_t i = 0; i < re.grads.size(); ++i) differ += re.grads[i] != keep.grads[i];
      EXPECT_EQ(differ, 0u) << c.name << ", " << mode << ": gradient elements that differ";
    }
  }
}

size_t aligned(int64_t floats) {
  const size_t b = static_cast<size_t>(floats) * 4;
  return (b + k::Arena::kAlign - 1) / k::Arena::kAlign * k::Arena::kAlign;
}

// Pre-LN dense, tp = cp = 1: one attention module keeps qkv [N, 3C], q, k, v, o [B, H, T, D],
// lse [B, H, T], its input to the projection and its output [N, C].
TEST(Recompute, TheArenaShrinksAsPlanned) {
  models::ModelConfig c = toy_model_config();
  c.norm_placement = models::NormPlacement::pre;
  c.n_layers = 4;
  c.seq_len = 64;
  const int B = 3;
  const int64_t N = B * c.seq_len, C = c.d_model;
  const size_t attention = aligned(N * 3 * C) + 4 * aligned(N * C) +
                           aligned(B * c.n_heads * c.seq_len) + 2 * aligned(N * C);
  auto bytes = [&](int layers, Recompute r) {
    models::ModelConfig cc = c;
    cc.n_layers = layers;
    const models::Transformer m(cc, B, k::Device::cpu(), 1, nullptr, r);
    return std::pair{m.activation_bytes(), m.recompute_saved_bytes()};
  };
  const auto [none, none_saved] = bytes(4, Recompute::none);
  EXPECT_EQ(none_saved, 0u);
  const auto [attn, attn_saved] = bytes(4, Recompute::attention);
  EXPECT_EQ(none - attn, 3 * attention);
  EXPECT_EQ(attn_saved, 3 * attention);
  // A block's cost is what one more layer adds; all of it but the output is overlaid.
  const size_t block = bytes(2, Recompute::none).first - bytes(1, Recompute::none).first;
  EXPECT_GT(block, attention);
  const auto [blk, blk_saved] = bytes(4, Recompute::block);
  EXPECT_EQ(none - blk, 3 * (block - aligned(N * C)));
  EXPECT_EQ(blk_saved, none - blk);
}

TEST(ArenaPlan, OverlaysShareMemoryAndRefuseMisuse) {
  k::ArenaPlan plan("test");
  k::Tensor a, b1, b2, c1, kept;
  plan.add(&a, {10});
  plan.open_overlay(0);
  plan.add(&b1, {100});
  plan.add_kept(&kept, {5});
  plan.close_overlay();
  plan.open_overlay(0);
  plan.add(&b2, {300});
  plan.close_overlay();
  plan.open_overlay(1);
  plan.add(&c1, {7});
  plan.close_overlay();
  EXPECT_EQ(plan.overlay_savings(), aligned(100));
  const k::Arena arena = plan.commit(k::Device::cpu());
  EXPECT_EQ(b1.data, b2.data);  // instances of one overlay start together
  EXPECT_NE(c1.data, b1.data);
  EXPECT_EQ(arena.used(), 2 * aligned(10) + aligned(300) + aligned(7));
  EXPECT_LE(static_cast<char*>(c1.data) + 28,
            static_cast<char*>(arena.flat_f32().data) + static_cast<ptrdiff_t>(arena.used()));
  k::ArenaPlan bad("bad");
  k::Tensor t;
  bad.open_overlay(2);
  try {
    bad.add(&t, k::DType::f32, {4}, 1.0f);
    ADD_FAILURE() << "a fill in an overlay was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("a fill value in overlay 2"), std::string::npos);
  }
  try {
    bad.open_overlay(3);
    ADD_FAILURE() << "nested overlays were accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("overlay 3 opened inside overlay 2"), std::string::npos);
  }
  try {
    (void)bad.commit(k::Device::cpu());
    ADD_FAILURE() << "commit with an open overlay";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("overlay 2 still open at commit"), std::string::npos);
  }
}

}  // namespace
}  // namespace sparta::test
