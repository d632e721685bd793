// AdamW over a model's parameters. First and second moments live in two arenas with exactly the
// parameter arena's layout, so parameter i's state is at the same byte offset in each.
#pragma once

#include <vector>

#include "kernels/arena.h"
#include "kernels/op_types.h"
#include "trainer/models/transformer.h"

namespace sparta::trainer {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<models::Param>& params, kernels::Tensor flat_params, AdamWConfig cfg);
  // One update with learning rate lr; gradients are multiplied by grad_scale first (clipping).
  // `step` is 1-based.
  void step(double lr, double grad_scale, int64_t step);
  kernels::Tensor flat_m() const { return m_.flat_f32(); }
  kernels::Tensor flat_v() const { return v_.flat_f32(); }

 private:
  std::vector<models::Param>& params_;
  kernels::Tensor flat_params_;
  AdamWConfig cfg_;
  kernels::Arena m_, v_;
};

// Linear warmup from 0 to lr over warmup steps, then cosine decay to lr * min_lr_ratio at the
// last step. `step` is 0-based.
double lr_at(int64_t step, int64_t total_steps, double lr, int64_t warmup, double min_lr_ratio);

}  // namespace sparta::trainer
