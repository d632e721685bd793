// Decoder-only transformer with per-layer norm placement (Pre-LN, Post-LN, Mix-LN), explicit
// forward and backward (no autograd), and all memory planned at construction.
//
// Block equations (../shared/specs/mixln.md section 2; N_a, N_f are the layer's two norms):
//   Pre-LN : u = x + Attn(N_a(x));  out = u + FFN(N_f(u))
//   Post-LN: u = N_a(x + Attn(x));  out = N_f(u + FFN(u))
// followed by the final norm (always present) and the LM head. The parameter list, its order and
// every initial value depend only on the config minus the placement, so Mix-LN with K = 0 is
// Pre-LN and K = L is Post-LN bit for bit.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/arena.h"
#include "kernels/uoe.h"
#include "parallel/comm.h"
#include "trainer/models/model_config.h"

namespace sparta::models {

using kernels::Tensor;

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

// (1/pi) * arccos(<a, b> / (|a| |b|)), in [0, 1]; a NaN similarity (a zero vector) gives 0.5
// as in the Mix-LN reference code.
double angular_distance(const float* a, const float* b, int64_t n);

// Which group of ranks splits a parameter between them (every other rank of the group holds a
// different part; ranks outside it hold copies). none: the whole tensor on every rank.
enum class ShardGroup { none = 0, tp = 1, ep = 2 };
constexpr int kShardGroups = 3;

// A parameter's place in its full tensor: the full tensor viewed as [outer, mid, inner]; this
// rank holds mid rows [index * mid / parts, (index + 1) * mid / parts) of every outer block, i.e.
// a local tensor [outer, mid / parts, inner]. Examples: column-parallel QKV [3C, C] is
// [3, C, C] split on C (heads of each of q, k, v); row-parallel [C, F] is [C, F, 1]; experts
// [E, ...] are [1, E, ...]. Initial values and gradient noise are keyed by the full tensor's
// element index, so every layout draws the same numbers as one process.
struct Shard {
  ShardGroup group = ShardGroup::none;
  int64_t outer = 1, mid = 1, inner = 1;
  int parts = 1, index = 0;
  int64_t local_mid() const { return mid / parts; }
  // Contiguous runs of the local tensor: run o starts at local element o * run_length() and at
  // full element run_global(o).
  int64_t runs() const { return outer; }
  int64_t run_length() const { return local_mid() * inner; }
  int64_t run_global(int64_t o) const { return (o * mid + index * local_mid()) * inner; }
  int64_t global_index(int64_t local) const {
    return parts == 1 ? local : run_global(local / run_length()) + local % run_length();
  }
};

struct Param {
  std::string name;
  int layer = -1;     // -1: not inside a block (embeddings, final norm, head)
  bool decay = true;  // AdamW weight decay applies (matrices and embeddings, not norms)
  Tensor w, g;        // this rank's part of the weight and its gradient, same shape
  Shard shard;        // where w sits in the full tensor (group none: w is the full tensor)
  std::vector<int64_t> full_shape;
};

// How this rank's model is split; the trainer builds it from the process mesh. The
// communicators are not owned. *_dev carry the model's device tensors (NCCL on GPUs, else MPI);
// *_host carry host tensors and checkpoint gathers (MPI; device tensors are staged).
// Context parallel (cp): this rank holds tokens [cp_rank * T / cp, (cp_rank + 1) * T / cp) of every
// sequence; attention exchanges heads for sequence (all-to-all, DeepSpeed-Ulysses style) so that
// each rank attends over the whole sequence for n_heads / (tp * cp) heads.
struct ModelParallel {
  int tp = 1, tp_rank = 0, ep = 1, ep_rank = 0, cp = 1, cp_rank = 0;
  parallel::Comm *tp_dev = nullptr, *tp_host = nullptr, *ep_dev = nullptr, *ep_host = nullptr;
  parallel::Comm* cp_dev = nullptr;
};

class Transformer {
 public:
  // Plans and allocates parameters, gradients and activations for micro-batches of B sequences
  // of cfg.seq_len tokens on `device`. Parameters are initialised from `seed` (Philox streams
  // keyed by parameter number, so values are independent of device and layout).
  // `par`: this rank's tensor-, context- and expert-parallel split (default: the whole model).
  Transformer(const ModelConfig& cfg, int batch, kernels::Device device, uint64_t seed,
              const ModelParallel& par = {});

