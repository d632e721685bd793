#include "trainer/models/uoe.h"

#include <algorithm>
#include <cmath>

#include "kernels/moe.h"
#include "kernels/ops.h"
#include "trainer/models/mlp.h"

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

int64_t ceil_slots(double c, int64_t items, int64_t kk, int64_t E) {
  const auto t = static_cast<int64_t>(
      std::ceil(c * static_cast<double>(items * kk) / static_cast<double>(E) - 1e-9));
  return std::clamp<int64_t>(t, 1, items);
}

Shard tp_experts(const Dims& d, int64_t E, int64_t inner) {
  return {ShardGroup::tp, 1, E, inner, d.tp, d.tp_rank};
}
}  // namespace

UoeShape::UoeShape(const ModelConfig& cfg, const Dims& d)
    : paper(cfg.uoe_mode == "paper"),
      Ea(cfg.uoe_attn_experts_or_default()),
      ka(cfg.uoe_attn_top_k_or_default()),
      Wa(d.C / Ea),
      Em(cfg.uoe_mlp_experts),
      km(cfg.uoe_mlp_top_k),
      Fm(d.F / Em),
      FCm(cfg.ffn == FfnType::swiglu ? 2 * Fm : Fm) {
  const int64_t T = d.T, B = d.B;
  Ta = paper ? T : ceil_slots(cfg.uoe_attn_capacity, T, ka, Ea);  // paper: the max T
  Gm = paper ? T : B;  // paper: the [L,B] layout, a group per time step
  Tm = paper
           ? std::clamp<int64_t>(
                 static_cast<int64_t>(std::floor(
                     cfg.uoe_mlp_capacity * static_cast<double>(B * km) / static_cast<double>(Em) +
                     1e-9)),
                 1, B)
           : ceil_slots(cfg.uoe_mlp_capacity, T, km, Em);
  Ra = Ea * B * Ta;
  Rm = Em * Gm * Tm;
}

UoeScratch::UoeScratch(k::ArenaPlan& acts, const Dims& d, const UoeShape& u) {
  acts.add(&ones_a, DType::f32, {d.N, u.Ea}, 1.0f);
  acts.add(&ones_m, DType::f32, {d.N, u.Em}, 1.0f);
  acts.add(&g_xs, {std::max(u.Ra, u.Rm), d.C});
  acts.add(&g_y, {std::max(u.Ra, u.Rm), d.C});
  acts.add(&g_qkv, {u.Ra, 3 * u.Wa});
  for (Tensor* t : {&g_q, &g_k, &g_v, &g_o}) acts.add(t, {u.Ra * u.Wa});
  acts.add(&g_att, {u.Ra, u.Wa});
  acts.add(&g_h, {u.Rm, u.FCm});
  acts.add(&g_act, {u.Rm, u.Fm});
}

UoeRouter::UoeRouter(ParamSet& ps, k::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
                     const UoeShape& u, bool attn, int layer)
    : E(attn ? u.Ea : u.Em),
      K(attn ? u.ka : u.km),
      attn_(attn),
      paper_(u.paper),
      B_(d.B),
      L_(cfg.seq_len),
      slots_(attn ? (u.paper ? 0 : u.Ta) : u.Tm) {
  const std::string pre = "layers." + std::to_string(layer) + (attn ? ".attn" : ".mlp");
  ps.add_buffer(&wg_, pre + ".router.weight", layer, {E, d.C}, cfg.init_std);
  ps.add_buffer(&cg_, pre + ".router.bias", layer, {E}, kInitZeros);
  const int64_t slots_total = attn ? u.Ra : u.Rm;
  acts.add(&logits_, {d.N, E});
  acts.add(&probs_, {d.N, E});
  acts.add(&idx_, DType::i32, {d.N, K});
  acts.add(&w_, {d.N, K});
  acts.add(&pos, DType::i32, {d.N * E});
  acts.add(&row_token, DType::i32, {slots_total});
  acts.add(&slot_pos, DType::i32, {slots_total});
  offsets.assign(static_cast<size_t>(E / d.tp + 1), 0);  // this rank's experts
  counts_.assign(static_cast<size_t>(E), 0);
}

