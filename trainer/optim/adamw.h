// AdamW over a model's parameters, optionally ZeRO-1-sharded.
//
// Unsharded: the first and second moments live in two arenas with exactly the parameter arena's
// layout, so parameter i's state is at the same byte offset in each.
// Sharded (ZeRO-1): this rank keeps the moments of elements [shard_begin, shard_end) of the flat
// parameter block only (Comm::block_range of its data-parallel rank), and step() updates just
// those elements from the reduce-scattered gradient block; the trainer all-gathers the
// parameters afterwards. Weight decay and every other per-parameter rule apply per element
// exactly as unsharded, so the result is the single-process one.
#pragma once

#include <vector>

#include "kernels/arena.h"
#include "kernels/op_types.h"
#include "parallel/comm.h"
#include "trainer/models/param.h"

namespace sparta::trainer {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<models::Param>& params, kernels::Tensor flat_params, AdamWConfig cfg);
  // ZeRO-1: state for flat elements [shard_begin, shard_end) only.
  AdamW(std::vector<models::Param>& params, kernels::Tensor flat_params, AdamWConfig cfg,
        int64_t shard_begin, int64_t shard_end);
  // One update with learning rate lr; gradients are multiplied by grad_scale first (clipping).
  // `step` is 1-based. Sharded: grad_shard holds the gradient of the shard's elements.
  void step(double lr, double grad_scale, int64_t step, kernels::Tensor grad_shard = {});

  bool sharded() const { return sharded_; }
  int64_t shard_begin() const { return s0_; }
  int64_t shard_end() const { return s1_; }
  // The moments in the parameter layout (what checkpoints read and write). Sharded, these are
  // full-size buffers that exist only around a checkpoint: gather_full_state() fills them from
  // every rank's shard (a collective over `dp`), scatter_full_state() takes this rank's shard
  // back after a load.
  kernels::Tensor flat_m() const { return sharded_ ? full_m_.flat_f32() : m_.flat_f32(); }
  kernels::Tensor flat_v() const { return sharded_ ? full_v_.flat_f32() : v_.flat_f32(); }
  void gather_full_state(parallel::Comm& dp);
  void prepare_full_state();  // sharded: allocates the full buffers (before a load)
  void scatter_full_state();

 private:
  std::vector<models::Param>& params_;
  kernels::Tensor flat_params_;
  AdamWConfig cfg_;
  bool sharded_ = false;
  int64_t s0_ = 0, s1_ = 0;
  kernels::Arena m_, v_;
  kernels::Arena full_m_, full_v_;  // sharded only, around checkpoints
};

// Linear warmup from 0 to lr over warmup steps, then cosine decay to lr * min_lr_ratio at the
// last step. `step` is 0-based.
double lr_at(int64_t step, int64_t total_steps, double lr, int64_t warmup, double min_lr_ratio);

}  // namespace sparta::trainer