  const ModelConfig& config() const { return cfg_; }
  int batch() const { return B_; }
  int64_t seq_len_local() const { return cfg_.seq_len / par_.cp; }
  std::vector<Param>& params() { return params_; }
  const std::vector<Param>& params() const { return params_; }
  // Model state that is not trained (UoE's frozen, rank-only routers: spec T7): initialised from
  // the seed and checkpointed with the parameters, but outside flat_params, so it has no
  // gradient, no optimizer state, no clipping and no noise. g is empty.
  const std::vector<Param>& buffers() const { return buffers_; }
  int64_t num_params() const;
  // Every parameter / gradient as one flat tensor (padding between tensors is zero).
  Tensor flat_params() const { return param_arena_.flat_f32(); }
  Tensor flat_grads() const { return grad_arena_.flat_f32(); }
  // Parameters are laid out by shard group (none, then tp, then ep), so each group's gradients
  // are one contiguous range [begin, end) of the flat block (reduced and normed per group).
  std::pair<int64_t, int64_t> group_range(ShardGroup g) const {
    return group_range_[static_cast<size_t>(g)];
  }
  const ModelParallel& parallel() const { return par_; }
  // The host communicator of the ranks that split a group's parameters (none: null).
  parallel::Comm* shard_comm(ShardGroup g) const {
    return g == ShardGroup::tp ? par_.tp_host : g == ShardGroup::ep ? par_.ep_host : nullptr;
  }
  // The full tensor of a (possibly sharded) parameter or optimizer moment `local` (laid out as
  // p.w) into host memory full[numel(full_shape)]. Collective over p's shard group: every rank of
  // it calls this for the same p in the same order.
  void gather_full(const Param& p, const Tensor& local, float* full) const;
  // The inverse: this rank's part of a full host tensor into `local` (no communication).
  void scatter_full(const Param& p, const float* full, const Tensor& local) const;
  size_t activation_bytes() const { return act_arena_.used(); }
  size_t param_bytes() const { return param_arena_.used(); }

  // Data parallelism: with a communicator of several ranks, training forwards all-reduce the MoE
  // routers' expert counts so that the load-balance loss uses the whole global batch's
  // assignment fractions (the averaged gradients then equal one process's). Evaluation forwards
  // stay local (ranks may run different numbers of them). Not owned; null: one process.
  void set_data_parallel(parallel::Comm* dp) { dp_ = dp; }
  // Called by forward_backward as soon as block `layer`'s parameter gradients are final (top
  // block first), so the trainer can start reducing them while the blocks below compute. The
  // gradients of parameters outside the blocks (layer -1) are final when forward_backward
  // returns. Set once (no allocation per step); empty: none.
  void set_backward_hook(std::function<void(int layer)> hook) { backward_hook_ = std::move(hook); }

  // Copies a micro-batch (host arrays of B*T tokens and targets; a target < 0 is ignored) to the
  // model's device. The loss is the mean over the positions with a target. Context parallel:
  // B*T/cp, this rank's part of each sequence (seq_len_local()).
  void set_batch(const int32_t* tokens, const int32_t* targets);

  // Forward + backward on the current tokens/targets. Gradients ACCUMULATE: the loss whose
  // gradient is added is grad_scale * mean_token_loss. Returns the mean token loss.
  float forward_backward(float grad_scale);
  // Forward only (evaluation). Returns the mean token loss.
  float forward_loss();
  void zero_grads();
  // Forward only, then the logits of token position `row` (0..B*T-1) into host_logits[V].
  // Targets are not used (set them to -1). For sampling.
  void next_token_logits(int64_t row, float* host_logits);

