#include "trainer/models/layer.h"

#include "kernels/ops.h"

namespace sparta::models {

namespace k = sparta::kernels;

Dims Dims::of(const ModelConfig& cfg, int batch, const parallel::ProcessGroups& g) {
  Dims d;
  d.tp = g.tp.size();
  d.tp_rank = g.tp.rank();
  d.cp = g.cp.size();
  d.cp_rank = g.cp.rank();
  d.ep = g.ep.size();
  d.ep_rank = g.ep.rank();
  d.B = batch;
  d.Tf = cfg.seq_len;
  d.T = d.Tf / d.cp;
  d.N = d.B * d.T;
  d.C = cfg.d_model;
  d.H = cfg.n_heads;
  d.D = cfg.head_dim();
  d.V = cfg.vocab_size;
  d.F = cfg.d_ff;
  d.FC = cfg.ffn == FfnType::swiglu ? 2 * d.F : d.F;
  d.L = cfg.n_layers;
  d.Hl = d.H / d.tp;
  d.cpa = g.cp_a2a.size();
  d.cpa_rank = g.cp_a2a.rank();
  d.cpr = g.cp_ring.size();
  d.cpr_rank = g.cp_ring.rank();
  d.ring = d.cpr > 1;
  d.Hc = d.Hl / d.cpa;
  d.Ta = d.T * d.cpa;
  d.Cl = d.C / d.tp;
  d.Fl = d.F / d.tp;
  d.FCl = d.FC / d.tp;
  d.Vl = d.V / d.tp;
  return d;
}

TensorParallel::TensorParallel(const parallel::Group& tp, k::ArenaPlan& acts, const Dims& d)
    : dev_(tp.dev), size_(tp.size()), rank_(tp.rank()) {
  if (size_ > 1) acts.add(&scratch_, {d.N, d.C});
}

void TensorParallel::sum(Tensor t) const {
  if (size_ > 1) dev_->all_reduce(t, parallel::ReduceOp::sum);
}

Tensor TensorParallel::dx_share(Tensor dx) const {
  if (size_ == 1) return dx;
  k::zero(scratch_);
  return scratch_;
}

void TensorParallel::dx_done(Tensor dx) const {
  if (size_ == 1) return;
  dev_->all_reduce(scratch_, parallel::ReduceOp::sum);
  k::accumulate(dx, scratch_);
}

}  // namespace sparta::models
