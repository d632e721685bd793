// Whole-model checks: finite-difference gradients through every parameter of small models of
// each kind, and the Mix-LN spec's invariants (../shared/specs/mixln.md, "Tests that must hold").
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kernels/ops.h"
#include "kernels/rng.h"
#include "tests/common/model_util.h"
#include "tests/common/test_util.h"
#include "trainer/models/transformer.h"

namespace sparta::test {
namespace {

namespace k = sparta::kernels;
using models::ModelConfig;
using models::NormPlacement;
using models::Transformer;

ModelConfig tiny_config() {
  return toy_model_config();
}

std::vector<float> to_vec(const k::Tensor& t) {
  return {t.f32(), t.f32() + t.numel()};
}

struct Variant {
  const char* name;
  NormPlacement placement;
  models::NormType norm;
  models::PosEncoding pos;
  models::FfnType ffn;
  bool tie;
  int experts = 0;      // > 0: MoE FFNs (top-2) on the layers in moe_layers
  double capacity = 0;  // MoE capacity factor (0: dropless)
  const char* moe_layers = "all";
  const char* router = "linear";  // "gru": RMoE
  const char* uoe = nullptr;      // "clean" / "paper": a UoE model (SMHA + UoME in every layer)
};

class ModelGrad : public ::testing::TestWithParam<Variant> {};

// Directional finite differences per parameter tensor: for a random unit direction u,
// <grad, u> must match (L(w + h u) - L(w - h u)) / 2h. fp32 forward, so h is not tiny.
TEST_P(ModelGrad, EveryParameterMatchesFiniteDifferences) {
  const Variant v = GetParam();
  ModelConfig c = tiny_config();
  c.norm_placement = v.placement;
  c.mixln_post_layers = v.placement == NormPlacement::mix ? 1 : -1;
  c.norm = v.norm;
  c.norm_eps = 1e-5f;
  c.pos = v.pos;
  c.ffn = v.ffn;
  c.tie_embeddings = v.tie;
  c.moe_experts = v.experts;
  c.moe_top_k = 2;
  c.moe_expert_ffn = 12;
  c.moe_capacity_factor = v.capacity;
  c.moe_layers = v.moe_layers;
  c.moe_router = v.router;
  c.moe_gru_dim = 6;
  c.moe_aux_loss_coef = 0.1;  // large enough that a wrong aux gradient shows
  c.moe_z_loss_coef = 0.05;
  if (v.uoe) {  // H = 2 heads: E_a = 2, k_a = 1, T_a = 5 of 8; E_m = 4 slices of 6, k_m = 2
    c.uoe = true;
    c.uoe_mode = v.uoe;
    c.d_ff = 24;
  }
  const bool routed = v.experts > 0 || v.uoe;
  Transformer m(c, 2, k::Device::cpu(), 42);
  random_batch(m, 1);
  m.zero_grads();
  m.forward_backward(1.0f);
  int checked = 0;
  for (size_t pi = 0; pi < m.params().size(); ++pi) {
    auto& p = m.params()[pi];
    const int64_t n = p.w.numel();
    std::vector<double> u(static_cast<size_t>(n));
    double norm = 0;
    for (int64_t i = 0; i < n; ++i) {
      u[static_cast<size_t>(i)] = k::normal(9, pi, static_cast<uint64_t>(i));
      norm += u[static_cast<size_t>(i)] * u[static_cast<size_t>(i)];
    }
    double analytic = 0;
    for (int64_t i = 0; i < n; ++i) {
      u[static_cast<size_t>(i)] /= std::sqrt(norm);
      analytic += u[static_cast<size_t>(i)] * p.g.f32()[i];
    }
    const std::vector<float> w0 = to_vec(p.w);
    // Routed models: the loss is piecewise smooth in the weights (routing is discrete), so the
    // difference must not straddle a routing change. The step shrinks until the per-expert
    // counts at w +- h u equal those at w (a flip moves a token between experts).
    auto routing = [&] {
      std::vector<int64_t> sig;
      for (const auto& st : m.moe_stats()) {
        sig.insert(sig.end(), st.expert_tokens.begin(), st.expert_tokens.end());
        sig.push_back(st.dropped);
      }
      return sig;
    };
    const std::vector<int64_t> base_routing = routing();
    double h = routed ? 2e-3 : 1e-2;
    bool same_routing = true;
    auto loss_at = [&](double sign) {
      for (int64_t i = 0; i < n; ++i)
        p.w.f32()[i] =
            static_cast<float>(w0[static_cast<size_t>(i)] + sign * h * u[static_cast<size_t>(i)]);
      const double token_loss = m.forward_loss();  // sequenced: aux_loss() reads this forward
      same_routing = same_routing && routing() == base_routing;
      return token_loss + m.aux_loss();
    };
    double fd = 0;
    for (int attempt = 0; attempt < 4; ++attempt, h /= 4) {
      same_routing = true;
      fd = (loss_at(+1) - loss_at(-1)) / (2 * h);
      if (same_routing) break;
    }
    EXPECT_TRUE(same_routing) << v.name << " param " << p.name << ": routing flips at every step";
    std::copy(w0.begin(), w0.end(), p.w.f32());
    EXPECT_NEAR(analytic, fd, 2e-2 * std::fabs(fd) + (routed ? 6e-4 : 2e-4))
        << v.name << " param " << p.name;
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(m.params().size()));
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, ModelGrad,
    ::testing::Values(
        Variant{"pre_rms_rope_swiglu", NormPlacement::pre, models::NormType::rmsnorm,
                models::PosEncoding::rope, models::FfnType::swiglu, false},
        Variant{"post_rms_rope_swiglu", NormPlacement::post, models::NormType::rmsnorm,
                models::PosEncoding::rope, models::FfnType::swiglu, false},
        Variant{"mix_rms_rope_swiglu", NormPlacement::mix, models::NormType::rmsnorm,
                models::PosEncoding::rope, models::FfnType::swiglu, false},
        Variant{"mix_ln_learned_gelu_tied", NormPlacement::mix, models::NormType::layernorm,
                models::PosEncoding::learned, models::FfnType::gelu, true},
        Variant{"pre_ln_learned_gelu", NormPlacement::pre, models::NormType::layernorm,
                models::PosEncoding::learned, models::FfnType::gelu, false},
        Variant{"mix_moe_dropless", NormPlacement::mix, models::NormType::rmsnorm,
                models::PosEncoding::rope, models::FfnType::swiglu, false, 4, 0.0, "all"},
        Variant{"pre_moe_capacity_gelu", NormPlacement::pre, models::NormType::rmsnorm,
                models::PosEncoding::rope, models::FfnType::gelu, false, 5, 0.8, "0,2"},
        // RMoE: the GRU state crosses every layer, or skips the dense layer 1 (MoE on 0 and 2).
        Variant{"mix_rmoe", NormPlacement::mix, models::NormType::rmsnorm,
                models::PosEncoding::rope, models::FfnType::swiglu, false, 4, 0.0, "all", "gru"},
        Variant{"pre_rmoe_skip", NormPlacement::pre, models::NormType::rmsnorm,
                models::PosEncoding::rope, models::FfnType::swiglu, false, 4, 0.0, "0,2", "gru"},
        // UoE (spec T6): every expert weight and bias, routing held fixed by the small step.
        Variant{"mix_uoe_clean", NormPlacement::mix, models::NormType::rmsnorm,
                models::PosEncoding::rope, models::FfnType::swiglu, false, 0, 0.0, "all", "linear",
                "clean"},
        Variant{"pre_uoe_clean_gelu_learned", NormPlacement::pre, models::NormType::layernorm,
                models::PosEncoding::learned, models::FfnType::gelu, false, 0, 0.0, "all", "linear",
                "clean"},
        Variant{"mix_uoe_paper", NormPlacement::mix, models::NormType::rmsnorm,
                models::PosEncoding::rope, models::FfnType::swiglu, false, 0, 0.0, "all", "linear",
                "paper"}),
    [](const auto& info) { return std::string(info.param.name); });

struct RunResult {
  float loss;
  std::vector<float> grads;
  int64_t nparams;
};

RunResult run_once(ModelConfig c) {
  Transformer m(c, 2, k::Device::cpu(), 5);
  random_batch(m, 3);
  m.zero_grads();
  RunResult r;
  r.loss = m.forward_backward(1.0f);
  r.grads = to_vec(m.flat_grads());
  r.nparams = m.num_params();
  return r;
}

// Mix-LN T1, T2, T3: K = 0 is Pre-LN and K = L is Post-LN bit for bit; the parameter count does
// not depend on K.
TEST(MixLN, EndpointsAreBitIdenticalToPreAndPost) {
  ModelConfig c = tiny_config();
  c.n_layers = 4;
  auto with = [&](NormPlacement p, int k) {
    ModelConfig x = c;
    x.norm_placement = p;
    x.mixln_post_layers = k;
    return run_once(x);
  };
  const RunResult pre = with(NormPlacement::pre, -1), mix0 = with(NormPlacement::mix, 0);
  const RunResult post = with(NormPlacement::post, -1), mixL = with(NormPlacement::mix, 4);
  const RunResult mix2 = with(NormPlacement::mix, 2);
  EXPECT_EQ(std::memcmp(&pre.loss, &mix0.loss, sizeof(float)), 0);
  EXPECT_EQ(pre.grads, mix0.grads);
  EXPECT_EQ(std::memcmp(&post.loss, &mixL.loss, sizeof(float)), 0);
  EXPECT_EQ(post.grads, mixL.grads);
  EXPECT_EQ(pre.nparams, post.nparams);
  EXPECT_EQ(pre.nparams, mix2.nparams);
  EXPECT_NE(pre.loss, post.loss);
  // alpha form: floor(0.25 * 4) = 1 Post-LN layer; floor(0.3 * 4) = 1; floor(0.5 * 4) = 2.
  ModelConfig a = c;
  a.norm_placement = NormPlacement::mix;
  for (auto [alpha, k] : {std::pair{0.25, 1}, {0.3, 1}, {0.5, 2}, {0.0, 0}, {1.0, 4}}) {
    a.mixln_alpha = alpha;
    EXPECT_EQ(a.post_ln_layers(), k) << alpha;
  }
  a.n_layers = 12;
  a.mixln_alpha = 0.25;
  EXPECT_EQ(a.post_ln_layers(), 3);
}

// T6: at init (gamma = 1) every Post-LN block's output has per-token RMS 1 - O(eps).
TEST(MixLN, PostLNBlockOutputHasUnitRMS) {
  ModelConfig c = tiny_config();
  c.n_layers = 4;
  c.norm_placement = NormPlacement::mix;
  c.mixln_post_layers = 2;
  Transformer m(c, 2, k::Device::cpu(), 5);
  random_batch(m, 4);
  m.forward_loss();
  for (int l = 0; l < 2; ++l) {
    const k::Tensor out = m.layer_output(l);
    const int64_t C = c.d_model, N = out.numel() / C;
    for (int64_t n = 0; n < N; ++n) {
      double ss = 0;
      for (int64_t j = 0; j < C; ++j)
        ss += static_cast<double>(out.f32()[n * C + j]) * out.f32()[n * C + j];
      EXPECT_NEAR(std::sqrt(ss / C), 1.0, 1e-5) << "layer " << l << " token " << n;
    }
  }
}

// T7: with the attention and FFN output projections zeroed, a Pre-LN block is the identity and a
// Post-LN block is x -> RMSNorm(RMSNorm(x)) = RMSNorm(x).
TEST(MixLN, ZeroedOutputProjectionsGiveIdentityOrNorm) {
  ModelConfig c = tiny_config();
  c.n_layers = 4;
  c.norm_placement = NormPlacement::mix;
  c.mixln_post_layers = 2;
  Transformer m(c, 2, k::Device::cpu(), 5);
  for (auto& p : m.params())
    if (p.name.find("attn.proj") != std::string::npos ||
        p.name.find("ffn.proj") != std::string::npos)
      k::zero(p.w);
  random_batch(m, 5);
  m.forward_loss();
  const int64_t C = c.d_model;
  // Layer 1 (Post-LN) output is RMSNorm of its input (layer 0's output, already unit RMS).
  const std::vector<float> in1 = to_vec(m.layer_output(0)), out1 = to_vec(m.layer_output(1));
  for (size_t i = 0; i < in1.size(); ++i) EXPECT_NEAR(out1[i], in1[i], 2e-6);
  // Layers 2, 3 (Pre-LN) are exact identities.
  EXPECT_EQ(to_vec(m.layer_output(2)), out1);
  EXPECT_EQ(to_vec(m.layer_output(3)), out1);
  // Layer 0 (Post-LN) output is RMSNorm(embedding): unit RMS per token.
  const std::vector<float> out0 = to_vec(m.layer_output(0));
  for (size_t n = 0; n < out0.size() / static_cast<size_t>(C); ++n) {
    double ss = 0;
    for (int64_t j = 0; j < C; ++j)
      ss += out0[n * C + static_cast<size_t>(j)] * out0[n * C + static_cast<size_t>(j)];
    EXPECT_NEAR(ss / C, 1.0, 1e-5);
  }
}

}  // namespace
}  // namespace sparta::test

