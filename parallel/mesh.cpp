#include "parallel/mesh.h"

#include <algorithm>
#include <sstream>

#include <fmt/format.h>

#include "kernels/check.h"

namespace sparta::parallel {

const char* to_string(Dim d) {
  static const char* const names[] = {"tp", "cp", "ep", "dp"};
  return names[static_cast<size_t>(d)];
}

const char* to_string(CpAlgo a) {
  return a == CpAlgo::ring ? "ring" : a == CpAlgo::hybrid ? "hybrid" : "ulysses";
}

ProcessMesh::ProcessMesh(const MeshLayout& l, int world, const MeshModelLimits& m)
    : world_(world), cp_algo_(l.cp_algo), ulysses_degree_(l.ulysses_degree()) {
  for (const auto& [name, v] :
       {std::pair{"tp", l.tp}, std::pair{"cp", l.cp}, std::pair{"ep", l.ep}})
    if (v < 1) SPARTA_USAGE_ERROR("parallel.{} = {} must be >= 1", name, v);
  if (l.dp < 0) SPARTA_USAGE_ERROR("parallel.dp = {} must be >= 0 (0: inferred)", l.dp);
  const int inner = l.tp * l.cp * l.ep;
  int dp = l.dp;
  if (dp == 0) {
    if (world % inner != 0)
      SPARTA_USAGE_ERROR(
          "tp x cp x ep = {} x {} x {} = {} does not divide the world size {}: launch a multiple "
          "of {} ranks or change parallel.tp/cp/ep",
          l.tp, l.cp, l.ep, inner, world, inner);
    dp = world / inner;
  }
  if (inner * dp != world)
    SPARTA_USAGE_ERROR(
        "tp x cp x ep x dp = {} x {} x {} x {} = {}, but the job has {} ranks: set parallel.dp = "
        "{} (or 0 to infer it), or launch {} ranks",
        l.tp, l.cp, l.ep, dp, inner * dp, world, world % inner == 0 ? world / inner : 0,
        inner * dp);
  sizes_ = {l.tp, l.cp, l.ep, dp};

  // The order string names each dimension once, innermost first.
  std::array<bool, 4> seen{};
  std::stringstream ss(l.order);
  std::string item;
  size_t n = 0;
  while (std::getline(ss, item, '-')) {
    int d = -1;
    for (int i = 0; i < 4; ++i)
      if (item == to_string(static_cast<Dim>(i))) d = i;
    if (d < 0 || seen[static_cast<size_t>(d)] || n >= 4)
      SPARTA_USAGE_ERROR(
          "parallel.order = \"{}\" must name tp, cp, ep and dp once each, joined "
          "by '-', innermost first (e.g. \"tp-cp-ep-dp\")",
          l.order);
    seen[static_cast<size_t>(d)] = true;
    order_[n++] = static_cast<Dim>(d);
  }
  if (n != 4)
    SPARTA_USAGE_ERROR(
        "parallel.order = \"{}\" must name tp, cp, ep and dp once each, joined by "
        "'-', innermost first (e.g. \"tp-cp-ep-dp\")",
        l.order);
  order_str_ = l.order;

  validate_model_layout(l, m);
}

void validate_model_layout(const MeshLayout& l, const MeshModelLimits& m) {
  if (m.n_heads % l.tp != 0)
    SPARTA_USAGE_ERROR(
        "parallel.tp = {} must divide model.n_heads = {} (each rank owns whole "
        "heads)",
        l.tp, m.n_heads);
  if (m.d_ff % l.tp != 0)
    SPARTA_USAGE_ERROR("parallel.tp = {} must divide model.d_ff = {} (FFN columns per rank)", l.tp,
                       m.d_ff);
  if (m.vocab_size % l.tp != 0)
    SPARTA_USAGE_ERROR(
        "parallel.tp = {} must divide model.vocab_size = {} (vocab-parallel "
        "embedding and cross-entropy): set model.vocab_size to a multiple of {} (rows beyond the "
        "tokenizer's vocabulary are never used)",
        l.tp, m.vocab_size, l.tp);
  if (l.cp_algo == CpAlgo::hybrid) {
    const int u = l.cp_ulysses;
    if (u < 1 || l.cp % u != 0)
      SPARTA_USAGE_ERROR(
          "parallel.cp_algo = \"hybrid\": parallel.cp_ulysses = {} must be >= 1 and divide "
          "parallel.cp = {} (the ring degree is cp / cp_ulysses)",
          u, l.cp);
    if ((m.n_heads / l.tp) % u != 0)
      SPARTA_USAGE_ERROR(
          "parallel.cp_algo = \"hybrid\": parallel.cp_ulysses = {} must divide the heads per "
          "tensor-parallel rank, model.n_heads / tp = {} / {}",
          u, m.n_heads, l.tp);
  }
  if (l.cp_algo != CpAlgo::ulysses) {
    if (m.seq_len % (2 * l.cp) != 0)
      SPARTA_USAGE_ERROR(
          "parallel.cp_algo = \"{}\" with parallel.cp = {}: 2 x cp = {} must divide "
          "model.seq_len = {} (zigzag sharding: each rank holds 2 of 2 x cp equal chunks)",
          to_string(l.cp_algo), l.cp, 2 * l.cp, m.seq_len);
  } else if (m.seq_len % l.cp != 0) {
    SPARTA_USAGE_ERROR("parallel.cp = {} must divide model.seq_len = {}", l.cp, m.seq_len);
  } else if (m.n_heads % (l.tp * l.cp) != 0)
    SPARTA_USAGE_ERROR(
        "parallel.tp x cp = {} x {} must divide model.n_heads = {} (Ulysses context "
        "parallelism attends with whole heads over whole sequences: n_heads / tp / cp heads per "
        "rank; parallel.cp_algo = \"ring\" splits the sequence instead)",
        l.tp, l.cp, m.n_heads);
  if (l.ep > 1 && m.moe_experts == 0)
    SPARTA_USAGE_ERROR("parallel.ep = {} needs an MoE model (moe.experts > 0)", l.ep);
  if (m.moe_experts > 0 && m.moe_experts % l.ep != 0)
    SPARTA_USAGE_ERROR("parallel.ep = {} must divide moe.experts = {}", l.ep, m.moe_experts);
  if (m.uoe_attn_experts > 0 && m.uoe_attn_experts % l.tp != 0)
    SPARTA_USAGE_ERROR(
        "parallel.tp = {} must divide uoe.attn_experts = {} (UoE experts map onto "
        "tensor-parallel ranks)",
        l.tp, m.uoe_attn_experts);
  if (m.uoe_mlp_experts > 0 && m.uoe_mlp_experts % l.tp != 0)
    SPARTA_USAGE_ERROR(
        "parallel.tp = {} must divide uoe.mlp_experts = {} (UoE experts map onto "
        "tensor-parallel ranks)",
        l.tp, m.uoe_mlp_experts);
}

void validate_model_support(const MeshLayout& l, const MeshModelLimits& m) {
  validate_model_layout(l, m);
  if (l.cp > 1 && m.uoe)
    SPARTA_USAGE_ERROR(
        "parallel.cp = {} with uoe.enabled: UoE assigns slots over whole sequences, which context "
        "parallelism splits; use cp = 1 (tp splits UoE's experts)",
        l.cp);
  if (l.cp > 1 && l.cp_algo != CpAlgo::ulysses && m.learned_pos)
    SPARTA_USAGE_ERROR(
        "parallel.cp_algo = \"{}\" with model.pos = \"learned\": ring attention's zigzag "
        "chunks are not contiguous in the position table; use model.pos = \"rope\" or "
        "parallel.cp_algo = \"ulysses\"",
        to_string(l.cp_algo));
  if (l.tp > 1 && m.moe_experts > 0)
    SPARTA_USAGE_ERROR(
        "parallel.tp = {} with moe.experts = {}: MoE layers are split by expert parallelism; use "
        "parallel.ep (and tp = 1) for MoE and RMoE models",
        l.tp, m.moe_experts);
  if (l.zero == 1 && (l.tp > 1 || l.ep > 1))
    SPARTA_USAGE_ERROR(
        "parallel.zero = 1 with tp = {} and ep = {}: ZeRO-1 shards the optimizer over data "
        "parallelism only (set parallel.zero = 0, or tp = ep = 1)",
        l.tp, l.ep);
}

int ProcessMesh::coord(int rank, Dim d) const {
  int stride = 1;
  for (Dim o : order_) {
    if (o == d) return (rank / stride) % size(d);
    stride *= size(o);
  }
  return 0;
}

int ProcessMesh::group_color(int rank, const std::vector<Dim>& dims) const {
  // The rank with the group's coordinates zeroed identifies the group.
  int color = 0, stride = 1;
  for (Dim o : order_) {
    if (std::find(dims.begin(), dims.end(), o) == dims.end()) color += coord(rank, o) * stride;
    stride *= size(o);
  }
  return color;
}

std::vector<int> ProcessMesh::group_ranks(int rank, const std::vector<Dim>& dims) const {
  std::vector<int> out;
  const int c = group_color(rank, dims);
  for (int r = 0; r < world_; ++r)
    if (group_color(r, dims) == c) out.push_back(r);
  return out;
}

std::string ProcessMesh::table() const {
  std::string s =
      fmt::format("layout: world {} = tp {} x cp {} x ep {} x dp {} (order {})\n", world_,
                  size(Dim::tp), size(Dim::cp), size(Dim::ep), size(Dim::dp), order_str_);
  for (int r = 0; r < world_; ++r)
    s += fmt::format("  rank {:>3}: tp {} cp {} ep {} dp {}\n", r, coord(r, Dim::tp),
                     coord(r, Dim::cp), coord(r, Dim::ep), coord(r, Dim::dp));
  return s;
}

}  // namespace sparta::parallel