// Router (rank-only: no gradient, spec 4.1) -> top-k -> slot maps.
void UoeRouter::route(Tensor x, MoeLayerStats& st) {
  k::matmul_forward(logits_, x, wg_);
  k::grouped_bias_forward(logits_, cg_.view({1, E}));
  k::moe_route_forward(probs_, idx_, w_, logits_);
  // SMHA groups per sequence in both modes; UoME per sequence (clean) or per time step (paper).
  const k::UoeGrouping per_seq{B_, L_, L_, 1}, per_step{L_, B_, 1, L_};
  const k::UoeGrouping& g = attn_ || !paper_ ? per_seq : per_step;
  k::uoe_assign(row_token, pos, slot_pos, idx_, probs_, E, g,
                paper_ ? k::UoeMode::paper : k::UoeMode::clean, slots_, assign_);
  T = assign_.slots;
  // Equal row blocks per expert: one grouped GEMM call covers every expert.
  const int64_t rows_per_expert = g.groups * T;
  for (size_t e = 0; e < offsets.size(); ++e)
    offsets[e] = static_cast<int64_t>(e) * rows_per_expert;
  st.expert_tokens.assign(assign_.members.begin(), assign_.members.end());
  st.dropped = assign_.dropped();
  st.fillers = 0;
  for (int64_t f : assign_.fillers) st.fillers += f;
  const auto aux = k::moe_aux_losses(logits_, probs_, idx_, counts_, Tensor(), 0, 0, 0);
  st.load_balance_loss = aux.load_balance;
  st.z_loss = aux.z;
  st.router_entropy = aux.router_entropy;
}

UoeAttention::UoeAttention(ParamSet& ps, k::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
                           const UoeShape& u, const TensorParallel& tp, UoeScratch& s, int layer)
    : d_(d),
      rope_(cfg.pos == PosEncoding::rope),
      theta_(cfg.rope_theta),
      tp_(tp),
      s_(s),
      router_(ps, acts, cfg, d, u, true, layer) {
  // The experts are the tensor-parallel slices of a dense block, stored expert-major so that
  // each expert's GEMM reads one contiguous matrix (spec section 2).
  const std::string pre = "layers." + std::to_string(layer) + ".attn.experts.";
  const int64_t Ea = u.Ea, Wa = u.Wa, C = d.C;
  ps.add(&wqkv_, pre + "qkv.weight", layer, {Ea, 3 * Wa, C}, cfg.init_std, true,
         tp_experts(d, Ea, 3 * Wa * C));
  ps.add(&bqkv_, pre + "qkv.bias", layer, {Ea, 3 * Wa}, kInitZeros, false,
         tp_experts(d, Ea, 3 * Wa));
  ps.add(&wproj_, pre + "proj.weight", layer, {Ea, C, Wa}, cfg.init_std, true,
         tp_experts(d, Ea, C * Wa));
  ps.add(&bproj_, pre + "proj.bias", layer, {Ea, C}, kInitZeros, false, tp_experts(d, Ea, C));
  const int64_t Ra = u.Ra;
  acts.add(&xs_, {Ra, C});
  acts.add(&qkv_, {Ra, 3 * Wa});
  for (Tensor* t : {&q_, &k_, &v_, &o_}) acts.add(t, {Ra * Wa});
  acts.add(&lse_, {Ra * (Wa / d.D)});
  acts.add(&att_, {Ra, Wa});
  acts.add(&y_, {Ra, C});
  acts.add(&out_, {d.N, C});
  stats_.layer = layer;
  stats_.kind = "uoe.attn";
  stats_.expert_tokens.assign(static_cast<size_t>(Ea), 0);
}

