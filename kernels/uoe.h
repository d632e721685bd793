// Union-of-Experts stages (../shared/specs/uoe.md; issue: sparse models). A UoE block reuses the
// MoE gather/combine (kernels/moe.h: the combine reads each output row's <= E slots through the
// inverse map J, so it is deterministic with no atomics) and the dense attention kernels; what
// is new here is
//   - uoe_assign: the slot maps I (row_token), J (pos) and the RoPE positions of each slot, from
//     the router's top-k choices, for the clean mode (causal admission by position, fillers
//     masked) and the paper mode (the released code's ranking, T and filler rules);
//   - rope_at: rotary embedding at explicit positions (clean mode rotates a slot by its token's
//     original position, spec T3);
//   - grouped biases: per-expert biases on [E, R, C] row blocks.
// Conventions as in ops.h: forward outputs '=', gradients '+='.
//
// Routing groups. A routed "item" lives in a group; token n of the flat [B*L] batch is
//   n = g * group_stride + i * item_stride.
// Per sequence (clean, and SMHA in both modes): groups = B, items = L, strides (L, 1).
// The released code's "[L,B] layout" (paper-mode UoME): groups = L, items = B, strides (1, L).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/tensor.h"

namespace sparta::kernels {

struct UoeGrouping {
  int64_t groups = 0, items = 0, group_stride = 0, item_stride = 0;
};

enum class UoeMode { clean, paper };

// Caller-owned and reused across steps, so the clean mode allocates nothing once sized.
struct UoeAssignStats {
  int64_t slots = 0;              // T: slots per (expert, group)
  std::vector<int64_t> members;   // per expert: tokens that chose it (top-k), all groups
  std::vector<int64_t> admitted;  // per expert: real members given a slot
  std::vector<int64_t> fillers;   // per expert: non-members given a slot (paper mode only)
  std::vector<int64_t> scratch;   // the backends' host counts
  int64_t dropped() const;        // members not admitted (capacity overflow), all experts
};

// Slot maps for E experts from idx[N,K] (i32, the top-k experts of each token, as written by
// moe_route_forward) and probs[N,E] (read in paper mode only).
//   row_token [E*G*T] (i32): the token in each slot (I, flattened (e, g, t)). A masked slot
//       (clean mode, beyond the admitted members) holds its group's first token: it is computed
//       like any slot but never read by the combine and gets no gradient.
//   pos [N*E] (i32): J, the slot row of token n in expert e, or -1 (not chosen, dropped, or
//       masked). Feeds moe_combine_* (K = E) and moe_gather_backward.
//   slot_pos [E*G*T] (i32): the RoPE position of each slot: the item index (clean) or the slot
//       index t (paper's compressed positions).
// clean: T = `slots` (fixed); members are admitted in ascending item order, the first T of them
//   (causal: admission of item i depends on items <= i only).
// paper: r[g,i,e] = m[g,i,e] / (sum_g' m[g',i,e] + 1e-8) with m = p on chosen experts, 0 else
//   (the released code's axis-0 normalisation, over the groups at a fixed item); each (e,g)
//   takes the T items of largest r (ties: lower item) sorted by item, so the non-members it
//   takes (r = 0, "fillers") are the lowest-index ones, and every slot is valid. T = `slots` when
//   > 0, else max over (e,g) of the member count (SMHA_v3's dynamic T).
// The caller sizes row_token and slot_pos for the largest T it allows. Paper mode runs on the
// host (a device idx/probs is copied back and the maps copied out: a sync point).
void uoe_assign(Tensor row_token, Tensor pos, Tensor slot_pos, Tensor idx, Tensor probs,
                int64_t num_experts, const UoeGrouping& grouping, UoeMode mode, int64_t slots,
                UoeAssignStats& stats);

// Rotary embedding of x[G,H,T,D] at positions pos[G,T] (i32), in place; the same pair
// convention (2i, 2i+1) and frequencies as rope_forward, which it equals when pos[g,t] = t.
void rope_at_forward(Tensor x, Tensor pos, float theta);
void rope_at_backward(Tensor dx, Tensor pos, float theta);  // the adjoint (inverse rotation)

// x[E,R,C] += b[E,C] (row block e gets bias e); db[E,C] += sum over r of dx[e,r,:].
void grouped_bias_forward(Tensor x, Tensor b);
void grouped_bias_backward(Tensor db, Tensor dx);

}  // namespace sparta::kernels
