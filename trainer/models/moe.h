// Top-k mixture-of-experts FFN, its stages written once for every expert-parallel degree
// (DESIGN.md section 4; Megatron-Core's router / token dispatcher / experts split):
//   route    Router (linear, or RMoE's GRU) -> logits; softmax + top-K + renormalise
//   permute  stable sort of the (token, slot) pairs by expert, with capacity; gather rows
//   dispatch TokenDispatcher: local (ep = 1), or all-to-all over ep to the experts' ranks
//   experts  Experts: one grouped GEMM per projection over the row blocks of the local experts
//   combine  the dispatcher brings the rows back; weighted sum into token order
// plus the Switch load-balance and z losses, with the global batch's expert fractions under
// data parallelism, so data-parallel MoE equals one process.
#pragma once

#include <memory>
#include <vector>

#include "trainer/models/layer.h"
#include "trainer/models/router.h"

namespace sparta::models {

// Backward scratch of the MoE layers (one set for the model); ep > 1 adds the receive side.
struct MoeScratch {
  MoeScratch(kernels::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d);
  Tensor g_dlogits, g_dw, g_doutp, g_dh, g_dact, g_dxp;
  Tensor ep_ex, ep_out, g_r_h, g_r_act, g_r_x;  // [ep * N * K, .]: rows of the ep group
};

// The rows the local experts compute: x in, h and act the saved activations, y out, in row
// blocks per local expert (offsets, E_local + 1, host).
struct ExpertRows {
  Tensor x, h, act, y;
  const std::vector<int64_t>* offsets = nullptr;
  int64_t rows = 0;
};
// Their gradients: dy in; dact, dh, dx scratch (dx: d(x), "+=" after zeroing).
struct ExpertGrads {
  Tensor dy, dact, dh, dx;
};

// This rank's experts of one layer: fc [E, FC_e, C] and proj [E, C, F_e], split over ep.
class Experts {
 public:
  // Registers `layers.<l>.ffn.experts.fc.weight` and `layers.<l>.ffn.experts.proj.weight`.
  Experts(ParamSet& ps, const ModelConfig& cfg, const Dims& d, int layer);
  void forward(const ExpertRows& r);
  void backward(const ExpertRows& r, const ExpertGrads& g);

 private:
  FfnType type_;
  Weight wfc_, wout_;
};

// Moves the permuted rows (expert-major over all E experts, `offsets`) to the ranks that own
// their experts and their results back; the backward reverses both moves.
class TokenDispatcher {
 public:
  virtual ~TokenDispatcher() = default;
  // local: this rank's permuted rows and their buffers; returns what the local experts compute.
  virtual ExpertRows dispatch(const ExpertRows& local) = 0;
  // The experts' outputs (r.y) back into `outp`, in the permuted order of this rank's rows.
  virtual void combine(Tensor outp, const ExpertRows& r) = 0;
  // backward, the moves reversed: local.dy = d(outp) to the experts, returning the gradients
  // they use (local's buffers for ep = 1); then their d(x) back into dxp.
  virtual ExpertGrads dispatch_grad(const ExpertGrads& local) = 0;
  virtual void combine_grad(Tensor dxp, const ExpertGrads& g) = 0;
};

class MoeFfn final : public Ffn {
 public:
  // `gru`: the shared GRU cell for RMoE routing (null: a linear router).
  MoeFfn(ParamSet& ps, kernels::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
         const parallel::ProcessGroups& g, MoeScratch& s, GruCell* gru, int layer);
  Tensor forward(const Pass& pass, Tensor x, RouterState& state) override;
  void backward(const Pass& pass, Tensor x, Tensor dout, Tensor dx,
                RouterStateGrad& state) override;
  const MoeLayerStats* stats() const override { return &stats_; }
  double aux_loss() const override;

 private:
  void aux_losses(const Pass& pass);
  int64_t E_, K_, N_;
  double capacity_factor_, aux_coef_, z_coef_;
  parallel::Comm* dp_;  // host: the expert counts of the global batch
  MoeScratch& s_;
  std::unique_ptr<Router> router_;
  Experts experts_;
  std::unique_ptr<TokenDispatcher> dispatcher_;
  Tensor logits_, probs_, idx_, w_;   // [N,E], [N,E], i32 [N,K], [N,K]
  Tensor pos_, row_token_;            // i32 [N*K]
  Tensor xp_, h_, act_, outp_, out_;  // permuted rows [N*K, .]; out_ [N, C]
  std::vector<int64_t> offsets_;      // E + 1 row offsets of the experts (host)
  int64_t rows_ = 0;                  // kept (token, slot) pairs of the last forward
  ExpertRows dispatched_;             // what the local experts computed in the last forward
  MoeLayerStats stats_;
  // Data parallel: the global batch's assignment fraction of each expert (training forwards).
  std::vector<double> f_global_;
  std::vector<int64_t> counts_;         // scratch for moe_aux_losses
  std::vector<int32_t> global_counts_;  // scratch for the counts all-reduce
};

}  // namespace sparta::models
