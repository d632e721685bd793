#include "trainer/models/transformer.h"

#include <algorithm>
#include <cmath>

#include "kernels/ops.h"
#include "trainer/models/attention.h"
#include "trainer/models/mlp.h"
#include "trainer/models/moe.h"
#include "trainer/models/router.h"
#include "trainer/models/uoe.h"

namespace sparta::models {

namespace k = sparta::kernels;
using k::DType;

Transformer::Transformer(const ModelConfig& cfg, int batch, k::Device device, uint64_t seed,
                         const parallel::ProcessGroups* groups, Recompute recompute)
    : cfg_(cfg),
      recompute_(recompute),
      own_groups_(groups ? nullptr : std::make_unique<parallel::ProcessGroups>()),
      groups_(groups ? groups : own_groups_.get()),
      d_(Dims::of(cfg, batch, *groups_)) {
  const parallel::CpAlgo algo = d_.cpr == 1   ? parallel::CpAlgo::ulysses
                                : d_.cpa == 1 ? parallel::CpAlgo::ring
                                              : parallel::CpAlgo::hybrid;
  parallel::validate_model_support({d_.tp, d_.cp, d_.ep, 1, "tp-cp-ep-dp", 0, algo, d_.cpa},
                                   mesh_limits(cfg));
  SPARTA_CHECK(cfg.d_model % cfg.n_heads == 0, "d_model {} not divisible by n_heads {}",
               cfg.d_model, cfg.n_heads);
  SPARTA_CHECK(cfg.pos != PosEncoding::rope || cfg.head_dim() % 2 == 0,
               "rope needs an even head dim, got {}", cfg.head_dim());
  k::ArenaPlan acts("activations");
  build(acts);
  recompute_saved_ = acts.overlay_savings();
  act_arena_ = acts.commit(device);
  ps_.carve(device);
  ps_.init(seed);
}

Transformer::~Transformer() = default;

void Transformer::build(k::ArenaPlan& acts) {
  const parallel::ProcessGroups& g = *groups_;
  const Dims& d = d_;
  tp_ = std::make_unique<TensorParallel>(g.tp, acts, d);
  acts.add(&tokens_, DType::i32, {d.B, d.T});
  acts.add(&targets_, DType::i32, {d.B, d.T});
  emb_ = std::make_unique<TokenEmbedding>(ps_, acts, cfg_, d, *tp_);

  // Backward scratch, one set per module kind (the dense kinds' always, as planned before).
  const std::vector<bool> moe_mask = cfg_.moe_layer_mask();
  const bool any_moe = std::find(moe_mask.begin(), moe_mask.end(), true) != moe_mask.end();
  attn_scratch_ = std::make_unique<AttentionScratch>(acts, d, g.cp_ring.dev);
  mlp_scratch_ = std::make_unique<MlpScratch>(acts, d);
  if (any_moe) moe_scratch_ = std::make_unique<MoeScratch>(acts, cfg_, d);
  if (cfg_.uoe) {
    uoe_shape_ = std::make_unique<UoeShape>(cfg_, d);
    uoe_scratch_ = std::make_unique<UoeScratch>(acts, d, *uoe_shape_);
  }
  if (any_moe && cfg_.moe_router == "gru") gru_ = std::make_unique<GruCell>(acts, cfg_, d);

  blocks_.reserve(static_cast<size_t>(d.L));
  state_in_.reserve(static_cast<size_t>(d.L));  // the plan holds pointers to its elements
  for (int l = 0; l < cfg_.n_layers; ++l) {
    auto mixer = [&]() -> std::unique_ptr<Mixer> {
      if (cfg_.uoe)
        return std::make_unique<UoeAttention>(ps_, acts, cfg_, d, *uoe_shape_, *tp_, *uoe_scratch_,
                                              l);
      return std::make_unique<Attention>(ps_, acts, cfg_, d, g, *tp_, *attn_scratch_, l);
    };
    auto ffn = [&]() -> std::unique_ptr<Ffn> {
      if (cfg_.uoe)
        return std::make_unique<UoeMlp>(ps_, acts, cfg_, d, *uoe_shape_, *tp_, *uoe_scratch_, l);
      if (moe_mask[static_cast<size_t>(l)])
        return std::make_unique<MoeFfn>(ps_, acts, cfg_, d, g, *moe_scratch_, gru_.get(), l);
      return std::make_unique<Mlp>(ps_, acts, cfg_, d, *tp_, *mlp_scratch_, l);
    };
    // Recompute::block: every block in one overlay, whatever its kind (Post-/Pre-LN, dense or
    // MoE FFN: instances may differ in layout, and the largest sizes the overlay).
    const bool overlay = recompute_ == Recompute::block;
    if (overlay) {
      if (gru_) acts.add(&state_in_.emplace_back(), {d.N, cfg_.moe_gru_dim});
      acts.open_overlay(kBlockOverlay);
    }
    blocks_.push_back(
        std::make_unique<Block>(ps_, acts, cfg_, d, l, g_tmp_, recompute_, mixer, ffn));
    if (overlay) acts.close_overlay();
  }
  if (gru_) gru_->add_params(ps_);  // shared by every MoE layer: after the blocks
  final_norm_ = std::make_unique<Norm>(ps_, acts, cfg_, d, "norm_final", -1);
  head_ = std::make_unique<LmHead>(ps_, acts, cfg_, d, g, *tp_, *emb_);
  acts.add(&hidden_, {d.N, d.C});
  for (Tensor* t : {&g_resid_, &g_tmp_, &g_hidden_}) acts.add(t, {d.N, d.C});
  host_tokens_.assign(static_cast<size_t>(d.N), 0);
  host_targets_.assign(static_cast<size_t>(d.N), -1);
}

parallel::Comm* Transformer::shard_comm(ShardGroup g) const {
  return g == ShardGroup::tp ? groups_->tp.host : g == ShardGroup::ep ? groups_->ep.host : nullptr;
}

void Transformer::gather_full(const Param& p, const Tensor& local, float* full) const {
  models::gather_full(p, local, full, shard_comm(p.shard.group));
}

void Transformer::scatter_full(const Param& p, const float* full, const Tensor& local) const {
  models::scatter_full(p, full, local);
}

void Transformer::zero_grads() {
  k::zero(flat_grads());
}

void Transformer::set_batch(const int32_t* tokens, const int32_t* targets) {
  // Context parallel: this rank's T tokens of each sequence (Dims::token_position).
  const int64_t T = d_.T;
  for (int64_t b = 0; b < d_.B; ++b)
    for (int64_t i = 0; i < T; ++i) {
      const int64_t at = d_.token_position(i);
      host_tokens_[static_cast<size_t>(b * T + i)] = tokens[b * d_.Tf + at];
      host_targets_[static_cast<size_t>(b * T + i)] = targets[b * d_.Tf + at];
    }
  valid_targets_ = 0;
  for (int64_t i = 0; i < d_.N; ++i) {
    const int32_t tok = host_tokens_[static_cast<size_t>(i)];
    const int32_t tgt = host_targets_[static_cast<size_t>(i)];
    SPARTA_CHECK(tok >= 0 && tok < cfg_.vocab_size, "token {} at position {} outside [0,{})", tok,
                 i, cfg_.vocab_size);
    SPARTA_CHECK(tgt < cfg_.vocab_size, "target {} at position {} >= vocab {}", tgt, i,
                 cfg_.vocab_size);
    valid_targets_ += tgt >= 0;
  }
  k::copy(tokens_, Tensor(host_tokens_.data(), DType::i32, k::Device::cpu(), {d_.B, T}));
  k::copy(targets_, Tensor(host_targets_.data(), DType::i32, k::Device::cpu(), {d_.B, T}));
}

Tensor Transformer::forward_hidden(const Pass& pass) {
  SPARTA_CHECK(valid_targets_ >= 0, "forward before set_batch()");
  RouterState state = gru_ ? gru_->initial_state() : RouterState{};
  Tensor x = emb_->forward(tokens_);
  for (size_t l = 0; l < blocks_.size(); ++l) {
    if (!state_in_.empty()) {  // the state is the last router's output, in an overlay
      k::copy(state_in_[l], state.h);
      state.h = state_in_[l];
    }
    x = blocks_[l]->forward(pass, x, state);
  }
  final_norm_->forward(hidden_, x);
  return hidden_;
}

float Transformer::forward(const Pass& pass, bool with_backward) {
  forward_hidden(pass);
  const float denom = static_cast<float>(valid_targets_ > 0 ? valid_targets_ : 1);
  return head_->loss(hidden_, targets_, host_targets_.data(), valid_targets_,
                     with_backward ? g_hidden_ : Tensor(), pass.grad_scale / denom);
}

void Transformer::run_backward(const Pass& pass, const BlockGradsReady* ready) {
  // g_resid_ carries d(block output) downwards and is updated in place into d(block input).
  k::zero(g_resid_);
  RouterStateGrad state = gru_ ? gru_->initial_grad() : RouterStateGrad{};
  const Tensor x_last = blocks_.empty() ? emb_->output() : blocks_.back()->output();
  final_norm_->backward(g_resid_, g_hidden_, x_last);
  for (int l = cfg_.n_layers - 1; l >= 0; --l) {
    const Tensor x = l == 0 ? emb_->output() : blocks_[static_cast<size_t>(l - 1)]->output();
    Block& b = *blocks_[static_cast<size_t>(l)];
    if (recompute_ == Recompute::block) {  // the overlay holds another block's activations
      RouterState in =
          state_in_.empty() ? RouterState{} : RouterState{state_in_[static_cast<size_t>(l)]};
      b.forward(pass, x, in);
    }
    b.backward(pass, x, g_resid_, state);
    if (ready) (*ready)(l);
  }
  emb_->backward(g_resid_, tokens_);
}

float Transformer::forward_backward(float grad_scale, const BlockGradsReady* ready) {
  const float loss = forward_train(grad_scale);
  backward(grad_scale, ready);
  return loss;
}

float Transformer::forward_train(float grad_scale) {
  return forward(Pass{true, grad_scale}, true);
}

void Transformer::backward(float grad_scale, const BlockGradsReady* ready) {
  run_backward(Pass{true, grad_scale}, ready);
}

float Transformer::forward_loss() {
  return forward(Pass{false, 0.0f}, false);
}

void Transformer::next_token_logits(int64_t row, float* host_logits) {
  SPARTA_CHECK(row >= 0 && row < d_.N, "row {} outside [0, {})", row, d_.N);
  forward_hidden(Pass{false, 0.0f});
  head_->logits(hidden_, row, host_logits);
}

Tensor Transformer::token_losses() const {
  return head_->token_losses();
}

double angular_distance(const float* a, const float* b, int64_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < n; ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  const double cos = ab / std::sqrt(aa * bb);
  if (std::isnan(cos)) return 0.5;
  return std::acos(std::clamp(cos, -1.0, 1.0)) / M_PI;
}

std::vector<double> Transformer::angular_distances() const {
  const int64_t C = d_.C, T = d_.T;
  std::vector<float> a(static_cast<size_t>(C)), b(static_cast<size_t>(C));
  auto last_token = [&](const Tensor& t, int64_t seq, std::vector<float>& out) {
    Tensor h(out.data(), DType::f32, k::Device::cpu(), {1, C});
    k::copy(h, t.rows(seq * T + T - 1, seq * T + T));
  };
  std::vector<double> dist(static_cast<size_t>(d_.L), 0.0);
  for (int l = 0; l < cfg_.n_layers; ++l) {
    const Tensor in = l == 0 ? emb_->output() : layer_output(l - 1);
    const Tensor out = layer_output(l);
    for (int64_t s = 0; s < d_.B; ++s) {
      last_token(in, s, a);
      last_token(out, s, b);
      dist[static_cast<size_t>(l)] +=
          angular_distance(a.data(), b.data(), C) / static_cast<double>(d_.B);
    }
  }
  return dist;
}

std::vector<MoeLayerStats> Transformer::moe_stats() const {
  std::vector<MoeLayerStats> out;
  for (const auto& b : blocks_)
    for (const MoeLayerStats* st : {b->mixer().stats(), b->ffn().stats()})
      if (st) out.push_back(*st);
  return out;
}

double Transformer::aux_loss() const {
  double s = 0;
  for (const auto& b : blocks_) s += b->ffn().aux_loss();
  return s;
}

std::vector<double> Transformer::layer_grad_norms() const {
  const auto L = static_cast<size_t>(d_.L);
  std::vector<double> ss(L, 0.0);
  // Split parameters: each rank's part, summed over the part's group (collective then).
  std::array<std::vector<float>, kShardGroups> split;
  for (auto& s : split) s.assign(L, 0.0f);
  for (const Param& p : params()) {
    if (p.layer < 0) continue;
    const double v = k::sum_squares(p.g);
    if (p.shard.parts == 1)
      ss[static_cast<size_t>(p.layer)] += v;
    else
      split[static_cast<size_t>(p.shard.group)][static_cast<size_t>(p.layer)] +=
          static_cast<float>(v);
  }
  for (const ShardGroup grp : {ShardGroup::tp, ShardGroup::ep}) {
    parallel::Comm* c = shard_comm(grp);
    std::vector<float>& s = split[static_cast<size_t>(grp)];
    if (c && c->size() > 1 && L > 0)
      c->all_reduce(Tensor(s.data(), DType::f32, k::Device::cpu(), {static_cast<int64_t>(L)}),
                    parallel::ReduceOp::sum);
    for (size_t l = 0; l < L; ++l) ss[l] += s[l];
  }
  for (double& v : ss) v = std::sqrt(v);
  return ss;
}

}  // namespace sparta::models
