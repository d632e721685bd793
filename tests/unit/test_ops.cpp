// Every CPU op against (1) a naive double-precision reference for the forward and (2) central
// finite differences of that reference for the backward. The backward is checked through a
// random projection: L = sum(out * w), so dL/dout = w and dL/dx is compared with FD of L.
#include <gtest/gtest.h>

#include "kernels/ops.h"
#include "tests/common/reference_ops.h"
#include "tests/common/test_util.h"

namespace sparta::test {
namespace {

namespace k = sparta::kernels;
using ref::Vec;

constexpr double kFwdTol = 2e-5;   // fp32 op vs double reference, relative to the output scale
constexpr double kGradTol = 2e-4;  // fp32 analytic gradient vs double finite differences

TEST(Ops, MatmulForwardBackward) {
  const int64_t N = 6, IC = 5, OC = 7;
  auto x = randn({N, IC}, 1), w = randn({OC, IC}, 2), dy = randn({N, OC}, 3);
  HostF32 y({N, OC});
  k::matmul_forward(y.t, x.t, w.t);
  auto f = [&](const std::vector<Vec>& in) { return ref::matmul(in[0], in[1], N, IC, OC); };
  EXPECT_LT(rel_err(y.v, f({x.d(), w.d()})), kFwdTol);
  // Accumulation contract: gradients are added to what is there.
  HostF32 dx({N, IC}), dw({OC, IC});
  for (auto& e : dx.v) e = 1.0f;
  k::matmul_backward(dx.t, dw.t, dy.t, x.t, w.t);
  auto gx = fd_of(f, {x.d(), w.d()}, 0, dy.d());
  for (auto& g : gx) g += 1.0;
  EXPECT_LT(rel_err(dx.v, gx), kGradTol);
  EXPECT_LT(rel_err(dw.v, fd_of(f, {x.d(), w.d()}, 1, dy.d())), kGradTol);
}

TEST(Ops, EmbeddingLearnedPositions) {
  const int64_t B = 2, T = 4, C = 3, V = 5;
  HostI32 tok({B, T});
  const int32_t ids[] = {0, 3, 3, 1, 4, 4, 2, 3};
  std::copy(std::begin(ids), std::end(ids), tok.v.begin());
  auto wte = randn({V, C}, 4), wpe = randn({T, C}, 5), dy = randn({B * T, C}, 6);
  HostF32 y({B * T, C});
  k::embedding_forward(y.t, tok.t, wte.t, wpe.t);
  auto f = [&](const std::vector<Vec>& in) {
    return ref::embedding(tok.v, in[0], &in[1], B, T, C);
  };
  EXPECT_LT(rel_err(y.v, f({wte.d(), wpe.d()})), kFwdTol);
  HostF32 dwte({V, C}), dwpe({T, C});
  k::embedding_backward(dwte.t, dwpe.t, dy.t, tok.t);
  EXPECT_LT(rel_err(dwte.v, fd_of(f, {wte.d(), wpe.d()}, 0, dy.d())), kGradTol);
  EXPECT_LT(rel_err(dwpe.v, fd_of(f, {wte.d(), wpe.d()}, 1, dy.d())), kGradTol);
}

TEST(Ops, RopeRotatesAndBackwardIsAdjoint) {
  const int64_t B = 1, H = 2, T = 9, D = 8;
  const float theta = 10000.0f;
  auto x = randn({B, H, T, D}, 7), dy = randn({B, H, T, D}, 8);
  HostF32 y = x;
  k::rope_forward(y.t, theta);
  auto f = [&](const std::vector<Vec>& in) { return ref::rope(in[0], B * H, T, D, theta); };
  EXPECT_LT(rel_err(y.v, f({x.d()})), kFwdTol);
  HostF32 dx = dy;
  k::rope_backward(dx.t, theta);
  EXPECT_LT(rel_err(dx.v, fd_of(f, {x.d()}, 0, dy.d())), kGradTol);
  // Position 0 is the identity; rotation preserves each pair's norm.
  for (int64_t d = 0; d < D; ++d)
    EXPECT_FLOAT_EQ(y[static_cast<size_t>(d)], x[static_cast<size_t>(d)]);
}

TEST(Ops, LayerNorm) {
  const int64_t N = 5, C = 12;
  auto x = randn({N, C}, 9, 2.0f, 0.5f), g = randn({C}, 10, 0.3f, 1.0f), b = randn({C}, 11);
  auto dy = randn({N, C}, 12);
  HostF32 y({N, C}), mean({N}), rstd({N});
  k::layernorm_forward(y.t, mean.t, rstd.t, x.t, g.t, b.t, 1e-5f);
  auto f = [&](const std::vector<Vec>& in) {
    return ref::layernorm(in[0], in[1], in[2], N, C, 1e-5);
  };
  const std::vector<Vec> in = {x.d(), g.d(), b.d()};
  EXPECT_LT(rel_err(y.v, f(in)), kFwdTol);
  HostF32 dx({N, C}), dg({C}), db({C});
  k::layernorm_backward(dx.t, dg.t, db.t, dy.t, x.t, g.t, mean.t, rstd.t);
  EXPECT_LT(rel_err(dx.v, fd_of(f, in, 0, dy.d())), kGradTol);
  EXPECT_LT(rel_err(dg.v, fd_of(f, in, 1, dy.d())), kGradTol);
  EXPECT_LT(rel_err(db.v, fd_of(f, in, 2, dy.d())), kGradTol);
}

TEST(Ops, RMSNormFiniteDifferencesAndScaleInvariance) {
  const int64_t N = 5, C = 16;
  const float eps = 1e-6f;
  auto x = randn({N, C}, 13, 1.5f), g = randn({C}, 14, 0.3f, 1.0f), dy = randn({N, C}, 15);
  HostF32 y({N, C}), rstd({N});
  k::rmsnorm_forward(y.t, rstd.t, x.t, g.t, eps);
  auto f = [&](const std::vector<Vec>& in) { return ref::rmsnorm(in[0], in[1], N, C, eps); };
  const std::vector<Vec> in = {x.d(), g.d()};
  EXPECT_LT(rel_err(y.v, f(in)), kFwdTol);
  HostF32 dx({N, C}), dg({C});
  k::rmsnorm_backward(dx.t, dg.t, dy.t, x.t, g.t, rstd.t);
  EXPECT_LT(rel_err(dx.v, fd_of(f, in, 0, dy.d())), kGradTol);
  EXPECT_LT(rel_err(dg.v, fd_of(f, in, 1, dy.d())), kGradTol);
  // Mix-LN spec T5: RMSNorm(c x) = RMSNorm(x) for c > 0, up to eps.
  HostF32 xs = x, ys({N, C});
  for (auto& e : xs.v) e *= 7.5f;
  k::rmsnorm_forward(ys.t, rstd.t, xs.t, g.t, eps);
  EXPECT_LT(rel_err(ys.v, y.d()), 1e-5);
}

TEST(Ops, Gelu) {
  auto x = randn({40}, 16, 2.0f), dy = randn({40}, 17);
  HostF32 y({40}), dx({40});
  k::gelu_forward(y.t, x.t);
  auto f = [&](const std::vector<Vec>& in) { return ref::gelu(in[0]); };
  EXPECT_LT(rel_err(y.v, f({x.d()})), kFwdTol);
  k::gelu_backward(dx.t, dy.t, x.t);
  EXPECT_LT(rel_err(dx.v, fd_of(f, {x.d()}, 0, dy.d())), kGradTol);
}

TEST(Ops, SwiGLU) {
  const int64_t N = 4, F = 6;
  auto x = randn({N, 2 * F}, 18, 2.0f), dy = randn({N, F}, 19);
  HostF32 y({N, F}), dx({N, 2 * F});
  k::swiglu_forward(y.t, x.t);
  auto f = [&](const std::vector<Vec>& in) { return ref::swiglu(in[0], N, F); };
  EXPECT_LT(rel_err(y.v, f({x.d()})), kFwdTol);
  k::swiglu_backward(dx.t, dy.t, x.t);
  EXPECT_LT(rel_err(dx.v, fd_of(f, {x.d()}, 0, dy.d())), kGradTol);
}

TEST(Ops, SplitAndMergeHeadsAreInversePermutations) {
  const int64_t B = 2, T = 3, H = 2, D = 4, C = H * D;
  auto qkv = randn({B, T, 3 * C}, 20);
  HostF32 q({B, H, T, D}), kk({B, H, T, D}), v({B, H, T, D});
  k::split_heads(q.t, kk.t, v.t, qkv.t);
  // q[b,h,t,d] = qkv[b,t,0*C + h*D + d], k at +C, v at +2C.
  EXPECT_EQ(q[((1 * H + 1) * T + 2) * D + 3], qkv[(1 * T + 2) * 3 * C + 1 * D + 3]);
  EXPECT_EQ(kk[((0 * H + 1) * T + 1) * D + 0], qkv[(0 * T + 1) * 3 * C + C + 1 * D]);
  EXPECT_EQ(v[0], qkv[2 * C]);
  HostF32 back({B, T, 3 * C});
  k::split_heads_backward(back.t, q.t, kk.t, v.t);
  EXPECT_EQ(back.v, qkv.v);
  HostF32 merged({B, T, C}), o({B, H, T, D});
  k::merge_heads(merged.t, q.t);
  k::merge_heads_backward(o.t, merged.t);
  EXPECT_EQ(o.v, q.v);
}

struct AttnCase {
  int64_t BH, T, D;
  bool causal;
};

class Attention : public ::testing::TestWithParam<AttnCase> {};

TEST_P(Attention, MatchesReferenceAndFiniteDifferences) {
  const auto c = GetParam();
  auto q = randn({1, c.BH, c.T, c.D}, 21), kk = randn({1, c.BH, c.T, c.D}, 22);
  auto v = randn({1, c.BH, c.T, c.D}, 23), dy = randn({1, c.BH, c.T, c.D}, 24);
  HostF32 o({1, c.BH, c.T, c.D}), lse({1, c.BH, c.T});
  k::attention_forward(o.t, lse.t, q.t, kk.t, v.t, c.causal);
  const std::vector<Vec> in = {q.d(), kk.d(), v.d()};
  auto f = [&](const std::vector<Vec>& x) {
    return ref::attention(x[0], x[1], x[2], c.BH, c.T, c.D, c.causal).first;
  };
  const auto [ro, rl] = ref::attention(in[0], in[1], in[2], c.BH, c.T, c.D, c.causal);
  EXPECT_LT(rel_err(o.v, ro), kFwdTol);
  EXPECT_LT(rel_err(lse.v, rl), kFwdTol);
  HostF32 dq({1, c.BH, c.T, c.D}), dk({1, c.BH, c.T, c.D}), dv({1, c.BH, c.T, c.D});
  k::attention_backward(dq.t, dk.t, dv.t, dy.t, q.t, kk.t, v.t, o.t, lse.t, c.causal);
  EXPECT_LT(rel_err(dq.v, fd_of(f, in, 0, dy.d())), kGradTol);
  EXPECT_LT(rel_err(dk.v, fd_of(f, in, 1, dy.d())), kGradTol);
  EXPECT_LT(rel_err(dv.v, fd_of(f, in, 2, dy.d())), kGradTol);
}

// Sizes straddle the kernel's 32-query / 64-key blocks (partial blocks, several blocks).
INSTANTIATE_TEST_SUITE_P(Shapes, Attention,
                         ::testing::Values(AttnCase{2, 5, 4, true}, AttnCase{1, 37, 8, true},
                                           AttnCase{1, 70, 4, true}, AttnCase{2, 33, 6, false},
                                           AttnCase{1, 1, 8, true}),
                         [](const auto& info) {
                           const AttnCase& c = info.param;
                           return "BH" + std::to_string(c.BH) + "_T" + std::to_string(c.T) + "_D" +
                                  std::to_string(c.D) + (c.causal ? "_causal" : "_full");
                         });

// T = 4096: the blocked kernel must not need T x T memory; the forward is checked row by row
// against the double reference on a subset of rows (the reference is O(T^2 D)).
TEST(Ops, AttentionLongContext4096) {
  const int64_t T = 4096, D = 16;
  auto q = randn({1, 1, T, D}, 25), kk = randn({1, 1, T, D}, 26), v = randn({1, 1, T, D}, 27);
  HostF32 o({1, 1, T, D}), lse({1, 1, T});
  k::attention_forward(o.t, lse.t, q.t, kk.t, v.t, true);
  const auto [ro, rl] = ref::attention(q.d(), kk.d(), v.d(), 1, T, D, true);
  EXPECT_LT(rel_err(o.v, ro), 1e-4);
  EXPECT_LT(rel_err(lse.v, rl), 1e-5);
  HostF32 dq({1, 1, T, D}), dk({1, 1, T, D}), dv({1, 1, T, D});
  auto dy = randn({1, 1, T, D}, 28);
  k::attention_backward(dq.t, dk.t, dv.t, dy.t, q.t, kk.t, v.t, o.t, lse.t, true);
  // Directional derivative check: <grad, u> vs (L(x + h u) - L(x - h u)) / 2h for random u.
  auto u = randn({1, 1, T, D}, 29);
  const double h = 1e-3;
  Vec qp = q.d(), qm = q.d();
  for (size_t i = 0; i < qp.size(); ++i) {
    qp[i] += h * u[i];
    qm[i] -= h * u[i];
  }
  const double fd = (dot(ref::attention(qp, kk.d(), v.d(), 1, T, D, true).first, dy.d()) -
                     dot(ref::attention(qm, kk.d(), v.d(), 1, T, D, true).first, dy.d())) /
                    (2 * h);
  EXPECT_NEAR(dot(dq.d(), u.d()), fd, 1e-3 * std::fabs(fd) + 1e-3);
}

TEST(Ops, LmHeadCrossEntropyChunkedEqualsReference) {
  const int64_t N = 7, C = 5, V = 11;
  auto h = randn({N, C}, 30), w = randn({V, C}, 31);
  HostI32 tgt({N});
  const int32_t ids[] = {0, 10, 3, -1, 5, 5, 2};  // -1: ignored position
  std::copy(std::begin(ids), std::end(ids), tgt.v.begin());
  for (int64_t R : {1, 3, 7, 16}) {
    HostF32 losses({N}), ws({R, V}), dh({N, C}), dw({V, C});
    const float dloss = 0.25f;
    k::lm_head_xent(losses.t, ws.t, h.t, w.t, tgt.t, dloss, dh.t, dw.t);
    auto f = [&](const std::vector<Vec>& in) { return ref::xent(in[0], in[1], tgt.v, N, C, V); };
    const std::vector<Vec> in = {h.d(), w.d()};
    EXPECT_LT(rel_err(losses.v, f(in)), kFwdTol) << "R=" << R;
    EXPECT_EQ(losses[3], 0.0f);
    const Vec wl(static_cast<size_t>(N), dloss);
    EXPECT_LT(rel_err(dh.v, fd_of(f, in, 0, wl)), kGradTol) << "R=" << R;
    EXPECT_LT(rel_err(dw.v, fd_of(f, in, 1, wl)), kGradTol) << "R=" << R;
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(dh[static_cast<size_t>(3 * C + c)], 0.0f);
    // Forward-only call gives the same losses.
    HostF32 l2({N});
    k::lm_head_xent(l2.t, ws.t, h.t, w.t, tgt.t, 0.0f, Tensor(), Tensor());
    EXPECT_EQ(l2.v, losses.v);
  }
}

// Tensor parallel pieces: the vocabulary cut into parts, each part's embedding rows and head
// rows used alone; the parts' results combined as the model combines them (sum of embeddings;
// log-sum-exp of part lse's, sum of target logits; sum of dhidden shares) equal the whole.
TEST(Ops, VocabParallelEmbeddingAndCrossEntropyEqualTheWhole) {
  const int64_t B = 2, T = 4, N = B * T, C = 5, V = 12;
  HostI32 tok({B, T}), tgt({N});
  const int32_t ids[] = {0, 11, 3, 5, 6, 2, 9, 7};
  const int32_t tids[] = {11, 3, -1, 0, 6, 6, 8, 2};
  std::copy(std::begin(ids), std::end(ids), tok.v.begin());
  std::copy(std::begin(tids), std::end(tids), tgt.v.begin());
  auto wte = randn({V, C}, 40), h = randn({N, C}, 41), dy = randn({N, C}, 42);
  HostF32 emb({N, C}), dwte({V, C}), losses({N}), ws({3, V}), dh({N, C}), dw({V, C});
  k::embedding_forward(emb.t, tok.t, wte.t, Tensor());
  k::embedding_backward(dwte.t, Tensor(), dy.t, tok.t);
  const float dloss = 0.5f;
  k::lm_head_xent(losses.t, ws.t, h.t, wte.t, tgt.t, dloss, dh.t, dw.t);
  for (int64_t parts : {2, 3, 4}) {
    const int64_t Vl = V / parts;
    HostF32 emb_sum({N, C}), dh_sum({N, C}), lse_parts({parts, N}), tl_sum({N});
    std::vector<float> dwte_all, dw_all;
    for (int64_t r = 0; r < parts; ++r) {
      HostF32 wte_r({Vl, C}), e_r({N, C}), dwte_r({Vl, C}), ws_r({3, Vl}), tl({N}), dh_r({N, C}),
          dw_r({Vl, C}), row_lse({N});
      std::copy_n(wte.v.begin() + r * Vl * C, Vl * C, wte_r.v.begin());
      k::embedding_forward(e_r.t, tok.t, wte_r.t, Tensor(), r * Vl);
      k::accumulate(emb_sum.t, e_r.t);
      k::embedding_backward(dwte_r.t, Tensor(), dy.t, tok.t, r * Vl);
      dwte_all.insert(dwte_all.end(), dwte_r.v.begin(), dwte_r.v.end());
      HostF32 lse_r({N});
      k::lm_head_lse(lse_r.t, tl.t, ws_r.t, h.t, wte_r.t, tgt.t, r * Vl);
      std::copy(lse_r.v.begin(), lse_r.v.end(), lse_parts.v.begin() + r * N);
      k::accumulate(tl_sum.t, tl.t);
    }
    HostF32 row_lse({N});
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t r = 0; r < parts; ++r) s += std::exp(static_cast<double>(lse_parts[r * N + n]));
      row_lse[static_cast<size_t>(n)] = static_cast<float>(std::log(s));
      const double loss = tgt.v[static_cast<size_t>(n)] < 0 ? 0.0 : std::log(s) - tl_sum[n];
      EXPECT_NEAR(loss, losses[static_cast<size_t>(n)], 1e-5) << "parts " << parts << " row " << n;
    }
    for (int64_t r = 0; r < parts; ++r) {
      HostF32 wte_r({Vl, C}), ws_r({3, Vl}), dh_r({N, C}), dw_r({Vl, C});
      std::copy_n(wte.v.begin() + r * Vl * C, Vl * C, wte_r.v.begin());
      k::lm_head_xent_backward(ws_r.t, h.t, wte_r.t, tgt.t, row_lse.t, r * Vl, dloss, dh_r.t,
                               dw_r.t);
      k::accumulate(dh_sum.t, dh_r.t);
      dw_all.insert(dw_all.end(), dw_r.v.begin(), dw_r.v.end());
    }
    EXPECT_EQ(emb_sum.v, emb.v) << "parts " << parts;  // one nonzero part per row: exact
    EXPECT_EQ(dwte_all, dwte.v) << "parts " << parts;
    EXPECT_LT(rel_err(dh_sum.v, dh.d()), 1e-5) << "parts " << parts;
    EXPECT_LT(rel_err(dw_all, dw.d()), 1e-5) << "parts " << parts;
  }
}

