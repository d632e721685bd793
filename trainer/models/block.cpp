#include "trainer/models/block.h"

#include "kernels/ops.h"

namespace sparta::models {

namespace k = sparta::kernels;

void Block::plan(k::ArenaPlan& acts, const Dims& d) {
  acts.add_kept(&out_, {d.N, d.C});
  acts.add(&na_out_, {d.N, d.C});
  if (!post_) acts.add(&nf_out_, {d.N, d.C});  // Post-LN's second norm writes the output
  acts.add(&sum1_, {d.N, d.C});
  if (post_) acts.add(&sum2_, {d.N, d.C});
}

Tensor Block::forward(const Pass& pass, Tensor x, RouterState& state) {
  if (post_) {
    k::add(sum1_, x, mixer_->forward(x));
    na_.forward(na_out_, sum1_);
    k::add(sum2_, na_out_, ffn_->forward(pass, na_out_, state));
    nf_.forward(out_, sum2_);
  } else {
    na_.forward(na_out_, x);
    k::add(sum1_, x, mixer_->forward(na_out_));
    nf_.forward(nf_out_, sum1_);
    k::add(out_, sum1_, ffn_->forward(pass, nf_out_, state));
  }
  return out_;
}

void Block::backward(const Pass& pass, Tensor x, Tensor g, RouterStateGrad& state) {
  if (post_) {
    // g = d(out). d(sum2) = N_f^T g, and d(u) starts as d(sum2) (residual branch), then the FFN
    // adds into it in place.
    k::zero(g_tmp_);
    nf_.backward(g_tmp_, g, sum2_);
    ffn_->backward(pass, na_out_, g_tmp_, g_tmp_, state);
    // d(sum1) = N_a^T d(u); d(x) = d(sum1) + Attn^T d(sum1), accumulated in g in place.
    k::zero(g);
    na_.backward(g, g_tmp_, sum1_);
    if (recompute_mixer_) mixer_->forward(x);
    mixer_->backward(x, g, g);
  } else {
    // g = d(out) = d(sum1) from the residual branch + N_f^T FFN^T g.
    k::zero(g_tmp_);
    ffn_->backward(pass, nf_out_, g, g_tmp_, state);
    nf_.backward(g, g_tmp_, sum1_);
    // g = d(sum1); d(x) = g + N_a^T Attn^T g.
    k::zero(g_tmp_);
    if (recompute_mixer_) mixer_->forward(na_out_);
    mixer_->backward(na_out_, g, g_tmp_);
    na_.backward(g, g_tmp_, x);
  }
}

}  // namespace sparta::models