namespace sparta::test {
namespace {

// T8 (qualitative): at init, on random tokens, with the 12-layer 71M shape of the spec (C 512,
// F 1368, H 8; V cut to 8000 and T to 64 to keep the test fast), the per-layer gradient norm
// falls with depth for Pre-LN and Mix-LN's profile is flatter than Pre-LN's.
// Measured deviation from the spec's wording: at init (linear std 0.02) the Post-LN profile is
// almost flat (G_first/G_last = 1.04, not < 1): the Post-LN norm Jacobians only contract once
// the branches carry weight comparable to the residual. The test asserts what holds and that
// Post-LN is the flattest at init; docs/mixln.md records the numbers.
TEST(MixLN, GradientProfileAcrossDepth) {
  ModelConfig c;
  c.n_layers = 12;
  c.d_model = 512;
  c.n_heads = 8;
  c.d_ff = 1368;
  c.vocab_size = 8000;
  c.seq_len = 64;
  c.embed_init_std = 0.632f;  // the released Mix-LN code's embedding init (spec section 4)
  auto profile = [&](NormPlacement p) {
    ModelConfig x = c;
    x.norm_placement = p;
    Transformer m(x, 2, k::Device::cpu(), 11);
    random_batch(m, 6);
    m.zero_grads();
    m.forward_backward(1.0f);
    return m.layer_grad_norms();
  };
  auto spread = [](const std::vector<double>& g) {
    return *std::max_element(g.begin(), g.end()) / *std::min_element(g.begin(), g.end());
  };
  const auto pre = profile(NormPlacement::pre), post = profile(NormPlacement::post),
             mix = profile(NormPlacement::mix);
  EXPECT_GT(pre.front() / pre.back(), 1.0);
  EXPECT_LT(spread(mix), spread(pre));
  EXPECT_LT(spread(post), spread(pre));
  EXPECT_LT(post.front() / post.back(), pre.front() / pre.back());
  for (size_t l = 0; l < pre.size(); ++l)
    std::printf("layer %2zu  G_pre %.4e  G_post %.4e  G_mix %.4e\n", l, pre[l], post[l], mix[l]);
}

}  // namespace
}  // namespace sparta::test

