// The dense feed-forward block and the activation every FFN-shaped module shares.
//   FFN(x) = W_out act(W_fc x), act = SwiGLU (W_fc holds gate and up, [2F, C]) or GELU ([F, C]).
// Tensor parallel (Megatron): W_fc column-parallel (SwiGLU's gate and up halves paired), W_out
// row-parallel with its output summed over tp.
#pragma once

#include "trainer/models/layer.h"

namespace sparta::models {

// act(in) -> out ("=") and its backward (din += act'(in) dout) for the config's activation.
void activation_forward(FfnType type, Tensor out, Tensor in);
void activation_backward(FfnType type, Tensor din, Tensor dout, Tensor in);

// Backward scratch of the dense FFNs (one set for the model).
struct MlpScratch {
  MlpScratch(kernels::ArenaPlan& acts, const Dims& d);
  Tensor g_fc, g_act;
};

class Mlp final : public Ffn {
 public:
  // Registers `layers.<l>.ffn.fc.weight` [FC, C] and `layers.<l>.ffn.proj.weight` [C, F].
  Mlp(ParamSet& ps, kernels::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
      const TensorParallel& tp, MlpScratch& s, int layer);
  Tensor forward(const Pass& pass, Tensor x, RouterState& state) override;
  void backward(const Pass& pass, Tensor x, Tensor dout, Tensor dx,
                RouterStateGrad& state) override;

 private:
  FfnType type_;
  const TensorParallel& tp_;
  MlpScratch& s_;
  Weight wfc_, wout_;
  Tensor fc_, act_, out_;
};

}  // namespace sparta::models
