// Union of Experts (../shared/specs/uoe.md, docs/uoe.md): the frozen rank-only routers, selective
// multi-head attention and the union of MLP experts, forward and backward.
#include <algorithm>
#include <cmath>

#include "kernels/moe.h"
#include "kernels/ops.h"
#include "kernels/uoe.h"
#include "trainer/models/transformer.h"

namespace sparta::models {

namespace k = sparta::kernels;
using k::DType;

namespace {
// A tensor of `dims` at the start of buffer `buf` (slot buffers are planned for the largest T).
Tensor fit(Tensor buf, std::initializer_list<int64_t> dims) {
  Tensor t(buf.data, buf.dtype, buf.device, dims);
  SPARTA_CHECK(t.numel() <= buf.numel(), "internal: {} elements do not fit buffer {}", t.numel(),
               buf.shape_str());
  return t;
}
}  // namespace

// Router (rank-only: no gradient, spec 4.1) -> top-k -> slot maps for one UoE block.
void Transformer::uoe_route(UoeRoute& r, Tensor x, Tensor wg, Tensor cg, int64_t E, bool attn,
                            MoeLayerStats& st) {
  const int64_t T = cfg_.seq_len, B = B_;
  const bool paper = cfg_.uoe_mode == "paper";
  k::matmul_forward(r.logits, x, wg);
  k::grouped_bias_forward(r.logits, cg.view({1, E}));
  k::moe_route_forward(r.probs, r.idx, r.w, r.logits);
  // SMHA groups per sequence in both modes; UoME per sequence (clean) or per time step (paper).
  const k::UoeGrouping per_seq{B, T, T, 1}, per_step{T, B, 1, T};
  const k::UoeGrouping& g = attn || !paper ? per_seq : per_step;
  const int64_t slots = attn ? (paper ? 0 : uoe_Ta_) : uoe_Tm_;
  k::UoeAssignStats& as = r.assign;
  k::uoe_assign(r.row_token, r.pos, r.slot_pos, r.idx, r.probs, E, g,
                paper ? k::UoeMode::paper : k::UoeMode::clean, slots, as);
  r.T = as.slots;
  // Equal row blocks per expert: one grouped GEMM call covers every expert.
  const int64_t rows_per_expert = g.groups * r.T;
  for (size_t e = 0; e < r.offsets.size(); ++e)  // this rank's experts (tensor parallel)
    r.offsets[e] = static_cast<int64_t>(e) * rows_per_expert;
  st.expert_tokens.assign(as.members.begin(), as.members.end());
  st.dropped = as.dropped();
  st.fillers = 0;
  for (int64_t f : as.fillers) st.fillers += f;
  const auto aux = k::moe_aux_losses(r.logits, r.probs, r.idx, moe_counts_, Tensor(), 0, 0, 0);
  st.load_balance_loss = aux.load_balance;
  st.z_loss = aux.z;
  st.router_entropy = aux.router_entropy;
}

// Selective multi-head attention (spec 4, 9.2): gather each attention expert's slots, project
// with its column slice of Wqkv, causal attention over the slots (clean: RoPE at the tokens'
// original positions; masked slots follow the admitted ones, so no admitted query sees them),
// project with its row slice of Wo, and sum the experts' outputs back per token.
// Tensor parallel: every rank routes identically (replicated frozen routers) and runs only its
// experts' slot blocks [lb, lb + Rl) of the full slot layout; the other blocks of y stay zero,
// so the combine gives this rank's share and the tp sum the whole.
void Transformer::uoe_attention_forward(const LayerParams& p, LayerActs& a, Tensor x) {
  UoeActs& u = a.uoe;
  UoeRoute& r = u.ra;
  const int64_t C = cfg_.d_model, D = cfg_.head_dim(), B = B_;
  const int64_t Ea = p.wg_a.dim(0), El = p.wqkv.dim(0), W = p.wqkv.dim(1) / 3, Hx = W / D;
  uoe_route(r, x, p.wg_a, p.cg_a, Ea, true, moe_stats_[static_cast<size_t>(p.uoe_slot)]);
  const int64_t T = r.T, Re = B * T, R = Ea * Re, Rl = El * Re, lb = par_.tp_rank * Rl;
  const Tensor xs = fit(u.xs_a, {Rl, C}), qkv = fit(u.qkv_a, {Rl, 3 * W});
  k::moe_gather(xs, x, r.row_token.rows(lb, lb + Rl), Rl);
  k::grouped_matmul_forward(qkv, xs, p.wqkv, r.offsets);
  k::grouped_bias_forward(qkv.view({El, Re, 3 * W}), p.bqkv);
  const Tensor q = fit(u.q, {El * B, Hx, T, D}), kk = fit(u.k, {El * B, Hx, T, D}),
               v = fit(u.v, {El * B, Hx, T, D}), o = fit(u.o, {El * B, Hx, T, D});
  k::split_heads(q, kk, v, qkv);
  if (cfg_.pos == PosEncoding::rope) {
    const Tensor sp = r.slot_pos.rows(lb, lb + Rl);
    k::rope_at_forward(q, sp, cfg_.rope_theta);
    k::rope_at_forward(kk, sp, cfg_.rope_theta);
  }
  k::attention_forward(o, fit(u.lse, {El * B, Hx, T}), q, kk, v, /*causal=*/true);
  const Tensor att = fit(u.att_a, {Rl, W}), y = fit(u.y_a, {R, C}), yl = y.rows(lb, lb + Rl);
  k::merge_heads(att, o);
  if (par_.tp > 1) k::zero(y);
  k::grouped_matmul_forward(yl, att, p.wproj, r.offsets);
  k::grouped_bias_forward(yl.view({El, Re, C}), p.bproj);
  k::moe_combine_forward(a.att_proj, y, uoe_ones_a_, r.pos);
  tp_sum(a.att_proj);
}

// dout is fully read by the combine backward before dx is written, so dx may alias dout.
void Transformer::uoe_attention_backward(const LayerParams& p, const LayerActs& a, Tensor dout,
                                         Tensor dx) {
  const UoeActs& u = a.uoe;
  const UoeRoute& r = u.ra;
  const int64_t C = cfg_.d_model, D = cfg_.head_dim(), B = B_;
  const int64_t Ea = p.wg_a.dim(0), El = p.wqkv.dim(0), W = p.wqkv.dim(1) / 3, Hx = W / D;
  const int64_t T = r.T, Re = B * T, R = Ea * Re, Rl = El * Re, lb = par_.tp_rank * Rl;
  const Tensor xs = fit(u.xs_a, {Rl, C}), att = fit(u.att_a, {Rl, W}), y = fit(u.y_a, {R, C});
  const Tensor q = fit(u.q, {El * B, Hx, T, D}), kk = fit(u.k, {El * B, Hx, T, D}),
               v = fit(u.v, {El * B, Hx, T, D}), o = fit(u.o, {El * B, Hx, T, D});
  // Slots that the combine does not read (masked, dropped) get dy = 0: no gradient at all.
  const Tensor gy = fit(g_u_y_, {R, C}), gyl = gy.rows(lb, lb + Rl);
  k::zero(gy);
  k::moe_combine_backward(gy, Tensor(), dout, y, uoe_ones_a_, r.pos);
  k::grouped_bias_backward(p.dbproj, gyl.view({El, Re, C}));
  const Tensor gatt = fit(g_u_att_, {Rl, W});
  k::zero(gatt);
  k::grouped_matmul_backward(gatt, p.dwproj, gyl, att, p.wproj, r.offsets);
  const Tensor gq = fit(g_u_q_, {El * B, Hx, T, D}), gk = fit(g_u_k_, {El * B, Hx, T, D}),
               gv = fit(g_u_v_, {El * B, Hx, T, D}), go = fit(g_u_o_, {El * B, Hx, T, D});
  for (const Tensor& t : {gq, gk, gv, go}) k::zero(t);
  k::merge_heads_backward(go, gatt);
  k::attention_backward(gq, gk, gv, go, q, kk, v, o, fit(u.lse, {El * B, Hx, T}), true);
  if (cfg_.pos == PosEncoding::rope) {
    const Tensor sp = r.slot_pos.rows(lb, lb + Rl);
    k::rope_at_backward(gq, sp, cfg_.rope_theta);
    k::rope_at_backward(gk, sp, cfg_.rope_theta);
  }
  const Tensor gqkv = fit(g_u_qkv_, {Rl, 3 * W}), gxs = fit(g_u_xs_, {R, C});
  k::zero(gqkv);
  k::split_heads_backward(gqkv, gq, gk, gv);
  k::grouped_bias_backward(p.dbqkv, gqkv.view({El, Re, 3 * W}));
  k::zero(gxs);
  k::grouped_matmul_backward(gxs.rows(lb, lb + Rl), p.dwqkv, gqkv, xs, p.wqkv, r.offsets);
  k::moe_gather_backward(tp_dx(dx), gxs, r.pos);
  tp_dx_done(dx);
}

// Union of MLP experts (spec 5, 9.3): expert e is the FFN restricted to its d_ff / E_m slice.
// Tensor parallel as the attention above: this rank's experts' slot blocks only.
void Transformer::uoe_mlp_forward(const LayerParams& p, LayerActs& a, Tensor x) {
  UoeActs& u = a.uoe;
  UoeRoute& r = u.rm;
  const int64_t C = cfg_.d_model, Em = p.wg_m.dim(0), El = p.wfc.dim(0), FC = p.wfc.dim(1),
                F = p.wout.dim(2);
  uoe_route(r, x, p.wg_m, p.cg_m, Em, false, moe_stats_[static_cast<size_t>(p.uoe_slot + 1)]);
  const int64_t Re = uoe_Gm_ * r.T, R = Em * Re, Rl = El * Re, lb = par_.tp_rank * Rl;
  const Tensor xs = fit(u.xs_m, {Rl, C}), h = fit(u.h_m, {Rl, FC}), act = fit(u.act_m, {Rl, F}),
               y = fit(u.y_m, {R, C}), yl = y.rows(lb, lb + Rl);
  k::moe_gather(xs, x, r.row_token.rows(lb, lb + Rl), Rl);
  k::grouped_matmul_forward(h, xs, p.wfc, r.offsets);
  k::grouped_bias_forward(h.view({El, Re, FC}), p.bfc);
  if (cfg_.ffn == FfnType::swiglu)
    k::swiglu_forward(act, h);
  else
    k::gelu_forward(act, h);
  if (par_.tp > 1) k::zero(y);
  k::grouped_matmul_forward(yl, act, p.wout, r.offsets);
  k::grouped_bias_forward(yl.view({El, Re, C}), p.bout);
  k::moe_combine_forward(a.mlp_out, y, uoe_ones_m_, r.pos);
  tp_sum(a.mlp_out);
}

void Transformer::uoe_mlp_backward(const LayerParams& p, const LayerActs& a, Tensor dout,
                                   Tensor dx) {
  const UoeActs& u = a.uoe;
  const UoeRoute& r = u.rm;
  const int64_t C = cfg_.d_model, Em = p.wg_m.dim(0), El = p.wfc.dim(0), FC = p.wfc.dim(1),
                F = p.wout.dim(2);
  const int64_t Re = uoe_Gm_ * r.T, R = Em * Re, Rl = El * Re, lb = par_.tp_rank * Rl;
  const Tensor xs = fit(u.xs_m, {Rl, C}), h = fit(u.h_m, {Rl, FC}), act = fit(u.act_m, {Rl, F}),
               y = fit(u.y_m, {R, C});
  const Tensor gy = fit(g_u_y_, {R, C}), gyl = gy.rows(lb, lb + Rl), gact = fit(g_u_act_, {Rl, F}),
               gh = fit(g_u_h_, {Rl, FC}), gxs = fit(g_u_xs_, {R, C});
  k::zero(gy);
  k::moe_combine_backward(gy, Tensor(), dout, y, uoe_ones_m_, r.pos);
  k::grouped_bias_backward(p.dbout, gyl.view({El, Re, C}));
  k::zero(gact);
  k::grouped_matmul_backward(gact, p.dwout, gyl, act, p.wout, r.offsets);
  k::zero(gh);
  if (cfg_.ffn == FfnType::swiglu)
    k::swiglu_backward(gh, gact, h);
  else
    k::gelu_backward(gh, gact, h);
  k::grouped_bias_backward(p.dbfc, gh.view({El, Re, FC}));
  k::zero(gxs);
  k::grouped_matmul_backward(gxs.rows(lb, lb + Rl), p.dwfc, gh, xs, p.wfc, r.offsets);
  k::moe_gather_backward(tp_dx(dx), gxs, r.pos);
  tp_dx_done(dx);
}

}  // namespace sparta::models
