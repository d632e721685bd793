#include "trainer/grad_sync.h"

#include <algorithm>
#include <cmath>

#include "kernels/ops.h"

namespace sparta::trainer {

namespace k = sparta::kernels;

GradSync::GradSync(models::Transformer& model, const parallel::ProcessGroups& g,
                   const GradSyncConfig& cfg)
    : model_(model), g_(g), cfg_(cfg), scalar_(1, 0.0f) {
  const int64_t n = model_.flat_params().numel();
  s1_ = n;
  if (cfg_.zero) {
    std::tie(s0_, s1_) = parallel::Comm::block_range(n, g_.dp.size(), g_.dp.rank());
    const int64_t len = std::max<int64_t>(1, s1_ - s0_);
    grad_shard_ = k::Arena(model_.flat_params().device, static_cast<size_t>(len) * 4, "grad_shard");
    grad_shard_.alloc(k::DType::f32, {len});
  }
  build_buckets();
  start_block_ = [this](int layer) { start_bucket(static_cast<size_t>(layer)); };
}

GradSync::~GradSync() {
  try {
    g_.dp.dev->wait_all();
    g_.edp.dev->wait_all();
  } catch (...) {  // already failing: the job ends through the failure protocol
  }
}

const models::BlockGradsReady* GradSync::backward_hook(bool last_micro_batch) const {
  const bool overlap = cfg_.overlap && !cfg_.zero && g_.world.size() > 1 && last_micro_batch;
  return overlap ? &start_block_ : nullptr;
}

GradSync::Reduced GradSync::reduce(int64_t step) {
  const std::vector<models::Param>& params = model_.params();
  if (!cfg_.zero) {
    for (size_t i = 0; i < buckets_.size(); ++i)
      if (!started_[i]) start_bucket(i);
    g_.dp.dev->wait_all();
    g_.edp.dev->wait_all();
    std::fill(started_.begin(), started_.end(), 0);
    const auto [eb, ee] = model_.group_range(models::ShardGroup::ep);
    if (ee > eb)
      k::scale(model_.flat_grads().rows(eb, ee), 1.0f / static_cast<float>(g_.dp.size()));
    const k::Tensor grads = model_.flat_grads();
    return {k::Tensor(), clip_and_noise_range(params, model_.flat_params(), grads, 0, grads.numel(),
                                              replicated_norm(), cfg_.clip, cfg_.noise, step)};
  }
  const k::Tensor gs = grad_shard_.flat_f32().rows(0, s1_ - s0_);
  g_.dp.dev->reduce_scatter(gs, model_.flat_grads(), parallel::ReduceOp::avg);
  return {gs, clip_and_noise_range(params, model_.flat_params(), gs, s0_, s1_, sharded_norm(gs),
                                   cfg_.clip, cfg_.noise, step)};
}

void GradSync::gather_params() {
  if (!cfg_.zero) return;
  const k::Tensor fp = model_.flat_params();
  g_.dp.dev->all_gather(fp, fp.rows(s0_, s1_));
}

// Replicated parameters once, sharded ones summed over their shard group (after the reduction
// every replica holds the same values).
double GradSync::replicated_norm() {
  const k::Tensor flat = model_.flat_grads();
  double ss = 0;
  for (int grp = 0; grp < models::kShardGroups; ++grp) {
    const auto group = static_cast<models::ShardGroup>(grp);
    const auto [b, e] = model_.group_range(group);
    double part = e > b ? k::sum_squares(flat.rows(b, e)) : 0.0;
    parallel::Comm* c = model_.shard_comm(group);
    if (c && c->size() > 1) {
      scalar_[0] = static_cast<float>(part);
      c->all_reduce(host_scalar(), parallel::ReduceOp::sum);
      part = scalar_[0];
    }
    ss += part;
  }
  return std::sqrt(ss);
}

// ZeRO-1: the all-reduced sum of the blocks' squares.
double GradSync::sharded_norm(const k::Tensor& shard) {
  scalar_[0] = shard.numel() > 0 ? static_cast<float>(k::sum_squares(shard)) : 0.0f;
  g_.dp.host->all_reduce(host_scalar(), parallel::ReduceOp::sum);
  return std::sqrt(static_cast<double>(scalar_[0]));
}

k::Tensor GradSync::host_scalar() {
  return k::Tensor(scalar_.data(), k::DType::f32, k::Device::cpu(), {1});
}

void GradSync::start_bucket(size_t i) {
  for (const Bucket& b : buckets_[i])
    if (b.comm)
      b.comm->start_all_reduce(b.t, b.expert ? parallel::ReduceOp::sum : parallel::ReduceOp::avg);
  started_[i] = 1;
  g_.dp.dev->progress();  // advance the blocks above while this one's reduction starts
  g_.edp.dev->progress();
}

// Bucket l: block l's gradients; bucket L: the rest. Ranges of the flat gradient block, one per
// (bucket, dense or expert) run; neighbours merge across the (zero) padding.
void GradSync::build_buckets() {
  const int64_t L = model_.config().n_layers;
  buckets_.assign(static_cast<size_t>(L + 1), {});
  started_.assign(static_cast<size_t>(L + 1), 0);
  const k::Tensor flat = model_.flat_grads();
  const auto [eb, ee] = model_.group_range(models::ShardGroup::ep);
  struct Range {
    int64_t b, e;
    size_t key;
    bool expert;
  };
  std::vector<Range> rs;
  for (const auto& p : model_.params()) {
    const int64_t b = models::offset_in(flat, p.g);
    rs.push_back(
        {b, b + p.g.numel(), static_cast<size_t>(p.layer < 0 ? L : p.layer), b >= eb && b < ee});
  }
  std::sort(rs.begin(), rs.end(), [](const Range& x, const Range& y) { return x.b < y.b; });
  std::vector<Range> merged;
  for (const Range& r : rs) {
    if (!merged.empty() && merged.back().key == r.key && merged.back().expert == r.expert)
      merged.back().e = r.e;
    else
      merged.push_back(r);
  }
  for (const Range& r : merged) {
    parallel::Comm* c = r.expert ? g_.edp.dev : g_.dp.dev;
    buckets_[r.key].push_back({c->size() > 1 ? c : nullptr, flat.rows(r.b, r.e), r.expert});
  }
}

}  // namespace sparta::trainer
