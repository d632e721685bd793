// Shape checks and device dispatch for kernels/ops.h. Checks live here once, so the CPU and CUDA
// backends receive raw pointers and trusted sizes.
#include "kernels/ops.h"

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/dispatch.h"

namespace sparta::kernels {

namespace {

float* opt_f32(const Tensor& t) {
  return t.empty() ? nullptr : t.f32();
}

void same_device(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (t->empty()) continue;
    if (!first) first = t;
    SPARTA_CHECK(t->device == first->device, "{}: tensors on {} and {}", op,
                 to_string(first->device), to_string(t->device));
  }
}

void expect_numel(const char* op, const char* name, const Tensor& t, int64_t n) {
  if (t.empty()) return;
  SPARTA_CHECK(t.numel() == n, "{}: {} has shape {} ({} elements), expected {}", op, name,
               t.shape_str(), t.numel(), n);
}

}  // namespace

void matmul_forward(Tensor out, Tensor inp, Tensor weight) {
  same_device("matmul_forward", {&out, &inp, &weight});
  const int64_t OC = weight.dim(0), IC = weight.dim(1), N = inp.numel() / IC;
  SPARTA_CHECK(weight.ndim == 2 && inp.dim(-1) == IC, "matmul_forward: inp {} weight {}",
               inp.shape_str(), weight.shape_str());
  expect_numel("matmul_forward", "out", out, N * OC);
  SPARTA_DISPATCH(out.device, matmul_forward(out.f32(), inp.f32(), weight.f32(), N, IC, OC));
}

void matmul_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight) {
  same_device("matmul_backward", {&dinp, &dweight, &dout, &inp, &weight});
  const int64_t OC = weight.dim(0), IC = weight.dim(1), N = inp.numel() / IC;
  expect_numel("matmul_backward", "dout", dout, N * OC);
  expect_numel("matmul_backward", "dinp", dinp, N * IC);
  expect_numel("matmul_backward", "dweight", dweight, OC * IC);
  SPARTA_DISPATCH(dout.device, matmul_backward(opt_f32(dinp), opt_f32(dweight), dout.f32(),
                                               inp.f32(), weight.f32(), N, IC, OC));
}

void embedding_forward(Tensor out, Tensor tokens, Tensor wte, Tensor wpe, int64_t vocab_begin) {
  same_device("embedding_forward", {&out, &tokens, &wte, &wpe});
  const int64_t B = tokens.dim(0), T = tokens.dim(1), C = wte.dim(1);
  SPARTA_CHECK(tokens.ndim == 2, "embedding_forward: tokens must be [B,T], got {}",
               tokens.shape_str());
  SPARTA_CHECK(wpe.empty() || (wpe.dim(1) == C && wpe.dim(0) >= T),
               "embedding_forward: wpe {} for T={} C={}", wpe.shape_str(), T, C);
  expect_numel("embedding_forward", "out", out, B * T * C);
  SPARTA_DISPATCH(out.device, embedding_forward(out.f32(), tokens.i32(), wte.f32(), opt_f32(wpe), B,
                                                T, C, vocab_begin, wte.dim(0)));
}

void embedding_backward(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens, int64_t vocab_begin) {
  same_device("embedding_backward", {&dwte, &dwpe, &dout, &tokens});
  const int64_t B = tokens.dim(0), T = tokens.dim(1), C = dout.numel() / (B * T);
  SPARTA_CHECK(dwte.empty() || dwte.dim(1) == C, "embedding_backward: dwte {} C={}",
               dwte.shape_str(), C);
  SPARTA_DISPATCH(dout.device,
                  embedding_backward(opt_f32(dwte), opt_f32(dwpe), dout.f32(), tokens.i32(), B, T,
                                     C, vocab_begin, dwte.empty() ? 0 : dwte.dim(0)));
}

void rope_forward(Tensor x, float theta) {
  SPARTA_CHECK(x.ndim == 4, "rope_forward: x must be [B,H,T,D], got {}", x.shape_str());
  SPARTA_DISPATCH(x.device, rope(x.f32(), x.dim(0) * x.dim(1), x.dim(2), x.dim(3), theta, +1));
}

