// The model's two ends: the token (and learned position) embedding, and the LM head with the
// cross-entropy loss. Tensor parallel: both are vocab-parallel (each rank holds vocabulary rows
// [tp_rank * V / tp, (tp_rank + 1) * V / tp)): a rank embeds only its rows' tokens (zeros
// elsewhere) and the tp sum completes every row; the loss combines the parts' log-sum-exps so
// that full logits are never on one rank. Context parallel: this rank's part of the sequence
// reads its rows of the position table.
#pragma once

#include <vector>

#include "trainer/models/layer.h"

namespace sparta::models {

class TokenEmbedding {
 public:
  // Registers `wte` [V, C] (split over tp) and, with learned positions, `wpe` [T, C].
  TokenEmbedding(ParamSet& ps, kernels::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
                 const TensorParallel& tp);
  Tensor forward(Tensor tokens);  // [N, C]
  void backward(Tensor dout, Tensor tokens);
  Weight& wte() { return wte_; }
  Tensor output() const { return out_; }  // the last forward's [N, C]

 private:
  Tensor positions(Tensor table) const;  // this rank's rows of a [T, C] position table
  Dims d_;
  const TensorParallel& tp_;
  Weight wte_, wpe_;
  Tensor out_;
};

class LmHead {
 public:
  // Registers `lm_head.weight` [V, C] (split over tp), or reads the tied embedding's.
  LmHead(ParamSet& ps, kernels::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
         const parallel::ProcessGroups& g, const TensorParallel& tp, TokenEmbedding& emb);
  // Per-token losses of `hidden` [N, C] against `targets` (device, i32; < 0: ignored) and,
  // unless dhidden is empty, dhidden = dloss * d(sum of losses)/d(hidden) ("=") and the head's
  // gradient (+=). `host_targets`: the same targets on the host (vocab-parallel loss). `valid`:
  // the number of targets >= 0. Returns the mean loss over the valid targets.
  float loss(Tensor hidden, Tensor targets, const int32_t* host_targets, int64_t valid,
             Tensor dhidden, float dloss);
  // The logits of row `row` of `hidden` into host_logits[V] (every rank gets the whole row).
  void logits(Tensor hidden, int64_t row, float* host_logits);
  Tensor token_losses() const { return losses_; }

 private:
  float vocab_parallel_loss(Tensor hidden, Tensor targets, const int32_t* host_targets,
                            int64_t valid, Tensor dhidden, float dloss);
  Dims d_;
  parallel::Group tp_group_;
  const TensorParallel& tp_;
  Weight own_;
  const Weight* w_;  // own_ or the embedding's
  Tensor losses_, logits_ws_, logit_row_;
  Tensor lse_parts_, tlogit_, row_lse_;    // vocab parallel
  std::vector<float> host_losses_, host_;  // host_: parts' lse [tp*N], target logits, row lse
};

}  // namespace sparta::models
