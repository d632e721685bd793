// One normalisation over the model width (RMSNorm, or LayerNorm with its bias): its parameters
// and the per-row statistics its forward saves for the backward.
#pragma once

#include <string>

#include "trainer/models/layer.h"

namespace sparta::models {

class Norm {
 public:
  // Registers `<name>.weight` (ones) and, for LayerNorm, `<name>.bias` (zeros); neither decays.
  Norm(ParamSet& ps, kernels::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
       const std::string& name, int layer);
  void forward(Tensor out, Tensor in);                      // out = norm(in)
  void backward(Tensor din, Tensor dout, Tensor in) const;  // din += norm^T dout; weights' += too

 private:
  NormType type_;
  float eps_;
  Weight g_, b_;
  Tensor mean_, rstd_;  // [N]; mean_: LayerNorm only reads it
};

}  // namespace sparta::models