// Selective multi-head attention (spec 4, 9.2): gather each attention expert's slots, project
// with its column slice of Wqkv, causal attention over the slots (clean: RoPE at the tokens'
// original positions; masked slots follow the admitted ones, so no admitted query sees them),
// project with its row slice of Wo, and sum the experts' outputs back per token. Only this
// rank's experts' slot blocks [lb, lb + Rl) are computed (tensor parallel).
Tensor UoeAttention::forward(Tensor x) {
  UoeRouter& r = router_;
  const int64_t C = d_.C, D = d_.D, B = d_.B;
  const int64_t El = wqkv_.w.dim(0), W = wqkv_.w.dim(1) / 3, Hx = W / D;
  r.route(x, stats_);
  const int64_t T = r.T, Re = B * T, R = r.E * Re, Rl = El * Re, lb = tp_.rank() * Rl;
  const Tensor xs = fit(xs_, {Rl, C}), qkv = fit(qkv_, {Rl, 3 * W});
  k::moe_gather(xs, x, r.row_token.rows(lb, lb + Rl), Rl);
  k::grouped_matmul_forward(qkv, xs, wqkv_.w, r.offsets);
  k::grouped_bias_forward(qkv.view({El, Re, 3 * W}), bqkv_.w);
  const Tensor q = fit(q_, {El * B, Hx, T, D}), kk = fit(k_, {El * B, Hx, T, D}),
               v = fit(v_, {El * B, Hx, T, D}), o = fit(o_, {El * B, Hx, T, D});
  k::split_heads(q, kk, v, qkv);
  if (rope_) {
    const Tensor sp = r.slot_pos.rows(lb, lb + Rl);
    k::rope_at_forward(q, sp, theta_);
    k::rope_at_forward(kk, sp, theta_);
  }
  k::attention_forward(o, fit(lse_, {El * B, Hx, T}), q, kk, v, /*causal=*/true);
  const Tensor att = fit(att_, {Rl, W}), y = fit(y_, {R, C}), yl = y.rows(lb, lb + Rl);
  k::merge_heads(att, o);
  if (tp_.size() > 1) k::zero(y);
  k::grouped_matmul_forward(yl, att, wproj_.w, r.offsets);
  k::grouped_bias_forward(yl.view({El, Re, C}), bproj_.w);
  k::moe_combine_forward(out_, y, s_.ones_a, r.pos);
  tp_.sum(out_);
  return out_;
}

// dout is fully read by the combine backward before dx is written, so dx may alias dout.
void UoeAttention::backward(Tensor, Tensor dout, Tensor dx) {
  const UoeRouter& r = router_;
  const int64_t C = d_.C, D = d_.D, B = d_.B;
  const int64_t El = wqkv_.w.dim(0), W = wqkv_.w.dim(1) / 3, Hx = W / D;
  const int64_t T = r.T, Re = B * T, R = r.E * Re, Rl = El * Re, lb = tp_.rank() * Rl;
  const Tensor xs = fit(xs_, {Rl, C}), att = fit(att_, {Rl, W}), y = fit(y_, {R, C});
  const Tensor q = fit(q_, {El * B, Hx, T, D}), kk = fit(k_, {El * B, Hx, T, D}),
               v = fit(v_, {El * B, Hx, T, D}), o = fit(o_, {El * B, Hx, T, D});
  // Slots that the combine does not read (masked, dropped) get dy = 0: no gradient at all.
  const Tensor gy = fit(s_.g_y, {R, C}), gyl = gy.rows(lb, lb + Rl);
  k::zero(gy);
  k::moe_combine_backward(gy, Tensor(), dout, y, s_.ones_a, r.pos);
  k::grouped_bias_backward(bproj_.g, gyl.view({El, Re, C}));
  const Tensor gatt = fit(s_.g_att, {Rl, W});
  k::zero(gatt);
  k::grouped_matmul_backward(gatt, wproj_.g, gyl, att, wproj_.w, r.offsets);
  const Tensor gq = fit(s_.g_q, {El * B, Hx, T, D}), gk = fit(s_.g_k, {El * B, Hx, T, D}),
               gv = fit(s_.g_v, {El * B, Hx, T, D}), go = fit(s_.g_o, {El * B, Hx, T, D});
  for (const Tensor& t : {gq, gk, gv, go}) k::zero(t);
  k::merge_heads_backward(go, gatt);
  k::attention_backward(gq, gk, gv, go, q, kk, v, o, fit(lse_, {El * B, Hx, T}), true);
  if (rope_) {
    const Tensor sp = r.slot_pos.rows(lb, lb + Rl);
    k::rope_at_backward(gq, sp, theta_);
    k::rope_at_backward(gk, sp, theta_);
  }
  const Tensor gqkv = fit(s_.g_qkv, {Rl, 3 * W}), gxs = fit(s_.g_xs, {R, C});
  k::zero(gqkv);
  k::split_heads_backward(gqkv, gq, gk, gv);
  k::grouped_bias_backward(bqkv_.g, gqkv.view({El, Re, 3 * W}));
  k::zero(gxs);
  k::grouped_matmul_backward(gxs.rows(lb, lb + Rl), wqkv_.g, gqkv, xs, wqkv_.w, r.offsets);
  k::moe_gather_backward(tp_.dx_share(dx), gxs, r.pos);
  tp_.dx_done(dx);
}

