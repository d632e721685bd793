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
  return clip_and_noise_with_norm(params, flat_grads, std::sqrt(k::sum_squares(flat_grads)), clip,
                                  noise, step);
}

void add_param_noise(const models::Param& p, uint32_t i, k::Tensor g, int64_t in_param, float sigma,
                     uint64_t seed, int64_t step) {
  const models::Shard& sh = p.shard;
  const int64_t n = g.numel(), run = sh.parts == 1 ? in_param + n : sh.run_length();
  float* base = static_cast<float*>(g.data);
  for (int64_t at = in_param; at < in_param + n;) {  // one call per run of the full tensor
    const int64_t len = std::min(in_param + n, (at / run + 1) * run) - at;
    k::add_gaussian_noise(k::Tensor(base + (at - in_param), k::DType::f32, g.device, {len}), sigma,
                          seed, i, static_cast<uint32_t>(step), sh.global_index(at));
    at += len;
  }
}

namespace {
// The clip scale and the noise level; with noise, the clip is applied to g here (the noise is
// added to clipped gradients and not re-clipped), otherwise it is left to the optimizer.
GradPost clip_first(double norm, double clip, const NoiseParams& noise, int64_t step, k::Tensor g) {
  GradPost r;
  r.norm = norm;
  r.clip_scale = clip > 0 && r.norm > clip ? clip / r.norm : 1.0;
  r.sigma = noise_sigma(noise, step);
  if (r.sigma == 0) {
    r.optimizer_grad_scale = r.clip_scale;
    return r;
  }
  if (r.clip_scale != 1.0) k::scale(g, static_cast<float>(r.clip_scale));
  SPARTA_CHECK(step >= 0 && step < (int64_t{1} << 32), "noise step {} outside 32 bits", step);
  return r;
}
}  // namespace

GradPost clip_and_noise_range(const std::vector<models::Param>& params, const k::Tensor& flat,
                              k::Tensor g, int64_t b, int64_t e, double norm, double clip,
                              const NoiseParams& noise, int64_t step) {
  const GradPost r = clip_first(norm, clip, noise, step, g);
  if (r.sigma == 0) return r;
  models::for_each_in_range(
      params, flat, b, e, [&](size_t i, int64_t in_param, int64_t n, int64_t flat_at) {
        add_param_noise(params[i], static_cast<uint32_t>(i), g.rows(flat_at - b, flat_at - b + n),
                        in_param, static_cast<float>(r.sigma), noise.seed, step);
      });
  return r;
}

GradPost clip_and_noise_with_norm(std::vector<models::Param>& params, k::Tensor flat_grads,
                                  double norm, double clip, const NoiseParams& noise,
                                  int64_t step) {
  const GradPost r = clip_first(norm, clip, noise, step, flat_grads);
  if (r.sigma == 0) return r;
  for (size_t i = 0; i < params.size(); ++i)
    add_param_noise(params[i], static_cast<uint32_t>(i), params[i].g, 0,
                    static_cast<float>(r.sigma), noise.seed, step);
  return r;
}

}  // namespace sparta::trainer
