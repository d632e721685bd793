// The process mesh: world = tp x cp x ep x dp ranks, placed by an order string, and the groups
// every layer needs, all derived from one layout (DESIGN.md section 5).
//
// Dimensions (innermost, i.e. fastest-varying rank, first in `order`; default "tp-cp-ep-dp", so
// tensor-parallel peers are neighbouring ranks, as Megatron places them):
//   tp  tensor parallel: heads, FFN columns, vocabulary and UoE experts split across ranks
//   cp  context parallel: the sequence split across ranks
//   ep  expert parallel: MoE experts split across ranks
//   dp  data parallel: replicas on different data
// The expert grid: ep is carved out of the data-parallel ranks, so the dense (non-expert)
// parameters are replicated over ep x dp ranks and averaged over that group ("dense DP"), while
// each expert lives on one rank of each ep group and is averaged over dp only ("expert DP"),
// EP thereby spanning DP x CP-style replicas as in Megatron-Core's expert grid.
#pragma once

#include <array>
#include <string>
#include <vector>

namespace sparta::parallel {

enum class Dim { tp = 0, cp = 1, ep = 2, dp = 3 };
const char* to_string(Dim d);

// How attention is split over cp (docs/parallel.md): ulysses swaps tokens for heads with
// all-to-alls (cp divides the heads per tp rank); ring keeps the tokens in zigzag chunks and
// passes K/V blocks round the cp ring (any head count; 2 * cp divides the sequence); hybrid
// (USP) runs Ulysses inside groups of cp_ulysses neighbouring cp ranks and the ring across them.
enum class CpAlgo { ulysses, ring, hybrid };
const char* to_string(CpAlgo a);

struct MeshLayout {
  int tp = 1, cp = 1, ep = 1, dp = 0;  // dp 0: inferred as world / (tp * cp * ep)
  std::string order = "tp-cp-ep-dp";
  int zero = 0;  // 1: ZeRO-1 (optimizer state sharded over the data-parallel ranks)
  CpAlgo cp_algo = CpAlgo::ulysses;
  int cp_ulysses = 0;  // hybrid: the Ulysses degree (divides cp); the ring degree is cp / it
  // The Ulysses degree this layout uses: cp (ulysses), 1 (ring) or cp_ulysses (hybrid).
  int ulysses_degree() const {
    return cp_algo == CpAlgo::ulysses ? cp : cp_algo == CpAlgo::ring ? 1 : cp_ulysses;
  }
};

// What the model asks of a layout (checked against it at start).
struct MeshModelLimits {
  int n_heads = 1, d_ff = 1, vocab_size = 1, seq_len = 1;
  int moe_experts = 0;                            // 0: no MoE
  bool uoe = false;                               // Union of Experts layers
  int uoe_attn_experts = 0, uoe_mlp_experts = 0;  // 0: no UoE
  bool learned_pos = false;                       // learned position table (not RoPE)
};

// The one place a split is checked against a model. A violation is a usage error (exit 2)
// saying what to change.
// validate_model_layout: the sizes (every split divides what it splits); ProcessMesh runs it.
void validate_model_layout(const MeshLayout& layout, const MeshModelLimits& model);
// validate_model_support: those, plus the combinations sparta does not implement (cp with UoE,
// tp with MoE, ZeRO-1 with tp or ep); the trainer runs it on its mesh, and a model built with
// process groups runs it on their sizes.
void validate_model_support(const MeshLayout& layout, const MeshModelLimits& model);

class ProcessMesh {
 public:
  // Validates the layout for `world` ranks and the model; a usage error (exit 2) says what to
  // change. dp is inferred when 0.
  ProcessMesh(const MeshLayout& layout, int world, const MeshModelLimits& model);

  int world() const { return world_; }
  CpAlgo cp_algo() const { return cp_algo_; }
  int ulysses_degree() const { return ulysses_degree_; }
  int size(Dim d) const { return sizes_[static_cast<size_t>(d)]; }
  int coord(int rank, Dim d) const;
  const std::string& order() const { return order_str_; }
  // The group of `rank` spanned by `dims` (all other coordinates fixed): a color shared by the
  // group's members and distinct across groups, and the member ranks in ascending order.
  int group_color(int rank, const std::vector<Dim>& dims) const;
  std::vector<int> group_ranks(int rank, const std::vector<Dim>& dims) const;
  // One line per rank: "rank r: tp t cp c ep e dp d".
  std::string table() const;

 private:
  int world_ = 1;
  CpAlgo cp_algo_ = CpAlgo::ulysses;
  int ulysses_degree_ = 1;
  std::array<int, 4> sizes_{1, 1, 1, 1};
  std::array<Dim, 4> order_{Dim::tp, Dim::cp, Dim::ep, Dim::dp};  // innermost first
  std::string order_str_;
};

}  // namespace sparta::parallel
