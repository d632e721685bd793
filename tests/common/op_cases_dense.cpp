// The dense ops' cases of the op table (tests/common/op_cases.h).
#include "kernels/ops.h"
#include "tests/common/op_cases.h"
#include "tests/common/reference_ops.h"

namespace sparta::test {

namespace k = sparta::kernels;
using Refs = std::vector<std::pair<std::string, std::vector<double>>>;
using Outs = std::vector<OpOutput>;
using B = OpBackend;
using ref::Vec;

namespace {
constexpr double kTol = 1e-5;  // fp32 vs fp32 with different summation orders

OpCase matmul() {
  const int64_t N = 33, IC = 70, OC = 45;
  auto in = [] { return std::tuple{randn({N, IC}, 1), randn({OC, IC}, 2), randn({N, OC}, 3)}; };
  return {"matmul", "N33_IC70_OC45", k::DType::f32,
          [in](B& be) {
            auto [x, w, dy] = in();
            const Tensor tx = be.put(x), tw = be.put(w), tdy = be.put(dy);
            const Tensor y = be.zeros({N, OC}), dx = be.zeros({N, IC}), dw = be.zeros({OC, IC});
            k::matmul_forward(y, tx, tw);
            k::matmul_backward(dx, dw, tdy, tx, tw);
            return Outs{{"y", B::get(y), kTol}, {"dx", B::get(dx), kTol}, {"dw", B::get(dw), kTol}};
          },
          [in] {
            auto [x, w, dy] = in();
            return Refs{{"y", ref::matmul(x.d(), w.d(), N, IC, OC)}};
          }};
}

OpCase embedding_rope() {
  const int64_t Bn = 2, T = 40, C = 16, V = 50, H = 2, D = 8;
  auto tokens = [] {
    HostI32 tok({Bn, T});
    for (size_t i = 0; i < tok.v.size(); ++i) tok.v[i] = static_cast<int32_t>((i * 7) % V);
    return tok;
  };
  return {
      "embedding_rope", "B2_T40_C16_V50_H2_D8", k::DType::f32,
      [tokens](B& be) {
        const Tensor tok = be.put(tokens()), wte = be.put(randn({V, C}, 4)),
                     wpe = be.put(randn({T, C}, 5)), dy = be.put(randn({Bn * T, C}, 6));
        const Tensor y = be.zeros({Bn * T, C}), dwte = be.zeros({V, C}), dwpe = be.zeros({T, C});
        k::embedding_forward(y, tok, wte, wpe);
        k::embedding_backward(dwte, dwpe, dy, tok);
        const Tensor x = be.put(randn({Bn, H, T, D}, 7));
        k::rope_forward(x, 10000.0f);
        Outs out{{"y", B::get(y), kTol},
                 {"dwte", B::get(dwte), kTol},
                 {"dwpe", B::get(dwpe), kTol},
                 {"rope", B::get(x), kTol}};
        k::rope_backward(x, 10000.0f);
        out.push_back({"rope_back", B::get(x), kTol});
        return out;
      },
      [tokens] {
        const Vec wpe = randn({T, C}, 5).d();
        return Refs{{"y", ref::embedding(tokens().v, randn({V, C}, 4).d(), &wpe, Bn, T, C)},
                    {"rope", ref::rope(randn({Bn, H, T, D}, 7).d(), Bn * H, T, D, 10000.0)}};
      }};
}

OpCase norms() {
  const int64_t N = 37, C = 96;
  auto in = [] {
    return std::tuple{randn({N, C}, 8, 2.0f, 0.3f), randn({C}, 9, 0.2f, 1.0f), randn({C}, 10),
                      randn({N, C}, 11)};
  };
  return {"norms", "N37_C96", k::DType::f32,
          [in](B& be) {
            auto [hx, hg, hb, hdy] = in();
            const Tensor x = be.put(hx), g = be.put(hg), b = be.put(hb), dy = be.put(hdy);
            const Tensor y = be.zeros({N, C}), mean = be.zeros({N}), rstd = be.zeros({N}),
                         dx = be.zeros({N, C}), dg = be.zeros({C}), db = be.zeros({C});
            k::layernorm_forward(y, mean, rstd, x, g, b, 1e-5f);
            k::layernorm_backward(dx, dg, db, dy, x, g, mean, rstd);
            const Tensor ry = be.zeros({N, C}), rr = be.zeros({N}), rdx = be.zeros({N, C}),
                         rdg = be.zeros({C});
            k::rmsnorm_forward(ry, rr, x, g, 1e-6f);
            k::rmsnorm_backward(rdx, rdg, dy, x, g, rr);
            return Outs{{"ln_y", B::get(y), kTol},    {"ln_dx", B::get(dx), kTol},
                        {"ln_dg", B::get(dg), kTol},  {"ln_db", B::get(db), kTol},
                        {"rms_y", B::get(ry), kTol},  {"rms_dx", B::get(rdx), kTol},
                        {"rms_dg", B::get(rdg), kTol}};
          },
          [in] {
            auto [x, g, b, dy] = in();
            return Refs{{"ln_y", ref::layernorm(x.d(), g.d(), b.d(), N, C, 1e-5)},
                        {"rms_y", ref::rmsnorm(x.d(), g.d(), N, C, 1e-6)}};
          }};
}

OpCase activations() {
  const int64_t N = 19, F = 33;
  return {"activations", "N19_F33", k::DType::f32,
          [](B& be) {
            const Tensor x = be.put(randn({N, 2 * F}, 12, 2.0f)), dyf = be.put(randn({N, F}, 13)),
                         dyg = be.put(randn({N, 2 * F}, 14));
            const Tensor s = be.zeros({N, F}), ds = be.zeros({N, 2 * F}), ge = be.zeros({N, 2 * F}),
                         dge = be.zeros({N, 2 * F});
            k::swiglu_forward(s, x);
            k::swiglu_backward(ds, dyf, x);
            k::gelu_forward(ge, x);
            k::gelu_backward(dge, dyg, x);
            return Outs{{"swiglu", B::get(s), kTol},
                        {"swiglu_back", B::get(ds), kTol},
                        {"gelu", B::get(ge), kTol},
                        {"gelu_back", B::get(dge), kTol}};
          },
          [] {
            const Vec x = randn({N, 2 * F}, 12, 2.0f).d();
            return Refs{{"swiglu", ref::swiglu(x, N, F)}, {"gelu", ref::gelu(x)}};
          }};
}

OpCase heads_attention(bool causal) {
  const int64_t Bn = 2, H = 3, T = 77, D = 40, C = H * D;
  auto qkv_in = [] { return randn({Bn, T, 3 * C}, 15); };
  return {"heads_attention", causal ? "B2_H3_T77_D40_causal" : "B2_H3_T77_D40_full", k::DType::f32,
          [causal, qkv_in](B& be) {
            const Tensor qkv = be.put(qkv_in()), dy = be.put(randn({Bn, H, T, D}, 16));
            const Tensor q = be.zeros({Bn, H, T, D}), kk = be.zeros({Bn, H, T, D}),
                         v = be.zeros({Bn, H, T, D}), o = be.zeros({Bn, H, T, D}),
                         lse = be.zeros({Bn, H, T});
            k::split_heads(q, kk, v, qkv);
            k::attention_forward(o, lse, q, kk, v, causal);
            const Tensor dq = be.zeros({Bn, H, T, D}), dk = be.zeros({Bn, H, T, D}),
                         dv = be.zeros({Bn, H, T, D}), dqkv = be.zeros({Bn, T, 3 * C}),
                         merged = be.zeros({Bn, T, C});
            k::attention_backward(dq, dk, dv, dy, q, kk, v, o, lse, causal);
            k::split_heads_backward(dqkv, dq, dk, dv);
            k::merge_heads(merged, o);
            return Outs{{"q", B::get(q), 0},          {"o", B::get(o), kTol},
                        {"lse", B::get(lse), kTol},   {"dq", B::get(dq), 1e-4},
                        {"dk", B::get(dk), 1e-4},     {"dv", B::get(dv), 1e-4},
                        {"dqkv", B::get(dqkv), 1e-4}, {"merged", B::get(merged), kTol}};
          },
          [causal, qkv_in] {
            OpBackend cpu(k::Device::cpu());
            const Tensor qkv = cpu.put(qkv_in());
            const Tensor q = cpu.zeros({Bn, H, T, D}), kk = cpu.zeros({Bn, H, T, D}),
                         v = cpu.zeros({Bn, H, T, D});
            k::split_heads(q, kk, v, qkv);  // a permutation: exact
            const auto [ro, rl] =
                ref::attention(B::get(q), B::get(kk), B::get(v), Bn * H, T, D, causal);
            return Refs{{"o", ro}, {"lse", rl}};
          }};
}

// The ring's block steps (kernels/op_types.h AttnMask): a causal attention as two key windows
// merged by their log-sum-exps (the second leaves rows [0, T/3) empty: -inf, the merge's
// identity), both windows' backwards through the merged (o, lse); and a rectangular block (fewer
// queries than keys, the causal cut offset by diag).
OpCase block_attention() {
  const int64_t Bn = 2, H = 2, T = 77, Tq = 30, D = 40, h = T / 2, third = T / 3;
  auto in = [] {
    return std::tuple{randn({Bn, H, T, D}, 52),  randn({Bn, H, T, D}, 53),
                      randn({Bn, H, T, D}, 54),  randn({Bn, H, T, D}, 55),
                      randn({Bn, H, Tq, D}, 56), randn({Bn, H, Tq, D}, 57)};
  };
  const k::AttnMask first{0, T, 0, h, 0}, second{third, T, h, T, 0}, rect{0, Tq, 0, T, 40};
  return {"block_attention", "B2_H2_T77_D40_windows_merge_rect", k::DType::f32,
          [=](B& be) {
            auto [hq, hk, hv, hdy, hqr, hdyr] = in();
            const Tensor q = be.put(hq), kk = be.put(hk), v = be.put(hv), dy = be.put(hdy),
                         qr = be.put(hqr), dyr = be.put(hdyr);
            const Tensor o = be.zeros({Bn, H, T, D}), lse = be.zeros({Bn, H, T}),
                         op = be.zeros({Bn, H, T, D}), lp = be.zeros({Bn, H, T});
            k::attention_forward(o, lse, q, kk, v, first);
            k::attention_forward(op, lp, q, kk, v, second);
            k::attention_merge(o, lse, op, lp);
            const Tensor dq = be.zeros({Bn, H, T, D}), dk = be.zeros({Bn, H, T, D}),
                         dv = be.zeros({Bn, H, T, D});
            k::attention_backward(dq, dk, dv, dy, q, kk, v, o, lse, first);
            k::attention_backward(dq, dk, dv, dy, q, kk, v, o, lse, second);
            const Tensor ro = be.zeros({Bn, H, Tq, D}), rl = be.zeros({Bn, H, Tq}),
                         rdq = be.zeros({Bn, H, Tq, D}), rdk = be.zeros({Bn, H, T, D}),
                         rdv = be.zeros({Bn, H, T, D});
            k::attention_forward(ro, rl, qr, kk, v, rect);
            k::attention_backward(rdq, rdk, rdv, dyr, qr, kk, v, ro, rl, rect);
            return Outs{{"o", B::get(o), kTol},         {"lse", B::get(lse), kTol},
                        {"dq", B::get(dq), 1e-4},       {"dk", B::get(dk), 1e-4},
                        {"dv", B::get(dv), 1e-4},       {"rect_o", B::get(ro), kTol},
                        {"rect_lse", B::get(rl), kTol}, {"rect_dq", B::get(rdq), 1e-4},
                        {"rect_dk", B::get(rdk), 1e-4}, {"rect_dv", B::get(rdv), 1e-4}};
          },
          [=] {
            auto [hq, hk, hv, hdy, hqr, hdyr] = in();
            const auto [ro, rl] = ref::attention(hq.d(), hk.d(), hv.d(), Bn * H, T, D, true);
            const auto [xo, xl] =
                ref::block_attention(hqr.d(), hk.d(), hv.d(), Bn * H, Tq, T, D, 0, Tq, 0, T, 40);
            return Refs{{"o", ro}, {"lse", rl}, {"rect_o", xo}, {"rect_lse", xl}};
          }};
}

HostI32 xent_targets(int64_t N, int64_t V) {
  HostI32 tgt({N});
  for (size_t i = 0; i < tgt.v.size(); ++i)
    tgt.v[i] = i % 9 == 4 ? -1 : static_cast<int32_t>((i * 31) % V);
  return tgt;
}

OpCase lm_head_xent() {
  const int64_t N = 50, C = 32, V = 300, R = 16;
  return {"lm_head_xent", "N50_C32_V300_R16", k::DType::f32,
          [](B& be) {
            const Tensor h = be.put(randn({N, C}, 17)), w = be.put(randn({V, C}, 18, 0.2f)),
                         t = be.put(xent_targets(N, V));
            const Tensor losses = be.zeros({N}), ws = be.zeros({R, V}), dh = be.zeros({N, C}),
                         dw = be.zeros({V, C});
            k::lm_head_xent(losses, ws, h, w, t, 0.02f, dh, dw);
            return Outs{{"losses", B::get(losses), kTol},
                        {"dh", B::get(dh), kTol},
                        {"dw", B::get(dw), kTol}};
          },
          [] {
            return Refs{{"losses", ref::xent(randn({N, C}, 17).d(), randn({V, C}, 18, 0.2f).d(),
                                             xent_targets(N, V).v, N, C, V)}};
          }};
}

// The vocab-parallel pieces on one part of the vocabulary (rows [vb, vb + Vl) of the head).
OpCase vocab_parallel() {
  const int64_t Bn = 2, T = 25, N = Bn * T, C = 32, Vl = 100, vb = 100, R = 16;
  return {"vocab_parallel", "B2_T25_C32_Vl100_vb100", k::DType::f32,
          [](B& be) {
            HostI32 tgt({N}), tok({Bn, T});
            for (size_t i = 0; i < tgt.v.size(); ++i) {
              tgt.v[i] = i % 9 == 4 ? -1 : static_cast<int32_t>((i * 31) % 300);  // some in part
              tok.v[i] = static_cast<int32_t>((i * 37) % 300);
            }
            const HostF32 hh = randn({N, C}, 19), hw = randn({Vl, C}, 20, 0.2f);
            // The other parts' contribution (row lse = part lse + 0.5), from the CPU's lse so
            // that every backend gets the same input.
            HostF32 row_lse({N});
            {
              OpBackend cpu(k::Device::cpu());
              const Tensor l = cpu.zeros({N}), tl = cpu.zeros({N}), ws = cpu.zeros({R, Vl});
              k::lm_head_lse(l, tl, ws, cpu.put(hh), cpu.put(hw), cpu.put(tgt), vb);
              const auto lv = B::get(l);
              for (size_t i = 0; i < row_lse.v.size(); ++i)
                row_lse.v[i] = static_cast<float>(lv[i]) + 0.5f;
            }
            const Tensor h = be.put(hh), w = be.put(hw), t = be.put(tgt), tk = be.put(tok),
                         dy = be.put(randn({N, C}, 21)), rl = be.put(row_lse);
            const Tensor lse = be.zeros({N}), tl = be.zeros({N}), ws = be.zeros({R, Vl}),
                         dh = be.zeros({N, C}), dw = be.zeros({Vl, C}), emb = be.zeros({N, C}),
                         dwte = be.zeros({Vl, C});
            k::lm_head_lse(lse, tl, ws, h, w, t, vb);
            k::lm_head_xent_backward(ws, h, w, t, rl, vb, 0.02f, dh, dw);
            k::embedding_forward(emb, tk, w, Tensor(), vb);
            k::embedding_backward(dwte, Tensor(), dy, tk, vb);
            return Outs{{"lse", B::get(lse), kTol}, {"tlogit", B::get(tl), kTol},
                        {"dh", B::get(dh), kTol},   {"dw", B::get(dw), kTol},
                        {"emb", B::get(emb), kTol}, {"dwte", B::get(dwte), kTol}};
          },
          nullptr};
}

OpCase elementwise_adamw() {
  const int64_t n = 100003;
  return {"elementwise_adamw", "n100003", k::DType::f32,
          [](B& be) {
            const HostF32 a = randn({n}, 19), b = randn({n}, 20);
            const Tensor ta = be.put(a), tb = be.put(b), c = be.zeros({n});
            k::add(c, ta, tb);
            k::accumulate(c, ta);
            k::scale(c, 0.3f);
            const double ss = k::sum_squares(c);
            const Tensor p = be.put(a), g = be.put(b), m = be.zeros({n}), v = be.zeros({n});
            k::AdamWParams hp;
            hp.lr = 1e-2f;
            hp.weight_decay = 0.1f;
            hp.grad_scale = 0.7f;
            for (int64_t s = 1; s <= 3; ++s) {
              hp.step = s;
              k::adamw_update(p, g, m, v, hp);
            }
            return Outs{{"add_acc_scale", B::get(c), 1e-7},
                        {"sum_squares", {ss}, 1e-9},
                        {"adamw", B::get(p), 1e-6}};
          },
          nullptr};
}
}  // namespace

std::vector<OpCase> dense_op_cases() {
  return {matmul(),           embedding_rope(),      norms(),
          activations(),      heads_attention(true), heads_attention(false),
          block_attention(),  lm_head_xent(),        vocab_parallel(),
          elementwise_adamw()};
}

}  // namespace sparta::test