  // sqrt(sum of squared gradients) of each block's parameters: the Mix-LN depth diagnostic.
  // Collective over the tp and ep groups when parameters are split (every rank calls it).
  std::vector<double> layer_grad_norms() const;
  // Mix-LN diagnostic (spec section 7.2, T9): d(l, 1) between the input of block l and the input
  // of block l + 1 (for the last block, its output before the final norm), on the last token of
  // each sequence of the last forward, averaged over the batch. In [0, 1]; 0 = parallel.
  // Context parallel: the last token of this rank's part of each sequence.
  std::vector<double> angular_distances() const;
  // One entry per MoE layer, from the last forward.
  const std::vector<MoeLayerStats>& moe_stats() const { return moe_stats_; }
  // The auxiliary part of the objective from the last forward: sum over MoE layers of
  // aux_loss_coef * load_balance + z_loss_coef * z. forward_backward differentiates
  // grad_scale * (mean token loss + aux_loss()); the returned loss is the token loss alone.
  double aux_loss() const;
  // Forward output of the last run: per-token losses [B*T] and the final hidden state's input
  // (for tests and diagnostics).
  Tensor token_losses() const { return losses_; }
  Tensor layer_output(int layer) const { return acts_[static_cast<size_t>(layer)].out; }

 private:
  struct LayerParams {
    Tensor na_g, na_b, nf_g, nf_b, wqkv, wproj, wfc, wout;  // b: layernorm beta only
    Tensor d_na_g, d_na_b, d_nf_g, d_nf_b, dwqkv, dwproj, dwfc, dwout;
    // MoE layers: router [E,C]; wfc [E,FC_e,C] and wout [E,C,F_e] hold the experts.
    bool moe = false;
    int moe_slot = -1;         // index into moe_stats_
    Tensor wrouter, dwrouter;  // [E,C] (linear) or [E,P] (gru)
    Tensor wgproj, dwgproj;    // RMoE projector [P,C]
    // UoE layers: wqkv [Ea,3W,C], wproj [Ea,C,W] (W = heads per expert * D), wfc [Em,FC_e,C],
    // wout [Em,C,F_e]; per-expert biases; the two frozen routers (buffers).
    bool uoe = false;
    int uoe_slot = -1;  // moe_stats_ index of the attention router; the MLP router's is + 1
    Tensor bqkv, bproj, bfc, bout, dbqkv, dbproj, dbfc, dbout;
    Tensor wg_a, cg_a, wg_m, cg_m;
  };
  // One UoE router's outputs and slot maps (kernels/uoe.h); T: the slots of the last forward.
  struct UoeRoute {
    Tensor logits, probs, idx, w, row_token, pos, slot_pos;
    int64_t T = 0;
    kernels::UoeAssignStats assign;  // host counts, reused every step
    std::vector<int64_t> offsets;    // E + 1 row offsets of the experts' slot blocks (host)
  };
  // Slot buffers are sized for the largest T the mode allows; each forward views its own T.
  struct UoeActs {
    UoeRoute ra, rm;
    Tensor xs_a, qkv_a, q, k, v, o, lse, att_a, y_a;  // selective attention
    Tensor xs_m, h_m, act_m, y_m;                     // union of MLP experts
  };
  struct MoeActs {
    Tensor logits, probs, idx, w;  // [N,E], [N,E], i32 [N,K], [N,K]
    Tensor pos, row_token;         // i32 [N*K]
    Tensor xp, h, act, outp;       // permuted rows: [N*K,C], [N*K,FC_e], [N*K,F_e], [N*K,C]
    std::vector<int64_t> offsets;  // E+1 row offsets of the experts (host)
    int64_t rows = 0;              // kept (token, slot) pairs
    // RMoE: projected input, gate pre-activations, saved gates, the new state; h_prev is the
    // previous MoE layer's h (or the zero state).
    Tensor xg, gi, gh, gates, h_state, h_prev;
    // Data parallel: the global batch's assignment fraction of each expert (used when set).
    std::vector<double> f_global;
    bool use_f_global = false;
    // Expert parallel (ep > 1): the rows of this rank's experts gathered from every rank of the
    // ep group, in expert-major order [ep*N*K max, .]; perm maps such a row to its place in the
    // source-major receive buffer, invperm back; counts are rows per peer.
    Tensor xr, hr, actr, perm, invperm;
    std::vector<int64_t> local_offsets, send_rows, recv_rows;
    int64_t received = 0;
  };
  struct LayerActs {
    Tensor out;                                  // [N,C] the layer's output = next layer's input
    Tensor na_out, na_mean, na_rstd;             // first norm
    Tensor nf_out, nf_mean, nf_rstd;             // second norm (Pre-LN only output)
    Tensor qkv, q, k, v, o, lse, att, att_proj;  // attention
    Tensor sum1, sum2;                           // residual sums feeding the norms
    Tensor fc, act, mlp_out;                     // FFN (dense layers; mlp_out for all)
    MoeActs moe;                                 // MoE layers
    UoeActs uoe;                                 // UoE layers
  };