void rope_backward(Tensor dx, float theta) {
  SPARTA_CHECK(dx.ndim == 4, "rope_backward: dx must be [B,H,T,D], got {}", dx.shape_str());
  SPARTA_DISPATCH(dx.device,
                  rope(dx.f32(), dx.dim(0) * dx.dim(1), dx.dim(2), dx.dim(3), theta, -1));
}

void layernorm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor gamma, Tensor beta,
                       float eps) {
  same_device("layernorm_forward", {&out, &mean, &rstd, &inp, &gamma, &beta});
  const int64_t C = gamma.numel(), N = inp.numel() / C;
  expect_numel("layernorm_forward", "out", out, N * C);
  expect_numel("layernorm_forward", "beta", beta, C);
  expect_numel("layernorm_forward", "mean", mean, N);
  expect_numel("layernorm_forward", "rstd", rstd, N);
  SPARTA_DISPATCH(out.device, layernorm_forward(out.f32(), mean.f32(), rstd.f32(), inp.f32(),
                                                gamma.f32(), beta.f32(), N, C, eps));
}

void layernorm_backward(Tensor dinp, Tensor dgamma, Tensor dbeta, Tensor dout, Tensor inp,
                        Tensor gamma, Tensor mean, Tensor rstd) {
  same_device("layernorm_backward", {&dinp, &dgamma, &dbeta, &dout, &inp, &gamma, &mean, &rstd});
  const int64_t C = gamma.numel(), N = inp.numel() / C;
  expect_numel("layernorm_backward", "dout", dout, N * C);
  expect_numel("layernorm_backward", "dinp", dinp, N * C);
  SPARTA_DISPATCH(dout.device,
                  layernorm_backward(opt_f32(dinp), opt_f32(dgamma), opt_f32(dbeta), dout.f32(),
                                     inp.f32(), gamma.f32(), mean.f32(), rstd.f32(), N, C));
}

void rmsnorm_forward(Tensor out, Tensor rstd, Tensor inp, Tensor gamma, float eps) {
  same_device("rmsnorm_forward", {&out, &rstd, &inp, &gamma});
  const int64_t C = gamma.numel(), N = inp.numel() / C;
  expect_numel("rmsnorm_forward", "out", out, N * C);
  expect_numel("rmsnorm_forward", "rstd", rstd, N);
  SPARTA_DISPATCH(out.device,
                  rmsnorm_forward(out.f32(), rstd.f32(), inp.f32(), gamma.f32(), N, C, eps));
}

void rmsnorm_backward(Tensor dinp, Tensor dgamma, Tensor dout, Tensor inp, Tensor gamma,
                      Tensor rstd) {
  same_device("rmsnorm_backward", {&dinp, &dgamma, &dout, &inp, &gamma, &rstd});
  const int64_t C = gamma.numel(), N = inp.numel() / C;
  expect_numel("rmsnorm_backward", "dout", dout, N * C);
  expect_numel("rmsnorm_backward", "dinp", dinp, N * C);
  SPARTA_DISPATCH(dout.device, rmsnorm_backward(opt_f32(dinp), opt_f32(dgamma), dout.f32(),
                                                inp.f32(), gamma.f32(), rstd.f32(), N, C));
}

void gelu_forward(Tensor out, Tensor inp) {
  same_device("gelu_forward", {&out, &inp});
  expect_numel("gelu_forward", "out", out, inp.numel());
  SPARTA_DISPATCH(out.device, gelu_forward(out.f32(), inp.f32(), inp.numel()));
}

void gelu_backward(Tensor dinp, Tensor dout, Tensor inp) {
  same_device("gelu_backward", {&dinp, &dout, &inp});
  expect_numel("gelu_backward", "dinp", dinp, inp.numel());
  expect_numel("gelu_backward", "dout", dout, inp.numel());
  SPARTA_DISPATCH(dout.device, gelu_backward(dinp.f32(), dout.f32(), inp.f32(), inp.numel()));
}

void swiglu_forward(Tensor out, Tensor inp) {
  same_device("swiglu_forward", {&out, &inp});
  const int64_t F = out.dim(-1), N = out.numel() / F;
  expect_numel("swiglu_forward", "inp", inp, N * 2 * F);
  SPARTA_DISPATCH(out.device, swiglu_forward(out.f32(), inp.f32(), N, F));
}

