// Every CUDA op against the CPU op on the same inputs (the CPU op is itself checked against
// double references in tests/unit/test_ops.cpp). Skipped when no GPU is present.
#include <gtest/gtest.h>

#include "kernels/ops.h"
#include "tests/common/device_util.h"

namespace sparta::test {
namespace {

namespace k = sparta::kernels;
constexpr double kTol = 1e-5;  // fp32 vs fp32 with different summation orders

std::vector<double> host_d(const HostF32& h) {
  return h.d();
}

TEST(CudaOps, Matmul) {
  SPARTA_REQUIRE_GPU();
  const int64_t N = 33, IC = 70, OC = 45;
  auto x = randn({N, IC}, 1), w = randn({OC, IC}, 2), dy = randn({N, OC}, 3);
  HostF32 y({N, OC}), dx({N, IC}), dw({OC, IC});
  k::matmul_forward(y.t, x.t, w.t);
  k::matmul_backward(dx.t, dw.t, dy.t, x.t, w.t);
  DeviceTensor gx(x), gw(w), gdy(dy), gy(y), gdx(HostF32({N, IC})), gdw(HostF32({OC, IC}));
  k::matmul_forward(gy.t, gx.t, gw.t);
  k::matmul_backward(gdx.t, gdw.t, gdy.t, gx.t, gw.t);
  EXPECT_LT(rel_err(gy.to_host(), host_d(y)), kTol);
  EXPECT_LT(rel_err(gdx.to_host(), host_d(dx)), kTol);
  EXPECT_LT(rel_err(gdw.to_host(), host_d(dw)), kTol);
}

TEST(CudaOps, EmbeddingAndRope) {
  SPARTA_REQUIRE_GPU();
  const int64_t B = 2, T = 40, C = 16, V = 50, H = 2, D = 8;
  HostI32 tok({B, T});
  for (size_t i = 0; i < tok.v.size(); ++i) tok.v[i] = static_cast<int32_t>((i * 7) % V);
  auto wte = randn({V, C}, 4), wpe = randn({T, C}, 5), dy = randn({B * T, C}, 6);
  HostF32 y({B * T, C}), dwte({V, C}), dwpe({T, C});
  k::embedding_forward(y.t, tok.t, wte.t, wpe.t);
  k::embedding_backward(dwte.t, dwpe.t, dy.t, tok.t);
  DeviceTensor gtok(tok), gwte(wte), gwpe(wpe), gdy(dy), gy(y), gdwte(HostF32({V, C})),
      gdwpe(HostF32({T, C}));
  k::embedding_forward(gy.t, gtok.t, gwte.t, gwpe.t);
  k::embedding_backward(gdwte.t, gdwpe.t, gdy.t, gtok.t);
  EXPECT_LT(rel_err(gy.to_host(), host_d(y)), kTol);
  EXPECT_LT(rel_err(gdwte.to_host(), host_d(dwte)), kTol);
  EXPECT_LT(rel_err(gdwpe.to_host(), host_d(dwpe)), kTol);

  auto x = randn({B, H, T, D}, 7);
  HostF32 xr = x;
  DeviceTensor gxr(x);
  k::rope_forward(xr.t, 10000.0f);
  k::rope_forward(gxr.t, 10000.0f);
  EXPECT_LT(rel_err(gxr.to_host(), host_d(xr)), kTol);
  k::rope_backward(xr.t, 10000.0f);
  k::rope_backward(gxr.t, 10000.0f);
  EXPECT_LT(rel_err(gxr.to_host(), host_d(xr)), kTol);
}

TEST(CudaOps, Norms) {
  SPARTA_REQUIRE_GPU();
  const int64_t N = 37, C = 96;
  auto x = randn({N, C}, 8, 2.0f, 0.3f), g = randn({C}, 9, 0.2f, 1.0f), b = randn({C}, 10);
  auto dy = randn({N, C}, 11);
  HostF32 y({N, C}), mean({N}), rstd({N}), dx({N, C}), dg({C}), db({C});
  k::layernorm_forward(y.t, mean.t, rstd.t, x.t, g.t, b.t, 1e-5f);
  k::layernorm_backward(dx.t, dg.t, db.t, dy.t, x.t, g.t, mean.t, rstd.t);
  DeviceTensor gx(x), gg(g), gb(b), gdy(dy), gy(y), gmean(mean), grstd(rstd), gdx(HostF32({N, C})),
      gdg(HostF32({C})), gdb(HostF32({C}));
  k::layernorm_forward(gy.t, gmean.t, grstd.t, gx.t, gg.t, gb.t, 1e-5f);
  k::layernorm_backward(gdx.t, gdg.t, gdb.t, gdy.t, gx.t, gg.t, gmean.t, grstd.t);
  EXPECT_LT(rel_err(gy.to_host(), host_d(y)), kTol);
  EXPECT_LT(rel_err(gdx.to_host(), host_d(dx)), kTol);
  EXPECT_LT(rel_err(gdg.to_host(), host_d(dg)), kTol);
  EXPECT_LT(rel_err(gdb.to_host(), host_d(db)), kTol);

  HostF32 ry({N, C}), rr({N}), rdx({N, C}), rdg({C});
  k::rmsnorm_forward(ry.t, rr.t, x.t, g.t, 1e-6f);
  k::rmsnorm_backward(rdx.t, rdg.t, dy.t, x.t, g.t, rr.t);
  DeviceTensor gry(ry), grr(rr), grdx(HostF32({N, C})), grdg(HostF32({C}));
  k::rmsnorm_forward(gry.t, grr.t, gx.t, gg.t, 1e-6f);
  k::rmsnorm_backward(grdx.t, grdg.t, gdy.t, gx.t, gg.t, grr.t);
  EXPECT_LT(rel_err(gry.to_host(), host_d(ry)), kTol);
  EXPECT_LT(rel_err(grdx.to_host(), host_d(rdx)), kTol);
  EXPECT_LT(rel_err(grdg.to_host(), host_d(rdg)), kTol);
}

TEST(CudaOps, Activations) {
  SPARTA_REQUIRE_GPU();
  const int64_t N = 19, F = 33;
  auto x = randn({N, 2 * F}, 12, 2.0f), dyf = randn({N, F}, 13), dyg = randn({N, 2 * F}, 14);
  HostF32 s({N, F}), ds({N, 2 * F}), ge({N, 2 * F}), dge({N, 2 * F});
  k::swiglu_forward(s.t, x.t);
  k::swiglu_backward(ds.t, dyf.t, x.t);
  k::gelu_forward(ge.t, x.t);
  k::gelu_backward(dge.t, dyg.t, x.t);
  DeviceTensor gx(x), gdyf(dyf), gdyg(dyg), gs(s), gds(HostF32({N, 2 * F})), gge(ge),
      gdge(HostF32({N, 2 * F}));
  k::swiglu_forward(gs.t, gx.t);
  k::swiglu_backward(gds.t, gdyf.t, gx.t);
  k::gelu_forward(gge.t, gx.t);
  k::gelu_backward(gdge.t, gdyg.t, gx.t);
  EXPECT_LT(rel_err(gs.to_host(), host_d(s)), kTol);
  EXPECT_LT(rel_err(gds.to_host(), host_d(ds)), kTol);
  EXPECT_LT(rel_err(gge.to_host(), host_d(ge)), kTol);
  EXPECT_LT(rel_err(gdge.to_host(), host_d(dge)), kTol);
}

TEST(CudaOps, HeadsAndAttention) {
  SPARTA_REQUIRE_GPU();
  for (bool causal : {true, false}) {
    const int64_t B = 2, H = 3, T = 77, D = 40, C = H * D;
    auto qkv = randn({B, T, 3 * C}, 15);
    HostF32 q({B, H, T, D}), kk({B, H, T, D}), v({B, H, T, D}), o({B, H, T, D}), lse({B, H, T});
    k::split_heads(q.t, kk.t, v.t, qkv.t);
    k::attention_forward(o.t, lse.t, q.t, kk.t, v.t, causal);
    auto dy = randn({B, H, T, D}, 16);
    HostF32 dq({B, H, T, D}), dk({B, H, T, D}), dv({B, H, T, D}), dqkv({B, T, 3 * C}),
        merged({B, T, C});
    k::attention_backward(dq.t, dk.t, dv.t, dy.t, q.t, kk.t, v.t, o.t, lse.t, causal);
    k::split_heads_backward(dqkv.t, dq.t, dk.t, dv.t);
    k::merge_heads(merged.t, o.t);

    DeviceTensor gqkv(qkv), gq(q), gk(kk), gv(v), go(o), glse(lse), gdy(dy);
    DeviceTensor gdq(HostF32({B, H, T, D})), gdk(HostF32({B, H, T, D})), gdv(HostF32({B, H, T, D})),
        gdqkv(HostF32({B, T, 3 * C})), gmerged(merged);
    k::split_heads(gq.t, gk.t, gv.t, gqkv.t);
    EXPECT_EQ(gq.to_host(), host_d(q));
    k::attention_forward(go.t, glse.t, gq.t, gk.t, gv.t, causal);
    EXPECT_LT(rel_err(go.to_host(), host_d(o)), kTol);
    EXPECT_LT(rel_err(glse.to_host(), host_d(lse)), kTol);
    k::attention_backward(gdq.t, gdk.t, gdv.t, gdy.t, gq.t, gk.t, gv.t, go.t, glse.t, causal);
    EXPECT_LT(rel_err(gdq.to_host(), host_d(dq)), 1e-4);
    EXPECT_LT(rel_err(gdk.to_host(), host_d(dk)), 1e-4);
    EXPECT_LT(rel_err(gdv.to_host(), host_d(dv)), 1e-4);
    k::split_heads_backward(gdqkv.t, gdq.t, gdk.t, gdv.t);
    EXPECT_LT(rel_err(gdqkv.to_host(), host_d(dqkv)), 1e-4);
    k::merge_heads(gmerged.t, go.t);
    EXPECT_LT(rel_err(gmerged.to_host(), host_d(merged)), kTol);
  }
}

TEST(CudaOps, LmHeadCrossEntropy) {
  SPARTA_REQUIRE_GPU();
  const int64_t N = 50, C = 32, V = 300, R = 16;
  auto h = randn({N, C}, 17), w = randn({V, C}, 18, 0.2f);
  HostI32 tgt({N});
  for (size_t i = 0; i < tgt.v.size(); ++i)
    tgt.v[i] = i % 9 == 4 ? -1 : static_cast<int32_t>((i * 31) % V);
  HostF32 losses({N}), ws({R, V}), dh({N, C}), dw({V, C});
  k::lm_head_xent(losses.t, ws.t, h.t, w.t, tgt.t, 0.02f, dh.t, dw.t);
  DeviceTensor gh(h), gw(w), gt(tgt), gl(losses), gws(ws), gdh(HostF32({N, C})),
      gdw(HostF32({V, C}));
  k::lm_head_xent(gl.t, gws.t, gh.t, gw.t, gt.t, 0.02f, gdh.t, gdw.t);
  EXPECT_LT(rel_err(gl.to_host(), host_d(losses)), kTol);
  EXPECT_LT(rel_err(gdh.to_host(), host_d(dh)), kTol);
  EXPECT_LT(rel_err(gdw.to_host(), host_d(dw)), kTol);
}

// The vocab-parallel pieces on one part of the vocabulary (rows [vb, vb + Vl) of the head).
TEST(CudaOps, VocabParallelPieces) {
  SPARTA_REQUIRE_GPU();
  const int64_t B = 2, T = 25, N = B * T, C = 32, Vl = 100, vb = 100, R = 16;
  auto h = randn({N, C}, 19), w = randn({Vl, C}, 20, 0.2f), dy = randn({N, C}, 21);
  HostI32 tgt({N}), tok({B, T});
  for (size_t i = 0; i < tgt.v.size(); ++i) {
    tgt.v[i] = i % 9 == 4 ? -1 : static_cast<int32_t>((i * 31) % 300);  // some in [100, 200)
    tok.v[i] = static_cast<int32_t>((i * 37) % 300);
  }
  HostF32 lse({N}), tl({N}), ws({R, Vl}), row_lse({N}), dh({N, C}), dw({Vl, C}), emb({N, C}),
      dwte({Vl, C});
  k::lm_head_lse(lse.t, tl.t, ws.t, h.t, w.t, tgt.t, vb);
  for (size_t i = 0; i < row_lse.v.size(); ++i) row_lse.v[i] = lse.v[i] + 0.5f;  // other parts
  k::lm_head_xent_backward(ws.t, h.t, w.t, tgt.t, row_lse.t, vb, 0.02f, dh.t, dw.t);
  k::embedding_forward(emb.t, tok.t, w.t, Tensor(), vb);
  k::embedding_backward(dwte.t, Tensor(), dy.t, tok.t, vb);
  DeviceTensor gh(h), gw(w), gt(tgt), gtok(tok), gdy(dy), glse(lse), gtl(tl), gws(ws), grl(row_lse),
      gdh(HostF32({N, C})), gdw(HostF32({Vl, C})), gemb(emb), gdwte(HostF32({Vl, C}));
  k::lm_head_lse(glse.t, gtl.t, gws.t, gh.t, gw.t, gt.t, vb);
  k::lm_head_xent_backward(gws.t, gh.t, gw.t, gt.t, grl.t, vb, 0.02f, gdh.t, gdw.t);
  k::embedding_forward(gemb.t, gtok.t, gw.t, Tensor(), vb);
  k::embedding_backward(gdwte.t, Tensor(), gdy.t, gtok.t, vb);
  EXPECT_LT(rel_err(glse.to_host(), host_d(lse)), kTol);
  EXPECT_LT(rel_err(gtl.to_host(), host_d(tl)), kTol);
  EXPECT_LT(rel_err(gdh.to_host(), host_d(dh)), kTol);
  EXPECT_LT(rel_err(gdw.to_host(), host_d(dw)), kTol);
  EXPECT_LT(rel_err(gemb.to_host(), host_d(emb)), kTol);
  EXPECT_LT(rel_err(gdwte.to_host(), host_d(dwte)), kTol);
}

TEST(CudaOps, ElementwiseReductionAdamW) {
  SPARTA_REQUIRE_GPU();
  const int64_t n = 100003;
  auto a = randn({n}, 19), b = randn({n}, 20);
  HostF32 c({n});
  k::add(c.t, a.t, b.t);
  k::accumulate(c.t, a.t);
  k::scale(c.t, 0.3f);
  DeviceTensor ga(a), gb(b), gc(c);
  k::add(gc.t, ga.t, gb.t);
  k::accumulate(gc.t, ga.t);
  k::scale(gc.t, 0.3f);
  EXPECT_LT(rel_err(gc.to_host(), host_d(c)), 1e-7);
  EXPECT_NEAR(k::sum_squares(gc.t), k::sum_squares(c.t), 1e-9 * k::sum_squares(c.t));

  HostF32 m({n}), v({n});
  DeviceTensor gm(m), gv(v), gp(a), gg(b);
  k::AdamWParams hp;
  hp.lr = 1e-2f;
  hp.weight_decay = 0.1f;
  hp.grad_scale = 0.7f;
  for (int64_t s = 1; s <= 3; ++s) {
    hp.step = s;
    k::adamw_update(a.t, b.t, m.t, v.t, hp);
    k::adamw_update(gp.t, gg.t, gm.t, gv.t, hp);
  }
  EXPECT_LT(rel_err(gp.to_host(), host_d(a)), 1e-6);
}

}  // namespace
}  // namespace sparta::test
