#include "trainer/models/param.h"

#include <algorithm>

#include "kernels/ops.h"
#include "kernels/rng.h"

namespace sparta::models {

namespace k = sparta::kernels;
using k::DType;

void ParamSet::add(Weight* dst, const std::string& name, int layer, std::vector<int64_t> full,
                   float init, bool decay, Shard sh, int split_dim) {
  std::vector<int64_t> local = full;
  const auto d = static_cast<size_t>(split_dim);
  SPARTA_CHECK(d < local.size() && local[d] % sh.parts == 0 && sh.mid % sh.parts == 0,
               "internal: {} cannot be split {} ways", name, sh.parts);
  local[d] /= sh.parts;
  if (sh.parts == 1) sh = Shard{};  // one part: a whole tensor, laid out with the others
  params_.push_back({name, layer, decay, Tensor(), Tensor(), sh, std::move(full)});
  dst_.push_back(dst);
  local_shape_.push_back(std::move(local));
  init_.push_back(init);
}

void ParamSet::add_buffer(Tensor* dst, const std::string& name, int layer,
                          std::vector<int64_t> shape, float init) {
  buffers_.push_back({name, layer, false, Tensor(), Tensor(), Shard{}, std::move(shape)});
  buffer_dst_.push_back(dst);
  buffer_init_.push_back(init);
}

void ParamSet::carve(k::Device device) {
  // The same allocations run against measuring arenas first (sizes), then the real ones.
  auto lay_out = [&](k::Arena& pa, k::Arena& ga, k::Arena& ba) {
    for (int grp = 0; grp < kShardGroups; ++grp) {
      const auto begin = static_cast<int64_t>(pa.used() / sizeof(float));
      for (size_t i = 0; i < params_.size(); ++i) {
        if (static_cast<int>(params_[i].shard.group) != grp) continue;
        params_[i].w = pa.alloc(DType::f32, local_shape_[i]);
        params_[i].g = ga.alloc(DType::f32, local_shape_[i]);
      }
      group_range_[static_cast<size_t>(grp)] = {begin,
                                                static_cast<int64_t>(pa.used() / sizeof(float))};
    }
    for (Param& b : buffers_) b.w = ba.alloc(DType::f32, b.full_shape);
  };
  auto mp = k::Arena::measuring(device), mg = k::Arena::measuring(device),
       mb = k::Arena::measuring(device);
  lay_out(mp, mg, mb);
  param_arena_ = k::Arena(device, mp.used(), "parameters");
  grad_arena_ = k::Arena(device, mg.used(), "gradients");
  buffer_arena_ = k::Arena(device, mb.used(), "buffers");
  lay_out(param_arena_, grad_arena_, buffer_arena_);
  for (size_t i = 0; i < params_.size(); ++i) *dst_[i] = {params_[i].w, params_[i].g};
  for (size_t i = 0; i < buffers_.size(); ++i) *buffer_dst_[i] = buffers_[i].w;
}

void ParamSet::init(uint64_t seed) {
  std::vector<float> host;
  // Buffers draw from streams above every parameter's, so adding them changes no parameter.
  constexpr uint64_t kBufferStreams = uint64_t{1} << 32;
  const size_t n_params = params_.size();
  for (size_t i = 0; i < n_params + buffers_.size(); ++i) {
    const bool buf = i >= n_params;
    const Tensor& w = buf ? buffers_[i - n_params].w : params_[i].w;
    host.assign(static_cast<size_t>(w.numel()), 0.0f);
    const float sc = buf ? buffer_init_[i - n_params] : init_[i];
    const uint64_t stream =
        k::rng_stream(k::RngPurpose::init, buf ? kBufferStreams + (i - n_params) : i);
    const Shard sh = buf ? Shard{} : params_[i].shard;  // values keyed by the full tensor's index
    for (size_t j = 0; j < host.size(); ++j)
      host[j] = sc == kInitOnes ? 1.0f
                : sc == kInitZeros
                    ? 0.0f
                    : sc * static_cast<float>(k::normal(
                               seed, stream,
                               static_cast<uint64_t>(sh.global_index(static_cast<int64_t>(j)))));
    Tensor h = w;
    h.device = k::Device::cpu();
    h.data = host.data();
    k::copy(w, h);
  }
}

int64_t ParamSet::num_params() const {
  int64_t n = 0;
  for (const Param& p : params_) {
    int64_t f = 1;
    for (int64_t d : p.full_shape) f *= d;
    n += f;
  }
  return n;
}

void gather_full(const Param& p, const Tensor& local, float* full, parallel::Comm* c) {
  const Shard& sh = p.shard;
  const int64_t n = local.numel();
  if (sh.parts == 1) {
    k::copy(Tensor(full, DType::f32, k::Device::cpu(), {n}), local.view({n}));
    return;
  }
  SPARTA_CHECK(c && c->size() == sh.parts, "gather of {}: no communicator for its {} parts", p.name,
               sh.parts);
  std::vector<float> all(static_cast<size_t>(n * sh.parts));
  const Tensor mine(all.data() + n * sh.index, DType::f32, k::Device::cpu(), {n});
  k::copy(mine, local.view({n}));
  c->all_gather(Tensor(all.data(), DType::f32, k::Device::cpu(), {n * sh.parts}), mine);
  Shard s = sh;
  for (s.index = 0; s.index < sh.parts; ++s.index)
    for (int64_t o = 0; o < s.runs(); ++o)
      std::copy_n(all.data() + s.index * n + o * s.run_length(), s.run_length(),
                  full + s.run_global(o));
}

void scatter_full(const Param& p, const float* full, const Tensor& local) {
  const Shard& sh = p.shard;
  if (sh.parts == 1) {
    k::copy(local.view({local.numel()}),
            Tensor(const_cast<float*>(full), DType::f32, k::Device::cpu(), {local.numel()}));
    return;
  }
  std::vector<float> mine(static_cast<size_t>(local.numel()));
  for (int64_t o = 0; o < sh.runs(); ++o)
    std::copy_n(full + sh.run_global(o), sh.run_length(), mine.data() + o * sh.run_length());
  k::copy(local.view({local.numel()}),
          Tensor(mine.data(), DType::f32, k::Device::cpu(), {local.numel()}));
}

}  // namespace sparta::models