void swiglu_backward(Tensor dinp, Tensor dout, Tensor inp) {
  same_device("swiglu_backward", {&dinp, &dout, &inp});
  const int64_t F = dout.dim(-1), N = dout.numel() / F;
  expect_numel("swiglu_backward", "inp", inp, N * 2 * F);
  expect_numel("swiglu_backward", "dinp", dinp, N * 2 * F);
  SPARTA_DISPATCH(dout.device, swiglu_backward(dinp.f32(), dout.f32(), inp.f32(), N, F));
}

void split_heads(Tensor q, Tensor k, Tensor v, Tensor qkv) {
  same_device("split_heads", {&q, &k, &v, &qkv});
  const int64_t B = q.dim(0), H = q.dim(1), T = q.dim(2), D = q.dim(3);
  expect_numel("split_heads", "qkv", qkv, B * T * 3 * H * D);
  expect_numel("split_heads", "k", k, q.numel());
  expect_numel("split_heads", "v", v, q.numel());
  SPARTA_DISPATCH(q.device, split_heads(q.f32(), k.f32(), v.f32(), qkv.f32(), B, T, H, D));
}

void split_heads_backward(Tensor dqkv, Tensor dq, Tensor dk, Tensor dv) {
  same_device("split_heads_backward", {&dqkv, &dq, &dk, &dv});
  const int64_t B = dq.dim(0), H = dq.dim(1), T = dq.dim(2), D = dq.dim(3);
  expect_numel("split_heads_backward", "dqkv", dqkv, B * T * 3 * H * D);
  SPARTA_DISPATCH(dq.device,
                  split_heads_backward(dqkv.f32(), dq.f32(), dk.f32(), dv.f32(), B, T, H, D));
}

void merge_heads(Tensor out, Tensor o) {
  same_device("merge_heads", {&out, &o});
  const int64_t B = o.dim(0), H = o.dim(1), T = o.dim(2), D = o.dim(3);
  expect_numel("merge_heads", "out", out, o.numel());
  SPARTA_DISPATCH(o.device, merge_heads(out.f32(), o.f32(), B, T, H, D));
}

void merge_heads_backward(Tensor dmo, Tensor dout) {
  same_device("merge_heads_backward", {&dmo, &dout});
  const int64_t B = dmo.dim(0), H = dmo.dim(1), T = dmo.dim(2), D = dmo.dim(3);
  expect_numel("merge_heads_backward", "dout", dout, dmo.numel());
  SPARTA_DISPATCH(dmo.device, merge_heads_backward(dmo.f32(), dout.f32(), B, T, H, D));
}

void attention_forward(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v, const AttnMask& m) {
  same_device("attention_forward", {&o, &lse, &q, &k, &v});
  SPARTA_CHECK(q.ndim == 4 && k.ndim == 4,
               "attention_forward: q and k must be [B,H,T,D], got {} {}", q.shape_str(),
               k.shape_str());
  const int64_t BH = q.dim(0) * q.dim(1), Tq = q.dim(2), Tk = k.dim(2), D = q.dim(3);
  SPARTA_CHECK(k.dim(0) * k.dim(1) == BH && k.dim(3) == D,
               "attention_forward: k {} does not match q {}", k.shape_str(), q.shape_str());
  SPARTA_CHECK(0 <= m.q_begin && m.q_begin <= m.q_end && m.q_end <= Tq && 0 <= m.k_begin &&
                   m.k_begin <= m.k_end && m.k_end <= Tk,
               "attention_forward: mask window q [{}, {}) k [{}, {}) outside Tq {} Tk {}",
               m.q_begin, m.q_end, m.k_begin, m.k_end, Tq, Tk);
  expect_numel("attention_forward", "o", o, q.numel());
  expect_numel("attention_forward", "v", v, k.numel());
  expect_numel("attention_forward", "lse", lse, BH * Tq);
  SPARTA_DISPATCH(
      q.device, attention_forward(o.f32(), lse.f32(), q.f32(), k.f32(), v.f32(), BH, Tq, Tk, D, m));
}

