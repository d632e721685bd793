// Parameters: what a module registers, where each one sits in the full tensor when the model is
// split across ranks, and the set that lays them out, initialises them and hands out the flat
// blocks the optimizer, the gradient reduction and the checkpoints work on.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kernels/arena.h"
#include "parallel/comm.h"

namespace sparta::models {

using kernels::Tensor;

// Which group of ranks splits a parameter between them (every other rank of the group holds a
// different part; ranks outside it hold copies). none: the whole tensor on every rank.
enum class ShardGroup { none = 0, tp = 1, ep = 2 };
constexpr int kShardGroups = 3;

// A parameter's place in its full tensor: the full tensor viewed as [outer, mid, inner]; this
// rank holds mid rows [index * mid / parts, (index + 1) * mid / parts) of every outer block, i.e.
// a local tensor [outer, mid / parts, inner]. Examples: column-parallel QKV [3C, C] is
// [3, C, C] split on C (heads of each of q, k, v); row-parallel [C, F] is [C, F, 1]; experts
// [E, ...] are [1, E, ...]. Initial values and gradient noise are keyed by the full tensor's
// element index, so every layout draws the same numbers as one process.
struct Shard {
  ShardGroup group = ShardGroup::none;
  int64_t outer = 1, mid = 1, inner = 1;
  int parts = 1, index = 0;
  int64_t local_mid() const { return mid / parts; }
  // Contiguous runs of the local tensor: run o starts at local element o * run_length() and at
  // full element run_global(o).
  int64_t runs() const { return outer; }
  int64_t run_length() const { return local_mid() * inner; }
  int64_t run_global(int64_t o) const { return (o * mid + index * local_mid()) * inner; }
  int64_t global_index(int64_t local) const {
    return parts == 1 ? local : run_global(local / run_length()) + local % run_length();
  }
};

// A module's view of one of its parameters: this rank's part of the weight and its gradient.
struct Weight {
  Tensor w, g;
};

struct Param {
  std::string name;
  int layer = -1;     // -1: not inside a block (embeddings, final norm, head, shared router)
  bool decay = true;  // AdamW weight decay applies (matrices and embeddings, not norms)
  Tensor w, g;        // this rank's part of the weight and its gradient, same shape
  Shard shard;        // where w sits in the full tensor (group none: w is the full tensor)
  std::vector<int64_t> full_shape;
};

// Initial values: a positive std (normal draws), or one of these.
constexpr float kInitOnes = -1.0f;
constexpr float kInitZeros = 0.0f;

// The model's parameters (and buffers) in their canonical order: the order of registration,
// which fixes checkpoint names, the Philox init stream of each tensor (its index) and the noise
// keys. Memory is carved once everything is registered: parameters grouped by shard group
// (none, tp, ep), so each group's gradients are one contiguous range of the flat block.
class ParamSet {
 public:
  // `full`: the full tensor's shape; `shard`: this rank's part (parts 1: the whole tensor),
  // dividing dimension `split_dim` of `full`. `dst` receives w and g at carve().
  void add(Weight* dst, const std::string& name, int layer, std::vector<int64_t> full, float init,
           bool decay, Shard shard = {}, int split_dim = 0);
  // Model state that is not trained (UoE's frozen routers): initialised from the seed and
  // checkpointed with the parameters, but outside the flat blocks (no gradient, no optimizer
  // state, no clipping or noise).
  void add_buffer(Tensor* dst, const std::string& name, int layer, std::vector<int64_t> shape,
                  float init);
  // Allocates parameters, gradients and buffers on `device` and fills every destination.
  void carve(kernels::Device device);
  // Initial values from `seed` (device- and layout-independent, see Shard).
  void init(uint64_t seed);

  std::vector<Param>& params() { return params_; }
  const std::vector<Param>& params() const { return params_; }
  const std::vector<Param>& buffers() const { return buffers_; }
  Tensor flat_params() const { return param_arena_.flat_f32(); }
  Tensor flat_grads() const { return grad_arena_.flat_f32(); }
  std::pair<int64_t, int64_t> group_range(ShardGroup g) const {
    return group_range_[static_cast<size_t>(g)];
  }
  int64_t num_params() const;  // elements of the full tensors
  size_t param_bytes() const { return param_arena_.used(); }

 private:
  std::vector<Param> params_, buffers_;
  std::vector<Weight*> dst_;
  std::vector<Tensor*> buffer_dst_;
  std::vector<std::vector<int64_t>> local_shape_;
  std::vector<float> init_, buffer_init_;
  std::array<std::pair<int64_t, int64_t>, kShardGroups> group_range_{};
  kernels::Arena param_arena_, grad_arena_, buffer_arena_;
};

// Element offset of parameter (or gradient) tensor `t` within its flat block `flat`.
inline int64_t offset_in(const Tensor& flat, const Tensor& t) {
  return (static_cast<char*>(t.data) - static_cast<char*>(flat.data)) /
         static_cast<int64_t>(sizeof(float));
}

// For each parameter intersecting elements [b, e) of the flat parameter block `flat`:
// f(param index, first element of the intersection within the parameter, its length, its first
// element within the flat block). Parameter order; the ZeRO-1 shards' walk.
template <class F>
void for_each_in_range(const std::vector<Param>& params, const Tensor& flat, int64_t b, int64_t e,
                       F f) {
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t o = offset_in(flat, params[i].w), n = params[i].w.numel();
    const int64_t lo = std::max(o, b), hi = std::min(o + n, e);
    if (lo < hi) f(i, lo - o, hi - lo, lo);
  }
}

// The full tensor of a (possibly sharded) parameter or optimizer moment `local` (laid out as
// p.w) into host memory full[numel(full_shape)]. Collective over `group`, the communicator of
// p's shard group (null for unsharded parameters): every rank of it calls this for the same p
// in the same order.
void gather_full(const Param& p, const Tensor& local, float* full, parallel::Comm* group);
// The inverse: this rank's part of a full host tensor into `local` (no communication).
void scatter_full(const Param& p, const float* full, const Tensor& local);

}  // namespace sparta::models
