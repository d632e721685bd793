// The V-cycle's unit maps (../shared/specs/vcycle.md sections 2-4): a pairing groups the units of
// a large dimension under the units of a small one; Avg (small x large, 1/|S_i| on S_i) and Copy
// (large x small, 1 on S_i) act on one axis of a tensor. Applied to an axis:
//   average (Avg·x), sum (Copyᵀ·x): coalescing, the output side and the input side;
//   copy (Copy·x), split (Avgᵀ·x: each copy divided by |S_i|): de-coalescing, the same sides.
// With pairs the divisions are by 2, exact in floating point, so sum∘split and average∘copy are
// the identity bit for bit (the spec's T2).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sparta::trainer::multilevel {

// Group i of the small dimension: the large units it merges (disjoint, covering 0..large-1).
struct Groups {
  std::vector<std::vector<int64_t>> of;
  int64_t small() const { return static_cast<int64_t>(of.size()); }
  int64_t large() const;
  std::vector<int64_t> owner() const;  // large unit -> its small unit
};

// "halves": unit i pairs with i + n/2 (the authors' configs); "adjacent": 2i with 2i + 1 (their
// default depth pairing). n must be even.
enum class Pairing { halves, adjacent };
Groups pair_units(int64_t n, Pairing p);
Pairing parse_pairing(const std::string& name);  // a usage error names the allowed values

// Unit groups -> element groups, each unit `chunk` consecutive elements (a head: head_dim).
Groups expand(const Groups& units, int64_t chunk);
// `blocks` independent copies side by side (experts, the q/k/v thirds): block b's units are
// offset by b * g.large() in the large and by b * g.small() in the small dimension.
Groups repeat(const Groups& g, int64_t blocks);

// Dense matrices, row-major (tests and documentation).
std::vector<float> avg_matrix(const Groups& g);   // small x large
std::vector<float> copy_matrix(const Groups& g);  // large x small

struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<float> v;
  int64_t numel() const;
};

enum class AxisOp { average, sum, copy, split };

// Maps axis `axis` of t through g: average / sum shrink it from g.large() to g.small(); copy /
// split grow it from g.small() to g.large().
HostTensor map_axis(const HostTensor& t, int axis, const Groups& g, AxisOp op);

}  // namespace sparta::trainer::multilevel