void attention_forward(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v, bool causal) {
  attention_forward(o, lse, q, k, v,
                    causal ? AttnMask::causal(q.dim(2)) : AttnMask::full(q.dim(2), k.dim(2)));
}

void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                        Tensor o, Tensor lse, const AttnMask& m) {
  same_device("attention_backward", {&dq, &dk, &dv, &dout, &q, &k, &v, &o, &lse});
  const int64_t BH = q.dim(0) * q.dim(1), Tq = q.dim(2), Tk = k.dim(2), D = q.dim(3);
  SPARTA_CHECK(k.ndim == 4 && k.dim(0) * k.dim(1) == BH && k.dim(3) == D,
               "attention_backward: k {} does not match q {}", k.shape_str(), q.shape_str());
  SPARTA_CHECK(0 <= m.q_begin && m.q_begin <= m.q_end && m.q_end <= Tq && 0 <= m.k_begin &&
                   m.k_begin <= m.k_end && m.k_end <= Tk,
               "attention_backward: mask window q [{}, {}) k [{}, {}) outside Tq {} Tk {}",
               m.q_begin, m.q_end, m.k_begin, m.k_end, Tq, Tk);
  for (const Tensor* t : {&dq, &dout, &o})
    expect_numel("attention_backward", "q-sized", *t, q.numel());
  for (const Tensor* t : {&dk, &dv, &v})
    expect_numel("attention_backward", "k-sized", *t, k.numel());
  expect_numel("attention_backward", "lse", lse, BH * Tq);
  SPARTA_DISPATCH(q.device,
                  attention_backward(dq.f32(), dk.f32(), dv.f32(), dout.f32(), q.f32(), k.f32(),
                                     v.f32(), o.f32(), lse.f32(), BH, Tq, Tk, D, m));
}

void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                        Tensor o, Tensor lse, bool causal) {
  attention_backward(dq, dk, dv, dout, q, k, v, o, lse,
                     causal ? AttnMask::causal(q.dim(2)) : AttnMask::full(q.dim(2), k.dim(2)));
}

void attention_merge(Tensor o, Tensor lse, Tensor o_part, Tensor lse_part) {
  same_device("attention_merge", {&o, &lse, &o_part, &lse_part});
  SPARTA_CHECK(o.ndim == 4, "attention_merge: o must be [B,H,T,D], got {}", o.shape_str());
  const int64_t BH = o.dim(0) * o.dim(1), T = o.dim(2), D = o.dim(3);
  expect_numel("attention_merge", "o_part", o_part, o.numel());
  expect_numel("attention_merge", "lse", lse, BH * T);
  expect_numel("attention_merge", "lse_part", lse_part, BH * T);
  SPARTA_DISPATCH(o.device,
                  attention_merge(o.f32(), lse.f32(), o_part.f32(), lse_part.f32(), BH, T, D));
}

void lm_head_xent(Tensor losses, Tensor logits_ws, Tensor hidden, Tensor wout, Tensor targets,
                  float dloss, Tensor dhidden, Tensor dwout) {
  same_device("lm_head_xent", {&losses, &logits_ws, &hidden, &wout, &targets, &dhidden, &dwout});
  const int64_t V = wout.dim(0), C = wout.dim(1), N = hidden.numel() / C, R = logits_ws.dim(0);
  SPARTA_CHECK(logits_ws.ndim == 2 && logits_ws.dim(1) == V && R > 0,
               "lm_head_xent: logits workspace {} for V={}", logits_ws.shape_str(), V);
  expect_numel("lm_head_xent", "losses", losses, N);
  expect_numel("lm_head_xent", "targets", targets, N);
  expect_numel("lm_head_xent", "dhidden", dhidden, N * C);
  expect_numel("lm_head_xent", "dwout", dwout, V * C);
  SPARTA_DISPATCH(
      hidden.device,
      lm_head_xent(losses.f32(), logits_ws.f32(), hidden.f32(), wout.f32(), targets.i32(), N, C, V,
                   R, dloss, opt_f32(dhidden), opt_f32(dwout), 0, nullptr, nullptr));
}