TEST(Ops, ElementwiseAndSumSquares) {
  auto a = randn({100}, 32), b = randn({100}, 33);
  HostF32 c({100});
  k::add(c.t, a.t, b.t);
  for (size_t i = 0; i < 100; ++i) EXPECT_EQ(c[i], a[i] + b[i]);
  k::accumulate(c.t, a.t);
  for (size_t i = 0; i < 100; ++i) EXPECT_EQ(c[i], (a[i] + b[i]) + a[i]);
  k::scale(c.t, 0.5f);
  double ss = 0;
  for (size_t i = 0; i < 100; ++i) ss += static_cast<double>(c[i]) * c[i];
  EXPECT_NEAR(k::sum_squares(c.t), ss, 1e-12 * ss);
  // Larger than one chunk: order-independent and exact to double rounding.
  auto big = randn({100000}, 34);
  double s2 = 0;
  for (float x : big.v) s2 += static_cast<double>(x) * x;
  EXPECT_NEAR(k::sum_squares(big.t), s2, 1e-9 * s2);
}

TEST(Ops, AdamWMatchesClosedForm) {
  auto p = randn({50}, 35), g = randn({50}, 36);
  HostF32 m({50}), v({50});
  HostF32 p0 = p;
  k::AdamWParams hp;
  hp.lr = 0.01f;
  hp.beta1 = 0.9f;
  hp.beta2 = 0.99f;
  hp.eps = 1e-8f;
  hp.weight_decay = 0.1f;
  hp.grad_scale = 0.5f;
  for (int64_t step = 1; step <= 3; ++step) {
    hp.step = step;
    k::adamw_update(p.t, g.t, m.t, v.t, hp);
  }
  for (size_t i = 0; i < 50; ++i) {
    double pp = p0[i], mm = 0, vv = 0;
    for (int step = 1; step <= 3; ++step) {
      const double gg = 0.5 * g[i];
      mm = 0.9 * mm + 0.1 * gg;
      vv = 0.99 * vv + 0.01 * gg * gg;
      const double mh = mm / (1 - std::pow(0.9, step)), vh = vv / (1 - std::pow(0.99, step));
      pp -= 0.01 * (mh / (std::sqrt(vh) + 1e-8) + 0.1 * pp);
    }
    EXPECT_NEAR(p[i], pp, 1e-5 * (1 + std::fabs(pp)));
  }
}

TEST(Ops, ShapeMismatchIsReportedWithShapes) {
  HostF32 out({3, 4}), inp({3, 5}), w({4, 6});
  try {
    k::matmul_forward(out.t, inp.t, w.t);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("matmul_forward"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[3,5]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sparta::test
