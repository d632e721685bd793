// MoE routers: token -> expert logits [N, E].
//   LinearRouter: logits = x W_r^T (one W_r [E, C] per layer).
//   GruRouter (RMoE, ../shared/specs/rmoe.md): x -> projector W_p [P, C] -> one GRU cell shared
//     by every MoE layer, whose hidden state h travels up the MoE layers (RouterState) ->
//     logits = h W_r^T (W_r [E, P] per layer). The gradient flows back down through the state
//     (RouterStateGrad): no detach between layers.
#pragma once

#include "trainer/models/layer.h"

namespace sparta::models {

class Router {
 public:
  virtual ~Router() = default;
  virtual void forward(Tensor logits, Tensor x, RouterState& state) = 0;  // logits "="
  virtual void backward(Tensor dlogits, Tensor x, Tensor dx, RouterStateGrad& state) = 0;  // dx +=
};

class LinearRouter final : public Router {
 public:
  // Registers `layers.<l>.ffn.router.weight` [E, C].
  LinearRouter(ParamSet& ps, const ModelConfig& cfg, int layer);
  void forward(Tensor logits, Tensor x, RouterState& state) override;
  void backward(Tensor dlogits, Tensor x, Tensor dx, RouterStateGrad& state) override;

 private:
  Weight w_;
};

// The GRU cell every GruRouter shares: W_ih, W_hh [3P, P], b_ih, b_hh [3P] (PyTorch's gate
// order and init scale 1/sqrt(P)), the zero initial state, and the backward scratch.
class GruCell {
 public:
  GruCell(kernels::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d);
  // Registered after the blocks (`router.gru.*`, layer -1): the canonical parameter order.
  void add_params(ParamSet& ps);
  // The state and gradient buffers a pass starts from (the initial state is zero; the gradient
  // reaching the last MoE layer's state is zero).
  RouterState initial_state() const { return {h0_}; }
  RouterStateGrad initial_grad();
  int64_t P;
  Weight wih, whh, bih, bhh;
  Tensor g_dx, g_dgi, g_dgh;  // backward scratch

 private:
  float init_std_;
  Tensor h0_, g_dh_, g_dh_prev_;
};

class GruRouter final : public Router {
 public:
  // Registers `layers.<l>.ffn.router.proj.weight` [P, C] and `layers.<l>.ffn.router.weight`
  // [E, P]; `gru` must outlive the router.
  GruRouter(ParamSet& ps, kernels::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
            GruCell& gru, int layer);
  void forward(Tensor logits, Tensor x, RouterState& state) override;
  void backward(Tensor dlogits, Tensor x, Tensor dx, RouterStateGrad& state) override;

 private:
  GruCell& gru_;
  Weight wproj_, w_;
  Tensor xg_, gi_, gh_, gates_, h_, h_prev_;  // h_prev_: the state this layer read (a view)
};

}  // namespace sparta::models