UoeMlp::UoeMlp(ParamSet& ps, k::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
               const UoeShape& u, const TensorParallel& tp, UoeScratch& s, int layer)
    : type_(cfg.ffn), Gm_(u.Gm), tp_(tp), s_(s), router_(ps, acts, cfg, d, u, false, layer) {
  const std::string pre = "layers." + std::to_string(layer) + ".mlp.experts.";
  const int64_t Em = u.Em, C = d.C;
  ps.add(&wfc_, pre + "fc.weight", layer, {Em, u.FCm, C}, cfg.init_std, true,
         tp_experts(d, Em, u.FCm * C));
  ps.add(&bfc_, pre + "fc.bias", layer, {Em, u.FCm}, kInitZeros, false, tp_experts(d, Em, u.FCm));
  ps.add(&wout_, pre + "proj.weight", layer, {Em, C, u.Fm}, cfg.init_std, true,
         tp_experts(d, Em, C * u.Fm));
  ps.add(&bout_, pre + "proj.bias", layer, {Em, C}, kInitZeros, false, tp_experts(d, Em, C));
  acts.add(&xs_, {u.Rm, C});
  acts.add(&h_, {u.Rm, u.FCm});
  acts.add(&act_, {u.Rm, u.Fm});
  acts.add(&y_, {u.Rm, C});
  acts.add(&out_, {d.N, C});
  stats_.layer = layer;
  stats_.kind = "uoe.mlp";
  stats_.expert_tokens.assign(static_cast<size_t>(Em), 0);
}

// Union of MLP experts (spec 5, 9.3): expert e is the FFN restricted to its d_ff / E_m slice.
Tensor UoeMlp::forward(const Pass&, Tensor x, RouterState&) {
  UoeRouter& r = router_;
  const int64_t C = out_.dim(1), El = wfc_.w.dim(0), FC = wfc_.w.dim(1), F = wout_.w.dim(2);
  r.route(x, stats_);
  const int64_t Re = Gm_ * r.T, R = r.E * Re, Rl = El * Re, lb = tp_.rank() * Rl;
  const Tensor xs = fit(xs_, {Rl, C}), h = fit(h_, {Rl, FC}), act = fit(act_, {Rl, F}),
               y = fit(y_, {R, C}), yl = y.rows(lb, lb + Rl);
  k::moe_gather(xs, x, r.row_token.rows(lb, lb + Rl), Rl);
  k::grouped_matmul_forward(h, xs, wfc_.w, r.offsets);
  k::grouped_bias_forward(h.view({El, Re, FC}), bfc_.w);
  activation_forward(type_, act, h);
  if (tp_.size() > 1) k::zero(y);
  k::grouped_matmul_forward(yl, act, wout_.w, r.offsets);
  k::grouped_bias_forward(yl.view({El, Re, C}), bout_.w);
  k::moe_combine_forward(out_, y, s_.ones_m, r.pos);
  tp_.sum(out_);
  return out_;
}

void UoeMlp::backward(const Pass&, Tensor, Tensor dout, Tensor dx, RouterStateGrad&) {
  const UoeRouter& r = router_;
  const int64_t C = out_.dim(1), El = wfc_.w.dim(0), FC = wfc_.w.dim(1), F = wout_.w.dim(2);
  const int64_t Re = Gm_ * r.T, R = r.E * Re, Rl = El * Re, lb = tp_.rank() * Rl;
  const Tensor xs = fit(xs_, {Rl, C}), h = fit(h_, {Rl, FC}), act = fit(act_, {Rl, F}),
               y = fit(y_, {R, C});
  const Tensor gy = fit(s_.g_y, {R, C}), gyl = gy.rows(lb, lb + Rl), gact = fit(s_.g_act, {Rl, F}),
               gh = fit(s_.g_h, {Rl, FC}), gxs = fit(s_.g_xs, {R, C});
  k::zero(gy);
  k::moe_combine_backward(gy, Tensor(), dout, y, s_.ones_m, r.pos);
  k::grouped_bias_backward(bout_.g, gyl.view({El, Re, C}));
  k::zero(gact);
  k::grouped_matmul_backward(gact, wout_.g, gyl, act, wout_.w, r.offsets);
  k::zero(gh);
  activation_backward(type_, gh, gact, h);
  k::grouped_bias_backward(bfc_.g, gh.view({El, Re, FC}));
  k::zero(gxs);
  k::grouped_matmul_backward(gxs.rows(lb, lb + Rl), wfc_.g, gh, xs, wfc_.w, r.offsets);
  k::moe_gather_backward(tp_.dx_share(dx), gxs, r.pos);
  tp_.dx_done(dx);
}

}  // namespace sparta::models
