// The gradient's way from the backward to the optimizer, one component for replicated and
// ZeRO-1 training, in the order the gradient-noise spec fixes: reduction, global-norm clip,
// noise, then the optimizer.
//   replicated: every rank averages the whole gradient, in buckets (one per block, plus the
//     parameters outside the blocks). With parallel.overlap_grad_reduce a block's bucket starts
//     its all-reduce from the backward as soon as the block is done (last micro-batch only).
//   ZeRO-1: a reduce-scatter leaves each rank the average of its block of the flat gradient
//     (Comm::block_range of its dp rank); only that block is clipped, noised and updated, then
//     the parameters are all-gathered (gather_params).
// Groups: dense parameters are averaged over dp; experts are summed over edp and divided by the
// dense group's size (an expert's gradient already sums every ep rank's tokens, each scaled by
// its rank's 1/tokens), which is the one-process mean over the global batch. The global norm
// sums split parameters over their shard group.
#pragma once

#include <vector>

#include "kernels/arena.h"
#include "parallel/process_groups.h"
#include "trainer/models/transformer.h"
#include "trainer/optim/grad_noise.h"

namespace sparta::trainer {

struct GradSyncConfig {
  bool zero = false;     // ZeRO-1
  bool overlap = false;  // start block buckets inside the backward (replicated, several ranks)
  double clip = 0;       // global-norm clip (0: off)
  NoiseParams noise;
};

class GradSync {
 public:
  GradSync(models::Transformer& model, const parallel::ProcessGroups& groups,
           const GradSyncConfig& cfg);
  // In-flight bucket reductions are completed before the gradient memory can go (an exception
  // may unwind past them); the peers started the same collectives, so this returns promptly.
  ~GradSync();
  GradSync(const GradSync&) = delete;
  GradSync& operator=(const GradSync&) = delete;

  // What the backward of a micro-batch calls as blocks finish (null: nothing, e.g. not the last
  // micro-batch, or no overlap).
  const models::BlockGradsReady* backward_hook(bool last_micro_batch) const;

  struct Reduced {
    kernels::Tensor grad;  // what the optimizer reads: empty = the model's gradients (replicated)
    GradPost post;         // norm, clip, noise, and the scale the optimizer must still apply
  };
  // After the last backward of a step: reduce, norm, clip, noise.
  Reduced reduce(int64_t step);
  // After the optimizer step (ZeRO-1): every rank's updated block to every rank.
  void gather_params();

  bool sharded() const { return cfg_.zero; }
  // ZeRO-1: this rank's block of the flat parameters (replicated: all of them).
  int64_t shard_begin() const { return s0_; }
  int64_t shard_end() const { return s1_; }

 private:
  struct Bucket {
    parallel::Comm* comm;  // null: nothing to reduce (a group of one rank)
    kernels::Tensor t;
    bool expert;  // summed over expert-DP, then scaled
  };
  void build_buckets();
  void start_bucket(size_t i);
  double replicated_norm();
  double sharded_norm(const kernels::Tensor& shard);
  kernels::Tensor host_scalar();

  models::Transformer& model_;
  const parallel::ProcessGroups& g_;
  GradSyncConfig cfg_;
  int64_t s0_ = 0, s1_ = 0;
  kernels::Arena grad_shard_;  // ZeRO-1: this rank's block of the reduced gradient
  std::vector<std::vector<Bucket>> buckets_;
  std::vector<char> started_;
  models::BlockGradsReady start_block_;
  std::vector<float> scalar_;
};

}  // namespace sparta::trainer
