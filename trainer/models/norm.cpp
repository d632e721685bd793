#include "trainer/models/norm.h"

#include "kernels/ops.h"

namespace sparta::models {

namespace k = sparta::kernels;

Norm::Norm(ParamSet& ps, k::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
           const std::string& name, int layer)
    : type_(cfg.norm), eps_(cfg.norm_eps) {
  ps.add(&g_, name + ".weight", layer, {d.C}, kInitOnes, false);
  if (type_ == NormType::layernorm) ps.add(&b_, name + ".bias", layer, {d.C}, kInitZeros, false);
  acts.add(&mean_, {d.N});
  acts.add(&rstd_, {d.N});
}

void Norm::forward(Tensor out, Tensor in) {
  if (type_ == NormType::layernorm)
    k::layernorm_forward(out, mean_, rstd_, in, g_.w, b_.w, eps_);
  else
    k::rmsnorm_forward(out, rstd_, in, g_.w, eps_);
}

void Norm::backward(Tensor din, Tensor dout, Tensor in) const {
  if (type_ == NormType::layernorm)
    k::layernorm_backward(din, g_.g, b_.g, dout, in, g_.w, mean_, rstd_);
  else
    k::rmsnorm_backward(din, g_.g, dout, in, g_.w, rstd_);
}

}  // namespace sparta::models