  void plan(kernels::Arena& params, kernels::Arena& grads, kernels::Arena& acts,
            kernels::Arena& buffers);
  void init_params(uint64_t seed);
  void forward_hidden();  // embedding -> blocks -> final norm (fin_out_)
  float forward(bool with_backward, float grad_scale);
  void backward();

  void norm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor in, Tensor g, Tensor b);
  void norm_backward(Tensor din, Tensor dg, Tensor db, Tensor dout, Tensor in, Tensor g,
                     Tensor mean, Tensor rstd);
  void attention_forward(const LayerParams& p, LayerActs& a, Tensor x);
  void attention_backward(const LayerParams& p, const LayerActs& a, Tensor x, Tensor dout,
                          Tensor dx);
  void ffn_forward(const LayerParams& p, LayerActs& a, Tensor x);
  void ffn_backward(const LayerParams& p, const LayerActs& a, Tensor x, Tensor dout, Tensor dx);
  void moe_forward(const LayerParams& p, LayerActs& a, Tensor x, MoeLayerStats& stats);
  void moe_backward(const LayerParams& p, const LayerActs& a, Tensor x, Tensor dout, Tensor dx);
  void ep_plan(MoeActs& m);
  // Rows `src` (widths w) to the peers by m's counts, or back (reverse = true).
  void ep_exchange(const MoeActs& m, Tensor dst, Tensor src, int64_t width, bool reverse);
  void uoe_route(UoeRoute& r, Tensor x, Tensor wg, Tensor cg, int64_t E, bool attn,
                 MoeLayerStats& st);
  void uoe_attention_forward(const LayerParams& p, LayerActs& a, Tensor x);
  void uoe_attention_backward(const LayerParams& p, const LayerActs& a, Tensor dout, Tensor dx);
  void uoe_mlp_forward(const LayerParams& p, LayerActs& a, Tensor x);
  void uoe_mlp_backward(const LayerParams& p, const LayerActs& a, Tensor dout, Tensor dx);

  ModelConfig cfg_;
  int B_;
  kernels::Device device_;
  ModelParallel par_;
  std::array<std::pair<int64_t, int64_t>, kShardGroups> group_range_{};
  kernels::Arena param_arena_, grad_arena_, act_arena_, buffer_arena_;
  std::vector<Param> params_, buffers_;
  std::vector<float> init_scale_, buffer_init_;  // per param/buffer: >0 std, 0 zeros, -1 ones