namespace sparta::test {
namespace {

// T9: the angular-distance metric: 0 for identical inputs, 1 for opposite ones, 0.5 for a NaN
// similarity; computed on the last token of each window (identity Pre-LN blocks give 0).
TEST(MixLN, AngularDistanceMetric) {
  const std::vector<float> a = {1.0f, 2.0f, -3.0f}, neg = {-1.0f, -2.0f, 3.0f}, zero = {0, 0, 0};
  const std::vector<float> orth = {2.0f, -1.0f, 0.0f};
  EXPECT_NEAR(models::angular_distance(a.data(), a.data(), 3), 0.0, 1e-7);
  EXPECT_NEAR(models::angular_distance(a.data(), neg.data(), 3), 1.0, 1e-7);
  EXPECT_NEAR(models::angular_distance(a.data(), orth.data(), 3), 0.5, 1e-12);
  EXPECT_EQ(models::angular_distance(a.data(), zero.data(), 3), 0.5);

  ModelConfig c = tiny_config();
  c.n_layers = 4;
  c.norm_placement = NormPlacement::mix;
  c.mixln_post_layers = 2;
  Transformer m(c, 2, k::Device::cpu(), 5);
  for (auto& p : m.params())
    if (p.name.find("attn.proj") != std::string::npos ||
        p.name.find("ffn.proj") != std::string::npos)
      k::zero(p.w);
  random_batch(m, 5);
  m.forward_loss();
  // With the projections zeroed every block only rescales its input (Post-LN: RMSNorm with
  // gamma 1; Pre-LN: identity), so no direction changes.
  for (double v : m.angular_distances()) EXPECT_NEAR(v, 0.0, 1e-6);
  // A live model turns the stream; the metric uses the last token of each window.
  Transformer live(c, 2, k::Device::cpu(), 5);
  random_batch(live, 5);
  live.forward_loss();
  const auto d = live.angular_distances();
  ASSERT_EQ(d.size(), 4u);
  for (double v : d) EXPECT_GT(v, 1e-4);
  const int64_t C = c.d_model, T = c.seq_len;
  double hand = 0;
  for (int64_t s = 0; s < 2; ++s)
    hand += models::angular_distance(live.layer_output(0).f32() + (s * T + T - 1) * C,
                                     live.layer_output(1).f32() + (s * T + T - 1) * C, C) /
            2;
  EXPECT_NEAR(d[1], hand, 1e-12);
}

}  // namespace
}  // namespace sparta::test
