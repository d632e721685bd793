#include "trainer/models/moe.h"

#include <cmath>

#include "kernels/moe.h"
#include "kernels/ops.h"
#include "trainer/models/dispatch.h"
#include "trainer/models/mlp.h"

namespace sparta::models {

namespace k = sparta::kernels;
using k::DType;

namespace {
int64_t expert_fc(const ModelConfig& cfg) {
  return cfg.ffn == FfnType::swiglu ? 2 * cfg.expert_ffn() : cfg.expert_ffn();
}
}  // namespace

MoeScratch::MoeScratch(k::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d) {
  const int64_t E = cfg.moe_experts, K = cfg.moe_top_k, NK = d.N * K;
  acts.add(&g_dlogits, {d.N, E});
  acts.add(&g_dw, {d.N, K});
  acts.add(&g_doutp, {NK, d.C});
  acts.add(&g_dh, {NK, expert_fc(cfg)});
  acts.add(&g_dact, {NK, cfg.expert_ffn()});
  acts.add(&g_dxp, {NK, d.C});
  if (d.ep > 1) {
    const int64_t R = d.ep * NK;
    acts.add(&ep_ex, {R, d.C});
    acts.add(&ep_out, {R, d.C});
    acts.add(&g_r_h, {R, expert_fc(cfg)});
    acts.add(&g_r_act, {R, cfg.expert_ffn()});
    acts.add(&g_r_x, {R, d.C});
  }
}

Experts::Experts(ParamSet& ps, const ModelConfig& cfg, const Dims& d, int layer) : type_(cfg.ffn) {
  const std::string pre = "layers." + std::to_string(layer) + ".ffn.experts.";
  const int64_t E = cfg.moe_experts, Fe = cfg.expert_ffn(), FCe = expert_fc(cfg);
  ps.add(&wfc_, pre + "fc.weight", layer, {E, FCe, d.C}, cfg.init_std, true,
         {ShardGroup::ep, 1, E, FCe * d.C, d.ep, d.ep_rank});
  ps.add(&wout_, pre + "proj.weight", layer, {E, d.C, Fe}, cfg.init_std, true,
         {ShardGroup::ep, 1, E, d.C * Fe, d.ep, d.ep_rank});
}

void Experts::forward(const ExpertRows& r) {
  k::grouped_matmul_forward(r.h, r.x, wfc_.w, *r.offsets);
  activation_forward(type_, r.act.rows(0, r.rows), r.h.rows(0, r.rows));
  k::grouped_matmul_forward(r.y, r.act, wout_.w, *r.offsets);
}

void Experts::backward(const ExpertRows& r, const ExpertGrads& g) {
  for (const Tensor& t : {g.dact, g.dh, g.dx}) k::zero(t.rows(0, r.rows));  // the rows in use
  k::grouped_matmul_backward(g.dact, wout_.g, g.dy, r.act, wout_.w, *r.offsets);
  activation_backward(type_, g.dh.rows(0, r.rows), g.dact.rows(0, r.rows), r.h.rows(0, r.rows));
  k::grouped_matmul_backward(g.dx, wfc_.g, g.dh, r.x, wfc_.w, *r.offsets);
}

MoeFfn::MoeFfn(ParamSet& ps, k::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
               const parallel::ProcessGroups& g, MoeScratch& s, GruCell* gru, int layer)
    : E_(cfg.moe_experts),
      K_(cfg.moe_top_k),
      N_(d.N),
      capacity_factor_(cfg.moe_capacity_factor),
      aux_coef_(cfg.moe_aux_loss_coef),
      z_coef_(cfg.moe_z_loss_coef),
      dp_(g.dp.host),
      s_(s),
      router_(gru ? std::unique_ptr<Router>(new GruRouter(ps, acts, cfg, d, *gru, layer))
                  : std::unique_ptr<Router>(new LinearRouter(ps, cfg, layer))),
      experts_(ps, cfg, d, layer) {
  const int64_t NK = d.N * K_;
  acts.add(&logits_, {d.N, E_});
  acts.add(&probs_, {d.N, E_});
  acts.add(&idx_, DType::i32, {d.N, K_});
  acts.add(&w_, {d.N, K_});
  acts.add(&pos_, DType::i32, {NK});
  acts.add(&row_token_, DType::i32, {NK});
  acts.add(&xp_, {NK, d.C});
  acts.add(&h_, {NK, expert_fc(cfg)});
  acts.add(&act_, {NK, cfg.expert_ffn()});
  acts.add(&outp_, {NK, d.C});
  acts.add(&out_, {d.N, d.C});
  offsets_.assign(static_cast<size_t>(E_ + 1), 0);
  f_global_.assign(static_cast<size_t>(E_), 0.0);
  counts_.assign(static_cast<size_t>(E_), 0);
  global_counts_.assign(static_cast<size_t>(E_), 0);
  stats_.layer = layer;
  stats_.expert_tokens.assign(static_cast<size_t>(E_), 0);
  if (d.ep == 1)
    dispatcher_ = std::make_unique<LocalDispatcher>();
  else
    dispatcher_ = std::make_unique<AllToAllDispatcher>(acts, cfg, d, g.ep, s);
}

Tensor MoeFfn::forward(const Pass& pass, Tensor x, RouterState& state) {
  router_->forward(logits_, x, state);
  k::moe_route_forward(probs_, idx_, w_, logits_);
  const int64_t capacity =
      capacity_factor_ > 0
          ? static_cast<int64_t>(std::ceil(capacity_factor_ * static_cast<double>(N_ * K_) /
                                           static_cast<double>(E_)))
          : 0;
  stats_.dropped = k::moe_permute(pos_, row_token_, offsets_, idx_, E_, capacity);
  rows_ = offsets_.back();
  k::moe_gather(xp_, x, row_token_, rows_);
  dispatched_ = dispatcher_->dispatch({xp_, h_, act_, outp_, &offsets_, rows_});
  experts_.forward(dispatched_);
  dispatcher_->combine(outp_, dispatched_);
  k::moe_combine_forward(out_, outp_, w_, pos_);
  aux_losses(pass);
  return out_;
}

// The load-balance and z losses (reported; their gradients are added in the backward). Under
// data parallelism a training forward all-reduces the expert counts so that the fractions f_e
// are the global batch's (the reported value pairs them with this rank's mean probabilities).
void MoeFfn::aux_losses(const Pass& pass) {
  auto aux = k::moe_aux_losses(logits_, probs_, idx_, stats_.expert_tokens, Tensor(), 0, 0, 0);
  if (dp_->size() > 1 && pass.training) {
    for (int64_t e = 0; e < E_; ++e)
      global_counts_[static_cast<size_t>(e)] =
          static_cast<int32_t>(stats_.expert_tokens[static_cast<size_t>(e)]);
    dp_->all_reduce(Tensor(global_counts_.data(), DType::i32, k::Device::cpu(), {E_}),
                    parallel::ReduceOp::sum);
    const double assignments = static_cast<double>(N_ * K_ * dp_->size());
    for (int64_t e = 0; e < E_; ++e) {
      const auto c = global_counts_[static_cast<size_t>(e)];
      stats_.expert_tokens[static_cast<size_t>(e)] = c;
      f_global_[static_cast<size_t>(e)] = static_cast<double>(c) / assignments;
    }
    aux = k::moe_aux_losses(logits_, probs_, idx_, counts_, Tensor(), 0, 0, 0, f_global_.data());
  }
  stats_.load_balance_loss = aux.load_balance;
  stats_.z_loss = aux.z;
  stats_.router_entropy = aux.router_entropy;
}

// dout is fully read (combine backward) before dx is written. A backward always follows a
// training forward, so under data parallelism f_global_ holds that forward's fractions.
void MoeFfn::backward(const Pass& pass, Tensor x, Tensor dout, Tensor dx, RouterStateGrad& state) {
  k::zero(s_.g_doutp);
  k::zero(s_.g_dw);
  k::moe_combine_backward(s_.g_doutp, s_.g_dw, dout, outp_, w_, pos_);
  k::zero(s_.g_dxp);
  const ExpertGrads g = dispatcher_->dispatch_grad({s_.g_doutp, s_.g_dact, s_.g_dh, s_.g_dxp});
  experts_.backward(dispatched_, g);
  dispatcher_->combine_grad(s_.g_dxp, g);
  k::moe_gather_backward(dx, s_.g_dxp, pos_);
  k::zero(s_.g_dlogits);
  k::moe_route_backward(s_.g_dlogits, s_.g_dw, probs_, idx_, w_);
  k::moe_aux_losses(logits_, probs_, idx_, counts_, s_.g_dlogits, static_cast<float>(aux_coef_),
                    static_cast<float>(z_coef_), pass.grad_scale,
                    dp_->size() > 1 ? f_global_.data() : nullptr);
  router_->backward(s_.g_dlogits, x, dx, state);
}

double MoeFfn::aux_loss() const {
  return aux_coef_ * stats_.load_balance_loss + z_coef_ * stats_.z_loss;
}

}  // namespace sparta::models
