#include "trainer/models/attention.h"

#include "kernels/ops.h"
#include "kernels/uoe.h"

namespace sparta::models {

namespace k = sparta::kernels;

AttentionScratch::AttentionScratch(k::ArenaPlan& acts, const Dims& d, parallel::Comm* ring_comm) {
  acts.add(&g_att, {d.N, d.Cl});
  acts.add(&g_qkv, {d.N, 3 * d.Cl});
  for (Tensor* t : {&g_q, &g_k, &g_v, &g_o}) acts.add(t, {d.B, d.Hc, d.Ta, d.D});
  if (d.ring) ring = std::make_unique<RingAttention>(acts, d, ring_comm);
  if (d.cpa > 1) {
    for (Tensor* t : {&cp_q, &cp_k, &cp_v}) acts.add(t, {d.B, d.Hl, d.T, d.D});
    acts.add(&cp_send, {d.B * d.Hl * d.T * d.D});
    acts.add(&cp_recv, {d.B * d.Hl * d.T * d.D});
    cp_counts.assign(static_cast<size_t>(d.cpa), d.B * d.Hc * d.T * d.D);
  }
}

Attention::Attention(ParamSet& ps, k::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
                     const parallel::ProcessGroups& g, const TensorParallel& tp,
                     AttentionScratch& s, int layer)
    : d_(d),
      rope_(cfg.pos == PosEncoding::rope),
      theta_(cfg.rope_theta),
      cp_(g.cp_a2a.dev),
      tp_(tp),
      s_(s) {
  const std::string pre = "layers." + std::to_string(layer) + ".attn.";
  const int64_t C = d.C;
  ps.add(&wqkv_, pre + "qkv.weight", layer, {3 * C, C}, cfg.init_std, true,
         {ShardGroup::tp, 3, C, C, d.tp, d.tp_rank});
  ps.add(&wproj_, pre + "proj.weight", layer, {C, C}, cfg.init_std, true,
         {ShardGroup::tp, C, C, 1, d.tp, d.tp_rank}, 1);
  acts.add(&qkv_, {d.N, 3 * d.Cl});
  for (Tensor* t : {&q_, &k_, &v_, &o_}) acts.add(t, {d.B, d.Hc, d.Ta, d.D});
  acts.add(&lse_, {d.B, d.Hc, d.Ta});
  acts.add(&att_, {d.N, d.Cl});
  acts.add(&out_, {d.N, C});
}

Tensor Attention::forward(Tensor x) {
  k::matmul_forward(qkv_, x, wqkv_.w);
  if (!ulysses()) {
    k::split_heads(q_, k_, v_, qkv_);
  } else {  // this rank's tokens of all heads -> all tokens of this rank's heads
    k::split_heads(s_.cp_q, s_.cp_k, s_.cp_v, qkv_);
    to_heads(q_, s_.cp_q);
    to_heads(k_, s_.cp_k);
    to_heads(v_, s_.cp_v);
  }
  if (rope_ && d_.ring) {  // zigzag chunks: their global positions
    k::rope_at_forward(q_, s_.ring->positions(), theta_);
    k::rope_at_forward(k_, s_.ring->positions(), theta_);
  } else if (rope_) {  // whole sequences here: positions 0..T-1 as they are
    k::rope_forward(q_, theta_);
    k::rope_forward(k_, theta_);
  }
  if (d_.ring)
    s_.ring->forward(o_, lse_, q_, k_, v_);
  else
    k::attention_forward(o_, lse_, q_, k_, v_, /*causal=*/true);
  if (!ulysses()) {
    k::merge_heads(att_, o_);
  } else {
    to_tokens(s_.cp_q, o_);
    k::merge_heads(att_, s_.cp_q);
  }
  k::matmul_forward(out_, att_, wproj_.w);
  tp_.sum(out_);  // row-parallel: each rank's heads contribute a share
  return out_;
}

void Attention::backward(Tensor x, Tensor dout, Tensor dx) {
  k::zero(s_.g_att);
  k::matmul_backward(s_.g_att, wproj_.g, dout, att_, wproj_.w);
  if (!ulysses()) {
    k::zero(s_.g_o);
    k::merge_heads_backward(s_.g_o, s_.g_att);
  } else {
    k::zero(s_.cp_q);
    k::merge_heads_backward(s_.cp_q, s_.g_att);
    to_heads(s_.g_o, s_.cp_q);
  }
  k::zero(s_.g_q);
  k::zero(s_.g_k);
  k::zero(s_.g_v);
  if (d_.ring)
    s_.ring->backward(s_.g_q, s_.g_k, s_.g_v, s_.g_o, q_, k_, v_, o_, lse_);
  else
    k::attention_backward(s_.g_q, s_.g_k, s_.g_v, s_.g_o, q_, k_, v_, o_, lse_, /*causal=*/true);
  if (rope_ && d_.ring) {
    k::rope_at_backward(s_.g_q, s_.ring->positions(), theta_);
    k::rope_at_backward(s_.g_k, s_.ring->positions(), theta_);
  } else if (rope_) {
    k::rope_backward(s_.g_q, theta_);
    k::rope_backward(s_.g_k, theta_);
  }
  k::zero(s_.g_qkv);
  if (!ulysses()) {
    k::split_heads_backward(s_.g_qkv, s_.g_q, s_.g_k, s_.g_v);
  } else {
    to_tokens(s_.cp_q, s_.g_q);
    to_tokens(s_.cp_k, s_.g_k);
    to_tokens(s_.cp_v, s_.g_v);
    k::split_heads_backward(s_.g_qkv, s_.cp_q, s_.cp_k, s_.cp_v);
  }
  k::matmul_backward(tp_.dx_share(dx), wqkv_.g, s_.g_qkv, x, wqkv_.w);
  tp_.dx_done(dx);
}

namespace {
// out[b, a, :] = in[a, b, :] for `in` seen as [A, Bn, inner]: merge_heads is exactly this swap
// of the first two axes when the batch axis is 1.
void swap01(Tensor out, Tensor in, int64_t A, int64_t Bn) {
  const int64_t inner = in.numel() / (A * Bn);
  k::merge_heads(out.view({Bn, A * inner}), in.view({1, A, Bn, inner}));
}
}  // namespace

void Attention::to_heads(Tensor dst, Tensor src) {
  const int64_t cp = d_.cpa, B = d_.B, Hc = dst.dim(1);
  const Tensor send = s_.cp_send.rows(0, src.numel()), recv = s_.cp_recv.rows(0, src.numel());
  swap01(send, src, B, cp);  // [B, cp(head group), Hc*Tl*D] -> [cp, B, Hc*Tl*D]
  cp_->all_to_all_v(recv, s_.cp_counts, send, s_.cp_counts);
  swap01(dst, recv, cp, B * Hc);  // [cp(token chunk), B*Hc, Tl*D] -> [B*Hc, cp, Tl*D]
}

void Attention::to_tokens(Tensor dst, Tensor src) {
  const int64_t cp = d_.cpa, B = d_.B, Hc = src.dim(1);
  const Tensor send = s_.cp_send.rows(0, src.numel()), recv = s_.cp_recv.rows(0, src.numel());
  swap01(send, src, B * Hc, cp);  // [B*Hc, cp(token chunk), Tl*D] -> [cp, B*Hc, Tl*D]
  cp_->all_to_all_v(recv, s_.cp_counts, send, s_.cp_counts);
  swap01(dst, recv, cp, B);  // [cp(head group), B, Hc*Tl*D] -> [B, cp, Hc*Tl*D]
}

}  // namespace sparta::models
