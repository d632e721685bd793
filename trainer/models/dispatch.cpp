#include "trainer/models/dispatch.h"

#include "kernels/moe.h"
#include "kernels/ops.h"

namespace sparta::models {

namespace k = sparta::kernels;
using k::DType;

AllToAllDispatcher::AllToAllDispatcher(k::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
                                       const parallel::Group& ep, MoeScratch& s)
    : E_(cfg.moe_experts), C_(d.C), ep_(ep), s_(s) {
  // A rank's experts may receive every row of the ep group.
  const int64_t R = d.ep * d.N * cfg.moe_top_k, Fe = cfg.expert_ffn();
  acts.add(&xr_, {R, d.C});
  acts.add(&hr_, {R, cfg.ffn == FfnType::swiglu ? 2 * Fe : Fe});
  acts.add(&actr_, {R, Fe});
  acts.add(&perm_, DType::i32, {R});
  acts.add(&invperm_, DType::i32, {R});
  const auto n = static_cast<size_t>(d.ep);
  local_offsets_.assign(static_cast<size_t>(E_ / d.ep + 1), 0);
  for (auto* v : {&send_rows_, &recv_rows_, &send_el_, &recv_el_}) v->assign(n, 0);
  counts_.assign(n * static_cast<size_t>(E_), 0);
  perm_host_.assign(static_cast<size_t>(R), 0);
  invperm_host_.assign(static_cast<size_t>(R), 0);
}

ExpertRows AllToAllDispatcher::dispatch(const ExpertRows& local) {
  plan(*local.offsets);
  exchange(s_.ep_ex, local.x, false);
  k::moe_gather(xr_, s_.ep_ex, perm_, received_);
  return {xr_, hr_, actr_, s_.ep_out, &local_offsets_, received_};
}

void AllToAllDispatcher::combine(Tensor outp, const ExpertRows& r) {
  k::moe_gather(s_.ep_ex, r.y, invperm_, received_);
  exchange(outp, s_.ep_ex, true);
}

ExpertGrads AllToAllDispatcher::dispatch_grad(const ExpertGrads& local) {
  exchange(s_.ep_ex, local.dy, false);
  k::moe_gather(s_.ep_out, s_.ep_ex, perm_, received_);
  return {s_.ep_out, s_.g_r_act, s_.g_r_h, s_.g_r_x};
}

void AllToAllDispatcher::combine_grad(Tensor dxp, const ExpertGrads& g) {
  k::moe_gather(s_.ep_ex, g.dx, invperm_, received_);
  exchange(dxp, s_.ep_ex, true);
}

// `offsets`: this rank's rows per expert, expert-major over all E experts (moe_permute). Every
// rank's counts are all-gathered over the ep group; they fix the rows each peer sends and
// receives and the order in which this rank's experts see them (expert, then source rank).
void AllToAllDispatcher::plan(const std::vector<int64_t>& offsets) {
  const int ep = ep_.size(), er = ep_.rank();
  const int64_t E = E_, El = E / ep;
  int32_t* all = counts_.data();
  for (int64_t e = 0; e < E; ++e)
    all[er * E + e] =
        static_cast<int32_t>(offsets[static_cast<size_t>(e + 1)] - offsets[static_cast<size_t>(e)]);
  const Tensor mine(all + er * E, DType::i32, k::Device::cpu(), {E});
  ep_.host->all_gather(Tensor(all, DType::i32, k::Device::cpu(), {ep * E}), mine);
  auto count = [&](int src, int64_t e) { return static_cast<int64_t>(all[src * E + e]); };
  received_ = 0;
  for (int j = 0; j < ep; ++j) {
    send_rows_[static_cast<size_t>(j)] =
        offsets[static_cast<size_t>((j + 1) * El)] - offsets[static_cast<size_t>(j * El)];
    int64_t r = 0;
    for (int64_t e = 0; e < El; ++e) r += count(j, er * El + e);
    recv_rows_[static_cast<size_t>(j)] = r;
    received_ += r;
  }
  // The receive buffer is source-major (rank j's rows for expert 0, 1, ... of this rank); the
  // experts want expert-major.
  int64_t dst = 0;
  local_offsets_[0] = 0;
  for (int64_t e = 0; e < El; ++e) {
    int64_t src_base = 0;
    for (int j = 0; j < ep; ++j) {
      int64_t at = src_base;
      for (int64_t e2 = 0; e2 < e; ++e2) at += count(j, er * El + e2);
      for (int64_t i = 0; i < count(j, er * El + e); ++i, ++dst) {
        perm_host_[static_cast<size_t>(dst)] = static_cast<int32_t>(at + i);
        invperm_host_[static_cast<size_t>(at + i)] = static_cast<int32_t>(dst);
      }
      src_base += recv_rows_[static_cast<size_t>(j)];
    }
    local_offsets_[static_cast<size_t>(e + 1)] = dst;
  }
  if (received_ > 0) {
    k::copy(perm_.rows(0, received_),
            Tensor(perm_host_.data(), DType::i32, k::Device::cpu(), {received_}));
    k::copy(invperm_.rows(0, received_),
            Tensor(invperm_host_.data(), DType::i32, k::Device::cpu(), {received_}));
  }
}

void AllToAllDispatcher::exchange(Tensor dst, Tensor src, bool reverse) {
  const auto& out_rows = reverse ? send_rows_ : recv_rows_;
  const auto& in_rows = reverse ? recv_rows_ : send_rows_;
  for (size_t j = 0; j < out_rows.size(); ++j) {
    recv_el_[j] = out_rows[j] * C_;
    send_el_[j] = in_rows[j] * C_;
  }
  ep_.dev->all_to_all_v(dst, recv_el_, src, send_el_);
}

}  // namespace sparta::models
