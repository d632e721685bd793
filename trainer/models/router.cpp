#include "trainer/models/router.h"

#include <cmath>
#include <utility>

#include "kernels/moe.h"
#include "kernels/ops.h"

namespace sparta::models {

namespace k = sparta::kernels;

LinearRouter::LinearRouter(ParamSet& ps, const ModelConfig& cfg, int layer) {
  ps.add(&w_, "layers." + std::to_string(layer) + ".ffn.router.weight", layer,
         {cfg.moe_experts, cfg.d_model}, cfg.init_std, true);
}

void LinearRouter::forward(Tensor logits, Tensor x, RouterState&) {
  k::matmul_forward(logits, x, w_.w);
}

void LinearRouter::backward(Tensor dlogits, Tensor x, Tensor dx, RouterStateGrad&) {
  k::matmul_backward(dx, w_.g, dlogits, x, w_.w);
}

GruCell::GruCell(k::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d)
    : P(cfg.moe_gru_dim), init_std_(1.0f / std::sqrt(static_cast<float>(cfg.moe_gru_dim))) {
  acts.add(&h0_, {d.N, P});  // zero: the arena is zero-filled and nothing writes it
  acts.add(&g_dh_, {d.N, P});
  acts.add(&g_dh_prev_, {d.N, P});
  acts.add(&g_dx, {d.N, P});
  acts.add(&g_dgi, {d.N, 3 * P});
  acts.add(&g_dgh, {d.N, 3 * P});
}

void GruCell::add_params(ParamSet& ps) {
  ps.add(&wih, "router.gru.weight_ih", -1, {3 * P, P}, init_std_, true);
  ps.add(&whh, "router.gru.weight_hh", -1, {3 * P, P}, init_std_, true);
  ps.add(&bih, "router.gru.bias_ih", -1, {3 * P}, init_std_, false);
  ps.add(&bhh, "router.gru.bias_hh", -1, {3 * P}, init_std_, false);
}

RouterStateGrad GruCell::initial_grad() {
  k::zero(g_dh_);  // nothing flows into the last MoE layer's state
  return {g_dh_, g_dh_prev_};
}

GruRouter::GruRouter(ParamSet& ps, k::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
                     GruCell& gru, int layer)
    : gru_(gru) {
  const std::string pre = "layers." + std::to_string(layer) + ".ffn.router.";
  const int64_t P = gru.P;
  ps.add(&wproj_, pre + "proj.weight", layer, {P, d.C}, cfg.init_std, true);
  ps.add(&w_, pre + "weight", layer, {cfg.moe_experts, P}, cfg.init_std, true);
  acts.add(&xg_, {d.N, P});
  acts.add(&gi_, {d.N, 3 * P});
  acts.add(&gh_, {d.N, 3 * P});
  acts.add(&gates_, {d.N, 4 * P});
  acts.add(&h_, {d.N, P});
}

void GruRouter::forward(Tensor logits, Tensor x, RouterState& state) {
  h_prev_ = state.h;
  k::matmul_forward(xg_, x, wproj_.w);
  k::matmul_forward(gi_, xg_, gru_.wih.w);
  k::matmul_forward(gh_, h_prev_, gru_.whh.w);
  k::gru_cell_forward(h_, gates_, gi_, gh_, gru_.bih.w, gru_.bhh.w, h_prev_);
  k::matmul_forward(logits, h_, w_.w);
  state.h = h_;
}

// state.dh holds d(h) from the MoE layers above (the recurrent gradient); on return it holds
// d(h_prev), what the MoE layer below receives.
void GruRouter::backward(Tensor dlogits, Tensor x, Tensor dx, RouterStateGrad& state) {
  k::matmul_backward(state.dh, w_.g, dlogits, h_, w_.w);
  k::zero(state.spare);
  k::gru_cell_backward(gru_.g_dgi, gru_.g_dgh, gru_.bih.g, gru_.bhh.g, state.spare, state.dh,
                       gates_, h_prev_);
  k::zero(gru_.g_dx);
  k::matmul_backward(gru_.g_dx, gru_.wih.g, gru_.g_dgi, xg_, gru_.wih.w);
  k::matmul_backward(state.spare, gru_.whh.g, gru_.g_dgh, h_prev_, gru_.whh.w);
  k::matmul_backward(dx, wproj_.g, gru_.g_dx, x, wproj_.w);
  std::swap(state.dh, state.spare);
}

}  // namespace sparta::models
