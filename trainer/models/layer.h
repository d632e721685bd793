// What every layer module shares: the sizes it is built from, the per-pass values it reads, the
// two halves of a block as interfaces (a token mixer and a feed-forward), the router statistics
// routed layers report, and the tensor-parallel sums split layers use.
//
// A module (trainer/models/*.h) owns its parameters (registered with a ParamSet), its
// activations (planned into the model's activation ArenaPlan at construction) and its host
// scratch; backward scratch that only lives during one module's backward is planned once per
// kind by the model and lent to every module of that kind (layers run one at a time). Forward
// and backward take every per-call value as an argument; nothing is set on a module before a
// call. Buffer conventions: "=" outputs are overwritten, "+=" outputs accumulate.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/arena.h"
#include "parallel/process_groups.h"
#include "trainer/models/model_config.h"
#include "trainer/models/param.h"

namespace sparta::models {

// The sizes of this rank's model: the config's, the split's and the batch's.
struct Dims {
  int64_t B = 1, T = 1, Tf = 1, N = 1;  // T: this rank's tokens per sequence (Tf / cp); N = B*T
  int64_t C = 1, H = 1, D = 1, V = 1, F = 1, FC = 1, L = 0;  // FC: SwiGLU's gate + up = 2F
  int tp = 1, tp_rank = 0, cp = 1, cp_rank = 0, ep = 1, ep_rank = 0;
  int64_t Hl = 1, Hc = 1, Cl = 1, Fl = 1, FCl = 1, Vl = 1;  // this rank's heads, widths, vocab
  // Context parallel = Ulysses (cpa ranks: all-to-alls) x ring (cpr ranks: zigzag chunks, K/V
  // round the ring), cp = cpa * cpr (ProcessGroups::cp_a2a, cp_ring). Attention runs on
  // Hc = Hl / cpa heads of Ta = T * cpa query rows per sequence: pure Ulysses all Tf rows; pure
  // ring this rank's T rows.
  int cpa = 1, cpa_rank = 0, cpr = 1, cpr_rank = 0;
  bool ring = false;  // cpr > 1
  int64_t Ta = 1;
  static Dims of(const ModelConfig& cfg, int batch, const parallel::ProcessGroups& g);
  // Zigzag sharding (RingAttention): ring rank r of cp holds `rows` tokens of each sequence,
  // chunks r and 2 cp - 1 - r of 2 cp chunks of rows / 2, in that order. Row i's position.
  static int64_t zigzag_position(int64_t i, int64_t rows, int r, int cp) {
    const int64_t m = rows / 2;
    return (i < m ? r : 2 * cp - 1 - r) * m + i % m;
  }
  // Position in its sequence of this rank's token i (0..T-1): row cpa_rank * T + i of its ring
  // rank's Ta; without a ring, tokens [cp_rank * T, (cp_rank + 1) * T).
  int64_t token_position(int64_t i) const {
    return ring ? zigzag_position(cpa_rank * T + i, Ta, cpr_rank, cpr) : cp_rank * T + i;
  }
};

// The values of one forward (and the backward that may follow it).
struct Pass {
  bool training = false;  // a backward follows: MoE routers use the global batch's expert counts
  float grad_scale = 0;   // d(objective) / d(mean token loss) of this micro-batch (aux losses)
};

// RMoE's recurrent routing state, carried explicitly up the MoE layers in the forward (h: the
// state the next MoE layer reads) and its gradient down in the backward (dh: d(h) from the
// layers above; spare: the buffer the next d(h_prev) is written into, then the two swap). The
// model owns the buffers; layers without a recurrent router pass it on untouched.
struct RouterState {
  Tensor h;
};
struct RouterStateGrad {
  Tensor dh, spare;
};

// Router statistics of one routed block from the last forward (for metrics). kind: "moe" (an
// MoE/RMoE FFN: its load-balance and z losses are part of the objective), "uoe.attn" or
// "uoe.mlp" (UoE's rank-only routers: the losses are reported, never trained).
struct MoeLayerStats {
  int layer = -1;
  std::string kind = "moe";
  std::vector<int64_t> expert_tokens;  // (token, slot) assignments per expert, before capacity
  int64_t dropped = 0;                 // assignments dropped by the capacity
  int64_t fillers = 0;                 // UoE paper mode: non-members processed in spare slots
  double router_entropy = 0;           // mean over tokens of -sum_e p_e log p_e (nats)
  double load_balance_loss = 0, z_loss = 0;
};

// The token-mixing half of a block (dense attention, UoE selective attention).
class Mixer {
 public:
  virtual ~Mixer() = default;
  // out [N, C] (the module's own buffer) = Attn(x).
  virtual Tensor forward(Tensor x) = 0;
  // dx += Attn^T dout. dout is only read before dx is first written, so dx may alias dout.
  virtual void backward(Tensor x, Tensor dout, Tensor dx) = 0;
  virtual const MoeLayerStats* stats() const { return nullptr; }
};

// The feed-forward half of a block (dense MLP, top-k MoE / RMoE, UoE union of MLP experts).
class Ffn {
 public:
  virtual ~Ffn() = default;
  virtual Tensor forward(const Pass& pass, Tensor x, RouterState& state) = 0;
  // dx += FFN^T dout (same aliasing rule as Mixer::backward).
  virtual void backward(const Pass& pass, Tensor x, Tensor dout, Tensor dx,
                        RouterStateGrad& state) = 0;
  virtual const MoeLayerStats* stats() const { return nullptr; }
  // The part of the objective this layer adds (MoE: the weighted load-balance and z losses).
  virtual double aux_loss() const { return 0.0; }
};

// Megatron's conjugate pair for tensor-parallel layers: the output of a row-parallel
// projection is this rank's share and is summed over tp (sum); the input gradient of a
// column-parallel projection is likewise a share, written into a scratch (dx_share), summed and
// added to dx (dx_done). With tp = 1 both are the identity and dx_share is dx itself.
class TensorParallel {
 public:
  TensorParallel(const parallel::Group& tp, kernels::ArenaPlan& acts, const Dims& d);
  int size() const { return size_; }
  int rank() const { return rank_; }
  void sum(Tensor t) const;
  Tensor dx_share(Tensor dx) const;
  void dx_done(Tensor dx) const;

 private:
  parallel::Comm* dev_;
  int size_, rank_;
  Tensor scratch_;  // [N, C], tp > 1
};

}  // namespace sparta::models
