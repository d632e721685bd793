// Decoder-only transformer: token embedding -> blocks (trainer/models/block.h: per-layer norm
// placement, a token mixer and an FFN chosen by the config) -> final norm -> LM head. Explicit
// forward and backward (no autograd); every tensor planned at construction (the step allocates
// nothing). This class only composes the layer modules; docs/architecture.md maps them.
//
// Canonical parameter order (checkpoint names, init streams, noise keys): wte, [wpe], each block
// (norm_a, mixer, norm_f, FFN), [router.gru.*], norm_final, [lm_head]. Initial values depend
// only on the config minus the norm placement, and never on the device or the split.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "kernels/arena.h"
#include "parallel/process_groups.h"
#include "trainer/models/block.h"
#include "trainer/models/embedding.h"
#include "trainer/models/layer.h"
#include "trainer/models/model_config.h"
#include "trainer/models/param.h"

namespace sparta::models {

struct AttentionScratch;
struct MlpScratch;
struct MoeScratch;
struct UoeScratch;
struct UoeShape;
class GruCell;

// (1/pi) * arccos(<a, b> / (|a| |b|)), in [0, 1]; a NaN similarity (a zero vector) gives 0.5
// as in the Mix-LN reference code.
double angular_distance(const float* a, const float* b, int64_t n);

// Called by forward_backward as soon as block `layer`'s parameter gradients are final (top
// block first), so gradient reduction can start while the blocks below compute. The gradients
// of parameters outside the blocks (layer -1) are final when forward_backward returns.
using BlockGradsReady = std::function<void(int layer)>;

class Transformer {
 public:
  static constexpr int kBlockOverlay = 1;  // Recompute::block (Block::kMixerOverlay is 0)
  // Plans and allocates parameters, gradients and activations for micro-batches of B sequences
  // of cfg.seq_len tokens on `device`; initialises the parameters from `seed` (Philox streams
  // keyed by parameter number and full-tensor index). `groups`: this rank's process groups,
  // which must outlive the model (null: one process). A split the model cannot take is a usage
  // error (parallel::validate_model_support).
  // `recompute`: which activations the backward recomputes (model_config.h Recompute).
  Transformer(const ModelConfig& cfg, int batch, kernels::Device device, uint64_t seed,
              const parallel::ProcessGroups* groups = nullptr,
              Recompute recompute = Recompute::none);
  ~Transformer();
  Transformer(const Transformer&) = delete;
  Transformer& operator=(const Transformer&) = delete;

  const ModelConfig& config() const { return cfg_; }
  int batch() const { return static_cast<int>(d_.B); }
  int64_t seq_len_local() const { return d_.T; }
  const parallel::ProcessGroups& groups() const { return *groups_; }
  std::vector<Param>& params() { return ps_.params(); }
  const std::vector<Param>& params() const { return ps_.params(); }
  // Model state that is not trained (UoE's frozen routers, spec T7); g is empty.
  const std::vector<Param>& buffers() const { return ps_.buffers(); }
  const ParamSet& param_set() const { return ps_; }
  int64_t num_params() const { return ps_.num_params(); }
  // Every parameter / gradient as one flat tensor (padding between tensors is zero).
  Tensor flat_params() const { return ps_.flat_params(); }
  Tensor flat_grads() const { return ps_.flat_grads(); }
  // Each shard group's gradients are one contiguous range [begin, end) of the flat block.
  std::pair<int64_t, int64_t> group_range(ShardGroup g) const { return ps_.group_range(g); }
  // The host communicator of the ranks that split a group's parameters (none: null).
  parallel::Comm* shard_comm(ShardGroup g) const;
  // The full tensor of parameter (or moment) `local` into host `full`, and back: param.h.
  void gather_full(const Param& p, const Tensor& local, float* full) const;
  void scatter_full(const Param& p, const float* full, const Tensor& local) const;
  size_t activation_bytes() const { return act_arena_.used(); }
  // What the recompute overlays saved against keeping every layer's activations.
  size_t recompute_saved_bytes() const { return recompute_saved_; }
  size_t param_bytes() const { return ps_.param_bytes(); }

