#include "trainer/optim/adamw.h"

#include <cmath>

#include "kernels/ops.h"

namespace sparta::trainer {

namespace k = sparta::kernels;

AdamW::AdamW(std::vector<models::Param>& params, k::Tensor flat_params, AdamWConfig cfg)
    : params_(params),
      flat_params_(flat_params),
      cfg_(cfg),
      s0_(0),
      s1_(flat_params.numel()),
      m_(flat_params.device, flat_params.nbytes(), "adam_m"),
      v_(flat_params.device, flat_params.nbytes(), "adam_v") {
  m_.alloc(k::DType::f32, {flat_params.numel()});
  v_.alloc(k::DType::f32, {flat_params.numel()});
}

AdamW::AdamW(std::vector<models::Param>& params, k::Tensor flat_params, AdamWConfig cfg,
             int64_t shard_begin, int64_t shard_end)
    : params_(params),
      flat_params_(flat_params),
      cfg_(cfg),
      sharded_(true),
      s0_(shard_begin),
      s1_(shard_end),
      m_(flat_params.device, static_cast<size_t>(std::max<int64_t>(1, shard_end - shard_begin)) * 4,
         "adam_m_shard"),
      v_(flat_params.device, static_cast<size_t>(std::max<int64_t>(1, shard_end - shard_begin)) * 4,
         "adam_v_shard") {
  SPARTA_CHECK(0 <= s0_ && s0_ <= s1_ && s1_ <= flat_params.numel(),
               "ZeRO-1 shard [{}, {}) outside the {} parameters", s0_, s1_, flat_params.numel());
  m_.alloc(k::DType::f32, {std::max<int64_t>(1, s1_ - s0_)});
  v_.alloc(k::DType::f32, {std::max<int64_t>(1, s1_ - s0_)});
}

void AdamW::step(double lr, double grad_scale, int64_t step, k::Tensor grad_shard) {
  k::AdamWParams hp;
  hp.lr = static_cast<float>(lr);
  hp.beta1 = static_cast<float>(cfg_.beta1);
  hp.beta2 = static_cast<float>(cfg_.beta2);
  hp.eps = static_cast<float>(cfg_.eps);
  hp.grad_scale = static_cast<float>(grad_scale);
  hp.step = step;
  const k::Tensor m = m_.flat_f32(), v = v_.flat_f32();
  auto span = [](const k::Tensor& base, int64_t at, int64_t n) {
    return k::Tensor(static_cast<float*>(base.data) + at, k::DType::f32, base.device, {n});
  };
  if (sharded_)
    SPARTA_CHECK(grad_shard.numel() >= s1_ - s0_,
                 "ZeRO-1 step: gradient block {} for shard [{}, {})", grad_shard.shape_str(), s0_,
                 s1_);
  // Unsharded, the state and the gradient share the parameter's offsets; sharded, they are
  // offset by the shard start.
  models::for_each_in_range(
      params_, flat_params_, s0_, s1_, [&](size_t i, int64_t in_param, int64_t n, int64_t flat_at) {
        const models::Param& p = params_[i];
        hp.weight_decay = p.decay ? static_cast<float>(cfg_.weight_decay) : 0.0f;
        const int64_t state_at = flat_at - s0_;
        const k::Tensor g = sharded_ ? span(grad_shard, state_at, n) : span(p.g, in_param, n);
        k::adamw_update(span(p.w, in_param, n), g, span(m, state_at, n), span(v, state_at, n), hp);
      });
}

void AdamW::prepare_full_state() {
  if (!sharded_ || !full_m_.flat_f32().empty()) return;
  full_m_ = k::Arena(flat_params_.device, flat_params_.nbytes(), "adam_m_full");
  full_v_ = k::Arena(flat_params_.device, flat_params_.nbytes(), "adam_v_full");
  full_m_.alloc(k::DType::f32, {flat_params_.numel()});
  full_v_.alloc(k::DType::f32, {flat_params_.numel()});
}

void AdamW::gather_full_state(parallel::Comm& dp) {
  if (!sharded_) return;
  prepare_full_state();
  for (auto [full, mine] : {std::pair{full_m_.flat_f32(), m_.flat_f32()},
                            std::pair{full_v_.flat_f32(), v_.flat_f32()}}) {
    const k::Tensor block = full.view({full.numel()}).rows(s0_, s1_);
    if (s1_ > s0_) k::copy(block, mine.rows(0, s1_ - s0_));
    dp.all_gather(full, block);
  }
}

void AdamW::scatter_full_state() {
  if (!sharded_ || s1_ == s0_) return;
  k::copy(m_.flat_f32().rows(0, s1_ - s0_), full_m_.flat_f32().rows(s0_, s1_));
  k::copy(v_.flat_f32().rows(0, s1_ - s0_), full_v_.flat_f32().rows(s0_, s1_));
}

double lr_at(int64_t step, int64_t total_steps, double lr, int64_t warmup, double min_lr_ratio) {
  if (step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - 1 - warmup));
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
  const double floor = lr * min_lr_ratio;
  return floor + (lr - floor) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace sparta::trainer
