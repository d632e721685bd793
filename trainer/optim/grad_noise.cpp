#include "trainer/optim/grad_noise.h"

#include <cmath>

#include "kernels/ops.h"

namespace sparta::trainer {

namespace k = sparta::kernels;

double noise_sigma(const NoiseParams& p, int64_t step) {
  if (p.eta <= 0) return 0;
  return std::sqrt(p.eta / std::pow(1.0 + static_cast<double>(step), p.gamma));
}

GradPost clip_and_noise(std::vector<models::Param>& params, k::Tensor flat_grads, double clip,
                        const NoiseParams& noise, int64_t step) {
  GradPost r;
  r.norm = std::sqrt(k::sum_squares(flat_grads));
  r.clip_scale = clip > 0 && r.norm > clip ? clip / r.norm : 1.0;
  r.sigma = noise_sigma(noise, step);
  if (r.sigma == 0) {
    r.optimizer_grad_scale = r.clip_scale;
    return r;
  }
  if (r.clip_scale != 1.0) k::scale(flat_grads, static_cast<float>(r.clip_scale));
  SPARTA_CHECK(step >= 0 && step < (int64_t{1} << 32), "noise step {} outside 32 bits", step);
  for (size_t i = 0; i < params.size(); ++i)
    k::add_gaussian_noise(params[i].g, static_cast<float>(r.sigma), noise.seed,
                          static_cast<uint32_t>(i), static_cast<uint32_t>(step));
  return r;
}

}  // namespace sparta::trainer