  // Copies a micro-batch of B whole sequences (host arrays of B * seq_len tokens and targets; a
  // target < 0 is ignored) to the model's device; with context parallelism the model keeps its
  // part of each sequence. The loss is the mean over the positions with a target.
  void set_batch(const int32_t* tokens, const int32_t* targets);
  int64_t valid_targets() const { return valid_targets_; }  // of this rank's part

  // Forward + backward on the current batch. Gradients ACCUMULATE: the loss whose gradient is
  // added is grad_scale * (mean token loss + aux_loss()). Returns the mean token loss.
  float forward_backward(float grad_scale, const BlockGradsReady* ready = nullptr);
  // The same in its two halves (the trainer times them apart): the training forward, then its
  // backward with the same grad_scale.
  float forward_train(float grad_scale);
  void backward(float grad_scale, const BlockGradsReady* ready = nullptr);
  // Forward only (evaluation). Returns the mean token loss.
  float forward_loss();
  void zero_grads();
  // Forward only, then the logits of token position `row` (0..B*T-1) into host_logits[V].
  void next_token_logits(int64_t row, float* host_logits);

  // sqrt(sum of squared gradients) of each block's parameters: the Mix-LN depth diagnostic.
  // Collective over the tp and ep groups when parameters are split (every rank calls it).
  std::vector<double> layer_grad_norms() const;
  // Mix-LN diagnostic (spec section 7.2, T9): d(l, 1) between the input of block l and its
  // output, on the last token of each sequence of the last forward, averaged over the batch.
  // Context parallel: the last token of this rank's part of each sequence.
  std::vector<double> angular_distances() const;
  // One entry per routed block (MoE FFN; UoE attention and MLP), from the last forward.
  std::vector<MoeLayerStats> moe_stats() const;
  // The same without copying (f(const MoeLayerStats&), block order): for per-micro-batch use.
  template <class F>
  void for_each_routed(F f) const {
    for (const auto& b : blocks_)
      for (const MoeLayerStats* st : {b->mixer().stats(), b->ffn().stats()})
        if (st) f(*st);
  }
  // The auxiliary part of the objective from the last forward (the MoE layers' weighted
  // load-balance and z losses); the returned losses are the token loss alone.
  double aux_loss() const;
  Tensor token_losses() const;
  Tensor layer_output(int layer) const { return blocks_[static_cast<size_t>(layer)]->output(); }

 private:
  void build(kernels::ArenaPlan& acts);
  Tensor forward_hidden(const Pass& pass);  // embedding -> blocks -> final norm
  float forward(const Pass& pass, bool with_backward);
  void run_backward(const Pass& pass, const BlockGradsReady* ready);

  ModelConfig cfg_;
  Recompute recompute_;
  std::unique_ptr<parallel::ProcessGroups> own_groups_;  // when none are given
  const parallel::ProcessGroups* groups_;
  Dims d_;
  ParamSet ps_;
  kernels::Arena act_arena_;
  // Modules, built in the canonical parameter order; the scratch structs are lent to them.
  std::unique_ptr<TensorParallel> tp_;
  std::unique_ptr<AttentionScratch> attn_scratch_;
  std::unique_ptr<MlpScratch> mlp_scratch_;
  std::unique_ptr<MoeScratch> moe_scratch_;
  std::unique_ptr<UoeShape> uoe_shape_;
  std::unique_ptr<UoeScratch> uoe_scratch_;
  std::unique_ptr<GruCell> gru_;
  std::unique_ptr<TokenEmbedding> emb_;
  std::vector<std::unique_ptr<Block>> blocks_;
  std::unique_ptr<Norm> final_norm_;
  std::unique_ptr<LmHead> head_;
  Tensor tokens_, targets_, hidden_;   // hidden_: the final norm's output
  Tensor g_resid_, g_tmp_, g_hidden_;  // backward: residual stream, block scratch, d(hidden)
  // Recompute::block with RMoE: the routing state each block read, kept (the router that wrote
  // it is overlaid).
  std::vector<Tensor> state_in_;
  size_t recompute_saved_ = 0;
  std::vector<int32_t> host_tokens_, host_targets_;  // this rank's part of the batch
  int64_t valid_targets_ = -1;
};

}  // namespace sparta::models