  Tensor wte_, wpe_, fin_g_, fin_b_, head_;
  Tensor dwte_, dwpe_, dfin_g_, dfin_b_, dhead_;
  std::vector<LayerParams> layers_;
  std::vector<LayerActs> acts_;
  Tensor emb_out_, fin_out_, fin_mean_, fin_rstd_, losses_, logits_ws_, logit_row_;
  Tensor tokens_, targets_;
  // Backward scratch, shared by all layers (zeroed where an op accumulates into it).
  Tensor g_resid_, g_tmp_, g_norm_, g_att_, g_qkv_, g_q_, g_k_, g_v_, g_o_, g_fc_, g_act_;
  Tensor g_dlogits_, g_dw_, g_doutp_, g_dh_, g_dact_, g_dxp_;  // MoE layers
  std::vector<MoeLayerStats> moe_stats_;
  // RMoE shared GRU: W_ih, W_hh [3P,P], b_ih, b_hh [3P]; the zero initial state; the recurrent
  // gradient d(h) carried down the MoE layers in the backward (two buffers, swapped).
  Tensor gru_wih_, gru_whh_, gru_bih_, gru_bhh_, dgru_wih_, dgru_whh_, dgru_bih_, dgru_bhh_;
  Tensor gru_h0_, g_gru_dh_, g_gru_dh_prev_, g_gru_dx_, g_gru_dgi_, g_gru_dgh_;
  // UoE: combine weights (all ones: the union is an unweighted sum), slot sizes, backward scratch.
  Tensor uoe_ones_a_, uoe_ones_m_;
  int64_t uoe_Ta_ = 0, uoe_Tm_ = 0, uoe_Gm_ = 0;  // planned slots (SMHA: max), MLP groups
  Tensor g_u_xs_, g_u_y_, g_u_qkv_, g_u_q_, g_u_k_, g_u_v_, g_u_o_, g_u_att_, g_u_h_, g_u_act_;
  // Context parallel: [B, H_tp, T/cp, D] (all heads, this rank's tokens) <-> [B, H_tp/cp, T, D]
  // (this rank's heads, every token), through an all-to-all over the cp group; positions():
  // this rank's rows of a position table.
  void cp_to_heads(Tensor dst, Tensor src);
  void cp_to_tokens(Tensor dst, Tensor src);
  Tensor positions(Tensor table) const;
  Tensor cp_q_, cp_k_, cp_v_, cp_send_, cp_recv_;
  std::vector<int64_t> cp_counts_;
  // Tensor parallel: the input gradient of a split layer is this rank's share, summed over the
  // tp group (g_tpx_) before it joins dx; the forward's conjugate is tp_sum of the output.
  Tensor tp_dx(Tensor dx);
  void tp_dx_done(Tensor dx);
  void tp_sum(Tensor t);
  float vocab_parallel_loss(bool with_backward, float dloss);
  Tensor g_tpx_, tp_lse_parts_, tp_tlogit_, tp_row_lse_;
  std::vector<float> tp_host_;  // host: the parts' lse [tp*N], target logits [N], row lse [N]
  std::vector<int32_t> tp_targets_host_;
  // Expert parallel scratch: the exchange buffer, receive-side gradients, host plans.
  Tensor ep_ex_, ep_out_, g_r_h_, g_r_act_, g_r_x_;
  std::vector<int32_t> ep_counts_, ep_perm_, ep_invperm_;
  std::vector<int64_t> ep_send_el_, ep_recv_el_;
  std::vector<int64_t> moe_counts_;  // scratch for moe_aux_losses
  float grad_scale_ = 1.0f;          // of the running forward_backward (aux-loss gradients)
  parallel::Comm* dp_ = nullptr;     // set_data_parallel
  std::function<void(int)> backward_hook_;
  bool training_forward_ = false;       // the running forward is forward_backward's
  std::vector<int32_t> global_counts_;  // scratch for the counts all-reduce
  std::vector<float> host_losses_;
  int64_t valid_targets_ = -1;
};

}  // namespace sparta::models
