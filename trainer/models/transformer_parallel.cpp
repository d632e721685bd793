// The parts of Transformer that split it across ranks (ModelParallel): whole tensors gathered
// from and scattered to shards (checkpoints), the tensor-parallel sums, the context-parallel
// all-to-alls, the expert-parallel token exchange and the vocab-parallel cross-entropy.
// docs/parallel.md explains each.
#include <algorithm>
#include <cmath>

#include "kernels/moe.h"
#include "kernels/ops.h"
#include "kernels/uoe.h"
#include "trainer/models/transformer.h"

namespace sparta::models {

namespace k = sparta::kernels;
using k::DType;

void Transformer::gather_full(const Param& p, const Tensor& local, float* full) const {
  const Shard& sh = p.shard;
  const int64_t n = local.numel();
  if (sh.parts == 1) {
    k::copy(Tensor(full, DType::f32, k::Device::cpu(), {n}), local.view({n}));
    return;
  }
  parallel::Comm* c = shard_comm(sh.group);
  SPARTA_CHECK(c && c->size() == sh.parts, "gather of {}: no communicator for its {} parts", p.name,
               sh.parts);
  std::vector<float> all(static_cast<size_t>(n * sh.parts));
  const Tensor mine(all.data() + n * sh.index, DType::f32, k::Device::cpu(), {n});
  k::copy(mine, local.view({n}));
  c->all_gather(Tensor(all.data(), DType::f32, k::Device::cpu(), {n * sh.parts}), mine);
  Shard s = sh;
  for (s.index = 0; s.index < sh.parts; ++s.index)
    for (int64_t o = 0; o < s.runs(); ++o)
      std::copy_n(all.data() + s.index * n + o * s.run_length(), s.run_length(),
                  full + s.run_global(o));
}

void Transformer::scatter_full(const Param& p, const float* full, const Tensor& local) const {
  const Shard& sh = p.shard;
  if (sh.parts == 1) {
    k::copy(local.view({local.numel()}),
            Tensor(const_cast<float*>(full), DType::f32, k::Device::cpu(), {local.numel()}));
    return;
  }
  std::vector<float> mine(static_cast<size_t>(local.numel()));
  for (int64_t o = 0; o < sh.runs(); ++o)
    std::copy_n(full + sh.run_global(o), sh.run_length(), mine.data() + o * sh.run_length());
  k::copy(local.view({local.numel()}),
          Tensor(mine.data(), DType::f32, k::Device::cpu(), {local.numel()}));
}

namespace {
// out[b, a, :] = in[a, b, :] for `in` seen as [A, Bn, inner]: merge_heads is exactly this swap
// of the first two axes when the batch axis is 1.
void swap01(Tensor out, Tensor in, int64_t A, int64_t Bn) {
  const int64_t inner = in.numel() / (A * Bn);
  k::merge_heads(out.view({Bn, A * inner}), in.view({1, A, Bn, inner}));
}
}  // namespace

void Transformer::cp_to_heads(Tensor dst, Tensor src) {
  const int64_t cp = par_.cp, B = B_, Hc = dst.dim(1);
  const Tensor send = cp_send_.rows(0, src.numel()), recv = cp_recv_.rows(0, src.numel());
  swap01(send, src, B, cp);  // [B, cp(head group), Hc*Tl*D] -> [cp, B, Hc*Tl*D]
  par_.cp_dev->all_to_all_v(recv, cp_counts_, send, cp_counts_);
  swap01(dst, recv, cp, B * Hc);  // [cp(token chunk), B*Hc, Tl*D] -> [B*Hc, cp, Tl*D]
}

void Transformer::cp_to_tokens(Tensor dst, Tensor src) {
  const int64_t cp = par_.cp, B = B_, Hc = src.dim(1);
  const Tensor send = cp_send_.rows(0, src.numel()), recv = cp_recv_.rows(0, src.numel());
  swap01(send, src, B * Hc, cp);  // [B*Hc, cp(token chunk), Tl*D] -> [cp, B*Hc, Tl*D]
  par_.cp_dev->all_to_all_v(recv, cp_counts_, send, cp_counts_);
  swap01(dst, recv, cp, B);  // [cp(head group), B, Hc*Tl*D] -> [B, cp, Hc*Tl*D]
}

// This rank's rows of a [T, C] position table (context parallel: its part of the sequence).
Tensor Transformer::positions(Tensor table) const {
  if (table.empty() || par_.cp == 1) return table;
  const int64_t Tl = seq_len_local();
  return table.rows(par_.cp_rank * Tl, (par_.cp_rank + 1) * Tl);
}

Tensor Transformer::tp_dx(Tensor dx) {
  if (par_.tp == 1) return dx;
  k::zero(g_tpx_);
  return g_tpx_;
}

void Transformer::tp_dx_done(Tensor dx) {
  if (par_.tp == 1) return;
  par_.tp_dev->all_reduce(g_tpx_, parallel::ReduceOp::sum);
  k::accumulate(dx, g_tpx_);
}

void Transformer::tp_sum(Tensor t) {
  if (par_.tp > 1) par_.tp_dev->all_reduce(t, parallel::ReduceOp::sum);
}

// Expert parallel plan of one MoE layer's forward (after moe_permute filled m.offsets with this
// rank's rows per expert, expert-major over all E experts): every rank's per-expert counts are
// all-gathered over the ep group (host), which fixes the rows each peer sends and receives and
// the order in which this rank's experts see them (expert, then source rank).
void Transformer::ep_plan(MoeActs& m) {
  const int ep = par_.ep, er = par_.ep_rank;
  const int64_t E = cfg_.moe_experts, El = E / ep;
  int32_t* all = ep_counts_.data();
  for (int64_t e = 0; e < E; ++e)
    all[er * E + e] = static_cast<int32_t>(m.offsets[static_cast<size_t>(e + 1)] -
                                           m.offsets[static_cast<size_t>(e)]);
  const Tensor mine(all + er * E, DType::i32, k::Device::cpu(), {E});
  par_.ep_host->all_gather(Tensor(all, DType::i32, k::Device::cpu(), {ep * E}), mine);
  auto count = [&](int src, int64_t e) { return static_cast<int64_t>(all[src * E + e]); };
  m.received = 0;
  for (int j = 0; j < ep; ++j) {
    m.send_rows[static_cast<size_t>(j)] =
        m.offsets[static_cast<size_t>((j + 1) * El)] - m.offsets[static_cast<size_t>(j * El)];
    int64_t r = 0;
    for (int64_t e = 0; e < El; ++e) r += count(j, er * El + e);
    m.recv_rows[static_cast<size_t>(j)] = r;
    m.received += r;
  }
  // The receive buffer is source-major (rank j's rows for expert 0, 1, ... of this rank); the
  // experts want expert-major.
  int64_t dst = 0;
  m.local_offsets[0] = 0;
  for (int64_t e = 0; e < El; ++e) {
    int64_t src_base = 0;
    for (int j = 0; j < ep; ++j) {
      int64_t at = src_base;
      for (int64_t e2 = 0; e2 < e; ++e2) at += count(j, er * El + e2);
      for (int64_t i = 0; i < count(j, er * El + e); ++i, ++dst) {
        ep_perm_[static_cast<size_t>(dst)] = static_cast<int32_t>(at + i);
        ep_invperm_[static_cast<size_t>(at + i)] = static_cast<int32_t>(dst);
      }
      src_base += m.recv_rows[static_cast<size_t>(j)];
    }
    m.local_offsets[static_cast<size_t>(e + 1)] = dst;
  }
  if (m.received > 0) {
    k::copy(m.perm.rows(0, m.received),
            Tensor(ep_perm_.data(), DType::i32, k::Device::cpu(), {m.received}));
    k::copy(m.invperm.rows(0, m.received),
            Tensor(ep_invperm_.data(), DType::i32, k::Device::cpu(), {m.received}));
  }
}

void Transformer::ep_exchange(const MoeActs& m, Tensor dst, Tensor src, int64_t width,
                              bool reverse) {
  const auto& out_rows = reverse ? m.send_rows : m.recv_rows;
  const auto& in_rows = reverse ? m.recv_rows : m.send_rows;
  for (size_t j = 0; j < out_rows.size(); ++j) {
    ep_recv_el_[j] = out_rows[j] * width;
    ep_send_el_[j] = in_rows[j] * width;
  }
  par_.ep_dev->all_to_all_v(dst, ep_recv_el_, src, ep_send_el_);
}

// Cross-entropy over a vocabulary split across the tp group (kernels/ops.h lm_head_lse): each
// rank's part log-sum-exp is all-gathered and the target logits summed, the full rows' lse is
// combined on the host in double precision, and the backward pass recomputes each part's logits
// against it. The hidden-state gradient is the sum of the parts' shares.
float Transformer::vocab_parallel_loss(bool with_backward, float dloss) {
  const int64_t N = fin_out_.dim(0), tp = par_.tp, vb = par_.tp_rank * (cfg_.vocab_size / tp);
  const Tensor mine = tp_lse_parts_.rows(par_.tp_rank * N, (par_.tp_rank + 1) * N);
  k::lm_head_lse(mine, tp_tlogit_, logits_ws_, fin_out_, head_, targets_, vb);
  par_.tp_dev->all_gather(tp_lse_parts_, mine);
  par_.tp_dev->all_reduce(tp_tlogit_, parallel::ReduceOp::sum);
  float* parts = tp_host_.data();
  float* tlogit = parts + tp * N;
  float* row_lse = tlogit + N;
  auto host = [](float* p, int64_t n) { return Tensor(p, DType::f32, k::Device::cpu(), {n}); };
  k::copy(host(parts, tp * N), tp_lse_parts_);
  k::copy(host(tlogit, N), tp_tlogit_);
  const std::vector<int32_t>& tgt = tp_targets_host_;  // set_batch's copy
  double sum = 0;
  for (int64_t n = 0; n < N; ++n) {
    double mx = parts[n];
    for (int64_t r = 1; r < tp; ++r) mx = std::max(mx, static_cast<double>(parts[r * N + n]));
    double s = 0;
    for (int64_t r = 0; r < tp; ++r) s += std::exp(static_cast<double>(parts[r * N + n]) - mx);
    const double lse = mx + std::log(s);
    row_lse[n] = static_cast<float>(lse);
    const float loss = tgt[static_cast<size_t>(n)] < 0 ? 0.0f : static_cast<float>(lse - tlogit[n]);
    host_losses_[static_cast<size_t>(n)] = loss;
    sum += loss;
  }
  k::copy(losses_, host(host_losses_.data(), N));
  if (with_backward) {
    k::copy(tp_row_lse_, host(row_lse, N));
    k::zero(g_norm_);
    k::lm_head_xent_backward(logits_ws_, fin_out_, head_, targets_, tp_row_lse_, vb, dloss, g_norm_,
                             dhead_);
    tp_sum(g_norm_);
  }
  const float denom = static_cast<float>(valid_targets_ > 0 ? valid_targets_ : 1);
  return static_cast<float>(sum / denom);
}

}  // namespace sparta::models
