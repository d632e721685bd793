#include "trainer/optim/adamw.h"

#include <cmath>

#include "kernels/ops.h"

namespace sparta::trainer {

namespace k = sparta::kernels;

AdamW::AdamW(std::vector<models::Param>& params, k::Tensor flat_params, AdamWConfig cfg)
    : params_(params),
      flat_params_(flat_params),
      cfg_(cfg),
      m_(flat_params.device, flat_params.nbytes(), "adam_m"),
      v_(flat_params.device, flat_params.nbytes(), "adam_v") {
  m_.alloc(k::DType::f32, {flat_params.numel()});
  v_.alloc(k::DType::f32, {flat_params.numel()});
}

void AdamW::step(double lr, double grad_scale, int64_t step) {
  auto at_same_offset = [&](const k::Tensor& state, const k::Tensor& p) {
    k::Tensor t = p;
    t.data = static_cast<char*>(state.data) +
             (static_cast<char*>(p.data) - static_cast<char*>(flat_params_.data));
    return t;
  };
  const k::Tensor m = m_.flat_f32(), v = v_.flat_f32();
  k::AdamWParams hp;
  hp.lr = static_cast<float>(lr);
  hp.beta1 = static_cast<float>(cfg_.beta1);
  hp.beta2 = static_cast<float>(cfg_.beta2);
  hp.eps = static_cast<float>(cfg_.eps);
  hp.grad_scale = static_cast<float>(grad_scale);
  hp.step = step;
  for (const models::Param& p : params_) {
    hp.weight_decay = p.decay ? static_cast<float>(cfg_.weight_decay) : 0.0f;
    k::adamw_update(p.w, p.g, at_same_offset(m, p.w), at_same_offset(v, p.w), hp);
  }
}

double lr_at(int64_t step, int64_t total_steps, double lr, int64_t warmup, double min_lr_ratio) {
  if (step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - 1 - warmup));
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
  const double floor = lr * min_lr_ratio;
  return floor + (lr - floor) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace sparta::trainer