void lm_head_lse(Tensor part_lse, Tensor target_logit, Tensor logits_ws, Tensor hidden, Tensor wout,
                 Tensor targets, int64_t vocab_begin) {
  same_device("lm_head_lse", {&part_lse, &target_logit, &logits_ws, &hidden, &wout, &targets});
  const int64_t V = wout.dim(0), C = wout.dim(1), N = hidden.numel() / C, R = logits_ws.dim(0);
  SPARTA_CHECK(logits_ws.ndim == 2 && logits_ws.dim(1) == V && R > 0,
               "lm_head_lse: logits workspace {} for V={}", logits_ws.shape_str(), V);
  expect_numel("lm_head_lse", "part_lse", part_lse, N);
  expect_numel("lm_head_lse", "target_logit", target_logit, N);
  expect_numel("lm_head_lse", "targets", targets, N);
  SPARTA_DISPATCH(hidden.device, lm_head_xent(part_lse.f32(), logits_ws.f32(), hidden.f32(),
                                              wout.f32(), targets.i32(), N, C, V, R, 0.0f, nullptr,
                                              nullptr, vocab_begin, nullptr, target_logit.f32()));
}

void lm_head_xent_backward(Tensor logits_ws, Tensor hidden, Tensor wout, Tensor targets,
                           Tensor row_lse, int64_t vocab_begin, float dloss, Tensor dhidden,
                           Tensor dwout) {
  same_device("lm_head_xent_backward",
              {&logits_ws, &hidden, &wout, &targets, &row_lse, &dhidden, &dwout});
  const int64_t V = wout.dim(0), C = wout.dim(1), N = hidden.numel() / C, R = logits_ws.dim(0);
  SPARTA_CHECK(logits_ws.ndim == 2 && logits_ws.dim(1) == V && R > 0,
               "lm_head_xent_backward: logits workspace {} for V={}", logits_ws.shape_str(), V);
  expect_numel("lm_head_xent_backward", "row_lse", row_lse, N);
  expect_numel("lm_head_xent_backward", "targets", targets, N);
  expect_numel("lm_head_xent_backward", "dhidden", dhidden, N * C);
  expect_numel("lm_head_xent_backward", "dwout", dwout, V * C);
  SPARTA_DISPATCH(hidden.device, lm_head_xent(nullptr, logits_ws.f32(), hidden.f32(), wout.f32(),
                                              targets.i32(), N, C, V, R, dloss, opt_f32(dhidden),
                                              opt_f32(dwout), vocab_begin, row_lse.f32(), nullptr));
}

void add(Tensor out, Tensor a, Tensor b) {
  same_device("add", {&out, &a, &b});
  expect_numel("add", "a", a, out.numel());
  expect_numel("add", "b", b, out.numel());
  SPARTA_DISPATCH(out.device, add(out.f32(), a.f32(), b.f32(), out.numel()));
}

void accumulate(Tensor dst, Tensor src) {
  same_device("accumulate", {&dst, &src});
  expect_numel("accumulate", "src", src, dst.numel());
  SPARTA_DISPATCH(dst.device, accumulate(dst.f32(), src.f32(), dst.numel()));
}

void scale(Tensor x, float s) {
  SPARTA_DISPATCH(x.device, scale(x.f32(), s, x.numel()));
}

double sum_squares(Tensor x) {
  return SPARTA_DISPATCH_RET(x.device, sum_squares(x.f32(), x.numel()));
}

void add_gaussian_noise(Tensor x, float sigma, uint64_t seed, uint32_t param_id, uint32_t step,
                        int64_t index_offset) {
  SPARTA_CHECK(index_offset >= 0, "add_gaussian_noise: negative index offset {}", index_offset);
  SPARTA_DISPATCH(x.device,
                  add_noise(x.f32(), x.numel(), sigma, seed, param_id, step, index_offset));
}

void adamw_update(Tensor param, Tensor grad, Tensor m, Tensor v, const AdamWParams& p) {
  same_device("adamw_update", {&param, &grad, &m, &v});
  for (const Tensor* t : {&grad, &m, &v}) expect_numel("adamw_update", "state", *t, param.numel());
  SPARTA_CHECK(p.step >= 1, "adamw_update: step must be >= 1, got {}", p.step);
  SPARTA_DISPATCH(param.device,
                  adamw_update(param.f32(), grad.f32(), m.f32(), v.f32(), param.numel(), p));
}

}  // namespace sparta::kernels
