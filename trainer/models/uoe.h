// Union of Experts (../shared/specs/uoe.md, docs/uoe.md): every layer's attention becomes
// selective multi-head attention (experts = groups of whole heads: the tensor-parallel slices of
// Wq|Wk|Wv and Wo, stored expert-major, with per-expert biases) and its FFN a union of MLP
// experts (column/row slices of the d_ff-wide FFN). Frozen rank-only routers (buffers: no
// gradient, no optimizer state) choose each token's experts; kernels/uoe.h maps tokens to slots.
// Tensor parallel: every rank routes identically (replicated routers) and runs only its experts'
// slot blocks of the full slot layout; the other blocks of y stay zero, so the combine gives
// this rank's share and the tp sum the whole.
#pragma once

#include <vector>

#include "kernels/uoe.h"
#include "trainer/models/layer.h"

namespace sparta::models {

// The sizes of a UoE model: experts, their widths and the slots of each mode (spec section 3).
struct UoeShape {
  UoeShape(const ModelConfig& cfg, const Dims& d);
  bool paper;
  int64_t Ea, ka, Wa;       // attention experts, per token, width (heads per expert * D)
  int64_t Em, km, Fm, FCm;  // MLP experts, per token, hidden width (SwiGLU: gate + up)
  int64_t Ta, Tm, Gm;       // slots: attention (paper: the max), MLP; MLP groups
  int64_t Ra, Rm;           // slot rows over all experts
};

// Backward scratch of the UoE layers (one set for the model) and the all-ones combine weights
// (the union is an unweighted sum).
struct UoeScratch {
  UoeScratch(kernels::ArenaPlan& acts, const Dims& d, const UoeShape& u);
  Tensor ones_a, ones_m;
  Tensor g_xs, g_y, g_qkv, g_q, g_k, g_v, g_o, g_att, g_h, g_act;
};

// One frozen router and the slot maps of its last forward.
class UoeRouter {
 public:
  // Buffers `<name>.weight` [E, C] (N(0, init_std), spec 4.1) and `<name>.bias` [E] (zeros).
  UoeRouter(ParamSet& ps, kernels::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
            const UoeShape& u, bool attn, int layer);
  // Routes x and fills the slot maps; stats gets the expert counts, drops and aux values.
  void route(Tensor x, MoeLayerStats& stats);
  int64_t E, K, T = 0;  // T: the slots of the last forward
  Tensor row_token, pos, slot_pos;
  std::vector<int64_t> offsets;  // this rank's experts' slot-block row offsets (host)

 private:
  bool attn_, paper_;
  int64_t B_, L_, slots_;
  Tensor wg_, cg_, logits_, probs_, idx_, w_;
  kernels::UoeAssignStats assign_;
  std::vector<int64_t> counts_;
};

class UoeAttention final : public Mixer {
 public:
  UoeAttention(ParamSet& ps, kernels::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
               const UoeShape& u, const TensorParallel& tp, UoeScratch& s, int layer);
  Tensor forward(Tensor x) override;
  void backward(Tensor x, Tensor dout, Tensor dx) override;
  const MoeLayerStats* stats() const override { return &stats_; }

 private:
  Dims d_;
  bool rope_;
  float theta_;
  const TensorParallel& tp_;
  UoeScratch& s_;
  Weight wqkv_, bqkv_, wproj_, bproj_;
  UoeRouter router_;
  Tensor xs_, qkv_, q_, k_, v_, o_, lse_, att_, y_, out_;  // sized for the largest T
  MoeLayerStats stats_;
};

class UoeMlp final : public Ffn {
 public:
  UoeMlp(ParamSet& ps, kernels::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
         const UoeShape& u, const TensorParallel& tp, UoeScratch& s, int layer);
  Tensor forward(const Pass& pass, Tensor x, RouterState& state) override;
  void backward(const Pass& pass, Tensor x, Tensor dout, Tensor dx,
                RouterStateGrad& state) override;
  const MoeLayerStats* stats() const override { return &stats_; }

 private:
  FfnType type_;
  int64_t Gm_;
  const TensorParallel& tp_;
  UoeScratch& s_;
  Weight wfc_, bfc_, wout_, bout_;
  UoeRouter router_;
  Tensor xs_, h_, act_, y_, out_;
  MoeLayerStats stats_;
};

}  // namespace sparta::models
