// What happens to the gradient between the reduction and the optimizer, in the order the
// gradient-noise spec fixes: global-norm clip, then annealed Gaussian noise (not re-clipped).
#pragma once

#include <cstdint>
#include <vector>

#include "trainer/models/param.h"

namespace sparta::trainer {

struct NoiseParams {
  double eta = 0;  // variance at t = 0; <= 0 turns the noise off (and skips it entirely)
  double gamma = 0.55;
  uint64_t seed = 0;
};

// sigma_t = sqrt(eta / (1 + t)^gamma): a standard deviation (eta is a variance).
double noise_sigma(const NoiseParams& p, int64_t step);

struct GradPost {
  double norm = 0;                  // global L2 norm before clipping
  double clip_scale = 1;            // min(1, clip / norm)
  double sigma = 0;                 // noise std added (0 when off)
  double optimizer_grad_scale = 1;  // what AdamW must still multiply the gradients by
};

// Without noise the clip is not applied here but handed to AdamW (fused, one pass less). With
// noise, gradients are scaled in place first, then parameter i (its index in the canonical
// parameter list) gets noise keyed by (seed, i, step, element index).
GradPost clip_and_noise(std::vector<models::Param>& params, kernels::Tensor flat_grads, double clip,
                        const NoiseParams& noise, int64_t step);
// The same with the global norm given (sharded models: the norm of the full gradient needs a
// reduction over the shard groups, trainer.cpp). A sharded parameter's noise is keyed by the
// full tensor's element index, so each rank adds exactly its elements' one-process noise.
GradPost clip_and_noise_with_norm(std::vector<models::Param>& params, kernels::Tensor flat_grads,
                                  double norm, double clip, const NoiseParams& noise, int64_t step);
// The same on elements [b, e) of the flat gradient only (ZeRO-1: this rank's block), given as
// `g` (e - b elements): the clip scales g, the noise of each parameter's part of the range is
// keyed by its full-tensor indices, so the blocks of all ranks together get exactly the
// single-process noise. `flat_params`: the parameter block whose layout g follows.
GradPost clip_and_noise_range(const std::vector<models::Param>& params,
                              const kernels::Tensor& flat_params, kernels::Tensor g, int64_t b,
                              int64_t e, double norm, double clip, const NoiseParams& noise,
                              int64_t step);
// Noise of elements [in_param, in_param + g.numel()) of parameter i's local tensor, keyed by
// their full-tensor indices.
void add_param_noise(const models::Param& p, uint32_t i, kernels::Tensor g, int64_t in_param,
                     float sigma, uint64_t seed, int64_t step);

}  // namespace sparta::trainer
