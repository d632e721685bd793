#include "trainer/models/embedding.h"

#include <algorithm>
#include <cmath>

#include "kernels/ops.h"

namespace sparta::models {

namespace k = sparta::kernels;
using k::DType;

namespace {
constexpr int64_t kLogitRows = 1024;  // rows of logits materialised at once by the fused head
Tensor host(float* p, int64_t n) {
  return Tensor(p, DType::f32, k::Device::cpu(), {n});
}
}  // namespace

TokenEmbedding::TokenEmbedding(ParamSet& ps, k::ArenaPlan& acts, const ModelConfig& cfg,
                               const Dims& d, const TensorParallel& tp)
    : d_(d), tp_(tp) {
  ps.add(&wte_, "wte", -1, {d.V, d.C}, cfg.embed_init_std, true,
         {ShardGroup::tp, 1, d.V, d.C, d.tp, d.tp_rank});
  if (cfg.pos == PosEncoding::learned)
    ps.add(&wpe_, "wpe", -1, {d.Tf, d.C}, cfg.embed_init_std, true);
  acts.add(&out_, {d.N, d.C});
}

Tensor TokenEmbedding::positions(Tensor table) const {
  if (table.empty() || d_.cp == 1) return table;
  return table.rows(d_.cp_rank * d_.T, (d_.cp_rank + 1) * d_.T);
}

// Positions are added by one tp rank only (the sum over tp adds every rank's rows).
Tensor TokenEmbedding::forward(Tensor tokens) {
  k::embedding_forward(out_, tokens, wte_.w, d_.tp_rank == 0 ? positions(wpe_.w) : Tensor(),
                       d_.tp_rank * d_.Vl);
  tp_.sum(out_);
  return out_;
}

void TokenEmbedding::backward(Tensor dout, Tensor tokens) {
  k::embedding_backward(wte_.g, positions(wpe_.g), dout, tokens, d_.tp_rank * d_.Vl);
}

LmHead::LmHead(ParamSet& ps, k::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
               const parallel::ProcessGroups& g, const TensorParallel& tp, TokenEmbedding& emb)
    : d_(d), tp_group_(g.tp), tp_(tp), w_(&own_) {
  if (cfg.tie_embeddings)
    w_ = &emb.wte();
  else
    ps.add(&own_, "lm_head.weight", -1, {d.V, d.C}, cfg.init_std, true,
           {ShardGroup::tp, 1, d.V, d.C, d.tp, d.tp_rank});
  acts.add(&losses_, {d.N});
  acts.add(&logits_ws_, {std::min(d.N, kLogitRows), d.Vl});
  acts.add(&logit_row_, {1, d.Vl});
  if (d.tp > 1) {
    acts.add(&lse_parts_, {d.tp * d.N});
    acts.add(&tlogit_, {d.N});
    acts.add(&row_lse_, {d.N});
    host_.assign(static_cast<size_t>((d.tp + 2) * d.N), 0.0f);
  }
  host_losses_.assign(static_cast<size_t>(d.N), 0.0f);
}

float LmHead::loss(Tensor hidden, Tensor targets, const int32_t* host_targets, int64_t valid,
                   Tensor dhidden, float dloss) {
  if (d_.tp > 1) return vocab_parallel_loss(hidden, targets, host_targets, valid, dhidden, dloss);
  const float denom = static_cast<float>(valid > 0 ? valid : 1);
  if (!dhidden.empty()) {
    k::zero(dhidden);
    k::lm_head_xent(losses_, logits_ws_, hidden, w_->w, targets, dloss, dhidden, w_->g);
  } else {
    k::lm_head_xent(losses_, logits_ws_, hidden, w_->w, targets, 0.0f, Tensor(), Tensor());
  }
  k::copy(host(host_losses_.data(), d_.N), losses_);
  double sum = 0.0;
  for (float v : host_losses_) sum += v;
  return static_cast<float>(sum / denom);
}

// Each rank's part log-sum-exp (kernels/ops.h lm_head_lse) is all-gathered and the target
// logits summed, the full rows' lse is combined on the host in double precision, and the
// backward recomputes each part's logits against it. The hidden-state gradient is the sum of
// the parts' shares.
float LmHead::vocab_parallel_loss(Tensor hidden, Tensor targets, const int32_t* tgt, int64_t valid,
                                  Tensor dhidden, float dloss) {
  const int64_t N = d_.N, tp = d_.tp, vb = d_.tp_rank * d_.Vl;
  const Tensor mine = lse_parts_.rows(d_.tp_rank * N, (d_.tp_rank + 1) * N);
  k::lm_head_lse(mine, tlogit_, logits_ws_, hidden, w_->w, targets, vb);
  tp_group_.dev->all_gather(lse_parts_, mine);
  tp_group_.dev->all_reduce(tlogit_, parallel::ReduceOp::sum);
  float* parts = host_.data();
  float* tlogit = parts + tp * N;
  float* row_lse = tlogit + N;
  k::copy(host(parts, tp * N), lse_parts_);
  k::copy(host(tlogit, N), tlogit_);
  double sum = 0;
  for (int64_t n = 0; n < N; ++n) {
    double mx = parts[n];
    for (int64_t r = 1; r < tp; ++r) mx = std::max(mx, static_cast<double>(parts[r * N + n]));
    double s = 0;
    for (int64_t r = 0; r < tp; ++r) s += std::exp(static_cast<double>(parts[r * N + n]) - mx);
    const double lse = mx + std::log(s);
    row_lse[n] = static_cast<float>(lse);
    const float l = tgt[n] < 0 ? 0.0f : static_cast<float>(lse - tlogit[n]);
    host_losses_[static_cast<size_t>(n)] = l;
    sum += l;
  }
  k::copy(losses_, host(host_losses_.data(), N));
  if (!dhidden.empty()) {
    k::copy(row_lse_, host(row_lse, N));
    k::zero(dhidden);
    k::lm_head_xent_backward(logits_ws_, hidden, w_->w, targets, row_lse_, vb, dloss, dhidden,
                             w_->g);
    tp_.sum(dhidden);
  }
  const float denom = static_cast<float>(valid > 0 ? valid : 1);
  return static_cast<float>(sum / denom);
}

void LmHead::logits(Tensor hidden, int64_t row, float* host_logits) {
  k::matmul_forward(logit_row_, hidden.rows(row, row + 1), w_->w);
  const Tensor mine(host_logits + d_.tp_rank * d_.Vl, DType::f32, k::Device::cpu(), {1, d_.Vl});
  k::copy(mine, logit_row_);
  if (d_.tp > 1)
    tp_group_.host->all_gather(Tensor(host_logits, DType::f32, k::Device::cpu(), {d_.V}),
                               mine.view({d_.Vl}));
}

}  // namespace sparta::models
