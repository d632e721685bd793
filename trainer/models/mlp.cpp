#include "trainer/models/mlp.h"

#include "kernels/ops.h"

namespace sparta::models {

namespace k = sparta::kernels;

void activation_forward(FfnType type, Tensor out, Tensor in) {
  if (type == FfnType::swiglu)
    k::swiglu_forward(out, in);
  else
    k::gelu_forward(out, in);
}

void activation_backward(FfnType type, Tensor din, Tensor dout, Tensor in) {
  if (type == FfnType::swiglu)
    k::swiglu_backward(din, dout, in);
  else
    k::gelu_backward(din, dout, in);
}

MlpScratch::MlpScratch(k::ArenaPlan& acts, const Dims& d) {
  acts.add(&g_fc, {d.N, d.FCl});
  acts.add(&g_act, {d.N, d.Fl});
}

Mlp::Mlp(ParamSet& ps, k::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
         const TensorParallel& tp, MlpScratch& s, int layer)
    : type_(cfg.ffn), tp_(tp), s_(s) {
  const std::string pre = "layers." + std::to_string(layer) + ".ffn.";
  ps.add(&wfc_, pre + "fc.weight", layer, {d.FC, d.C}, cfg.init_std, true,
         {ShardGroup::tp, d.FC / d.F, d.F, d.C, d.tp, d.tp_rank});
  ps.add(&wout_, pre + "proj.weight", layer, {d.C, d.F}, cfg.init_std, true,
         {ShardGroup::tp, d.C, d.F, 1, d.tp, d.tp_rank}, 1);
  acts.add(&fc_, {d.N, d.FCl});
  acts.add(&act_, {d.N, d.Fl});
  acts.add(&out_, {d.N, d.C});
}

Tensor Mlp::forward(const Pass&, Tensor x, RouterState&) {
  k::matmul_forward(fc_, x, wfc_.w);
  activation_forward(type_, act_, fc_);
  k::matmul_forward(out_, act_, wout_.w);
  tp_.sum(out_);
  return out_;
}

void Mlp::backward(const Pass&, Tensor x, Tensor dout, Tensor dx, RouterStateGrad&) {
  k::zero(s_.g_act);
  k::matmul_backward(s_.g_act, wout_.g, dout, act_, wout_.w);
  k::zero(s_.g_fc);
  activation_backward(type_, s_.g_fc, s_.g_act, fc_);
  k::matmul_backward(tp_.dx_share(dx), wfc_.g, s_.g_fc, x, wfc_.w);
  tp_.dx_done(dx);
}

}  // namespace sparta::models
