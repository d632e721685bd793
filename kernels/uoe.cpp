// Shape checks and device dispatch for kernels/uoe.h; the paper-mode slot maps (host only).
#include "kernels/uoe.h"

#include <algorithm>
#include <cstdint>
#include <numeric>

#include "kernels/arena.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/dispatch.h"

namespace sparta::kernels {

namespace cpu {
#include "kernels/uoe_backend.inc"
}

#ifdef SPARTA_HAVE_CUDA
namespace cuda {
#include "kernels/uoe_backend.inc"
}
#endif

int64_t UoeAssignStats::dropped() const {
  int64_t d = 0;
  for (size_t e = 0; e < members.size(); ++e) d += members[e] - admitted[e];
  return d;
}

namespace {

// The released code's rules (spec sections 4.1-4.2, 5.2, T12), on host arrays.
int64_t assign_paper(int32_t* row_token, int32_t* pos, int32_t* slot_pos, UoeAssignStats& st,
                     const int32_t* idx, const float* probs, int64_t N, int64_t K, int64_t E,
                     const UoeGrouping& gr, int64_t slots, int64_t max_slots) {
  const int64_t G = gr.groups, I = gr.items;
  auto tok = [&](int64_t g, int64_t i) { return g * gr.group_stride + i * gr.item_stride; };
  auto chose = [&](int64_t n, int64_t e) {
    for (int64_t k = 0; k < K; ++k)
      if (idx[n * K + k] == e) return true;
    return false;
  };
  // T: fixed, or the largest member count of any (expert, group).
  int64_t T = slots;
  if (T <= 0) {
    T = 1;
    for (int64_t e = 0; e < E; ++e)
      for (int64_t g = 0; g < G; ++g) {
        int64_t c = 0;
        for (int64_t i = 0; i < I; ++i) c += chose(tok(g, i), e);
        T = std::max(T, c);
      }
  }
  SPARTA_CHECK(T <= max_slots && T <= I, "uoe_assign: {} slots exceed the {} planned", T,
               std::min(max_slots, I));
  std::fill(pos, pos + N * E, -1);
  std::vector<double> r(static_cast<size_t>(G * I));
  std::vector<int64_t> order(static_cast<size_t>(I));
  for (int64_t e = 0; e < E; ++e) {
    // r[g,i] = m[g,i] / (sum over groups of m[., i] + eps): the axis-0 normalisation.
    for (int64_t i = 0; i < I; ++i) {
      double col = 0;
      for (int64_t g = 0; g < G; ++g) {
        const int64_t n = tok(g, i);
        const double m = chose(n, e) ? static_cast<double>(probs[n * E + e]) : 0.0;
        r[static_cast<size_t>(g * I + i)] = m;
        col += m;
      }
      for (int64_t g = 0; g < G; ++g) r[static_cast<size_t>(g * I + i)] /= col + 1e-8;
    }
    for (int64_t g = 0; g < G; ++g) {
      const double* rg = r.data() + g * I;
      std::iota(order.begin(), order.end(), 0);
      // Largest r first, ties to the lower item; then the chosen T back in item order.
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return rg[a] > rg[b]; });
      std::sort(order.begin(), order.begin() + T);
      const int64_t base = (e * G + g) * T;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t i = order[static_cast<size_t>(t)], n = tok(g, i);
        row_token[base + t] = static_cast<int32_t>(n);
        slot_pos[base + t] = static_cast<int32_t>(t);  // compressed positions
        pos[n * E + e] = static_cast<int32_t>(base + t);
        if (chose(n, e))
          ++st.admitted[static_cast<size_t>(e)];
        else
          ++st.fillers[static_cast<size_t>(e)];
      }
      for (int64_t i = 0; i < I; ++i) st.members[static_cast<size_t>(e)] += chose(tok(g, i), e);
    }
  }
  return T;
}

Tensor host_like(const Tensor& t, void* data) {
  Tensor h = t;
  h.device = Device::cpu();
  h.data = data;
  return h;
}

}  // namespace

void uoe_assign(Tensor row_token, Tensor pos, Tensor slot_pos, Tensor idx, Tensor probs,
                int64_t num_experts, const UoeGrouping& gr, UoeMode mode, int64_t slots,
                UoeAssignStats& st) {
  const int64_t N = idx.dim(0), K = idx.dim(1), E = num_experts;
  SPARTA_CHECK(gr.groups * gr.items == N && K >= 1 && K <= E,
               "uoe_assign: {} groups x {} items for idx {} with {} experts", gr.groups, gr.items,
               idx.shape_str(), E);
  SPARTA_CHECK(pos.numel() == N * E, "uoe_assign: pos {} for {} tokens x {} experts",
               pos.shape_str(), N, E);
  const int64_t max_slots = row_token.numel() / (E * gr.groups);
  SPARTA_CHECK(slot_pos.numel() == row_token.numel(), "uoe_assign: slot_pos {} vs row_token {}",
               slot_pos.shape_str(), row_token.shape_str());
  st.members.assign(static_cast<size_t>(E), 0);
  st.admitted.assign(static_cast<size_t>(E), 0);
  st.fillers.assign(static_cast<size_t>(E), 0);
  if (mode == UoeMode::clean) {
    SPARTA_CHECK(slots >= 1 && slots <= max_slots, "uoe_assign: {} slots, {} planned", slots,
                 max_slots);
    std::vector<int64_t>& counts = st.scratch;
    counts.assign(static_cast<size_t>(3 * E), 0);
    SPARTA_DISPATCH(idx.device, uoe_assign_clean(row_token.i32(), pos.i32(), slot_pos.i32(),
                                                 counts.data(), idx.i32(), N, K, E, gr.groups,
                                                 gr.items, gr.group_stride, gr.item_stride, slots));
    std::copy(counts.begin(), counts.begin() + E, st.members.begin());
    std::copy(counts.begin() + E, counts.begin() + 2 * E, st.admitted.begin());
    st.slots = slots;
    return;
  }
  SPARTA_CHECK(probs.numel() == N * E, "uoe_assign: paper mode needs probs [{}, {}], got {}", N, E,
               probs.shape_str());
  if (idx.device.is_cpu()) {
    st.slots = assign_paper(row_token.i32(), pos.i32(), slot_pos.i32(), st, idx.i32(), probs.f32(),
                            N, K, E, gr, slots, max_slots);
    return;
  }
  // Device tensors: the host computes the maps (a sync point, documented in the header).
  std::vector<int32_t> hidx(static_cast<size_t>(N * K)), hpos(static_cast<size_t>(N * E)),
      hrow(static_cast<size_t>(row_token.numel())), hsp(hrow.size());
  std::vector<float> hp(static_cast<size_t>(N * E));
  copy(host_like(idx, hidx.data()), idx);
  copy(host_like(probs, hp.data()), probs);
  st.slots = assign_paper(hrow.data(), hpos.data(), hsp.data(), st, hidx.data(), hp.data(), N, K, E,
                          gr, slots, max_slots);
  copy(pos, host_like(pos, hpos.data()));
  copy(row_token, host_like(row_token, hrow.data()));
  copy(slot_pos, host_like(slot_pos, hsp.data()));
}

void rope_at_forward(Tensor x, Tensor pos, float theta) {
  const int64_t G = x.dim(0), H = x.dim(1), T = x.dim(2), D = x.dim(3);
  SPARTA_CHECK(x.ndim == 4 && pos.numel() == G * T, "rope_at: x {} pos {}", x.shape_str(),
               pos.shape_str());
  SPARTA_DISPATCH(x.device, rope_at(x.f32(), pos.i32(), G, H, T, D, theta, 1));
}

void rope_at_backward(Tensor dx, Tensor pos, float theta) {
  const int64_t G = dx.dim(0), H = dx.dim(1), T = dx.dim(2), D = dx.dim(3);
  SPARTA_CHECK(dx.ndim == 4 && pos.numel() == G * T, "rope_at: dx {} pos {}", dx.shape_str(),
               pos.shape_str());
  SPARTA_DISPATCH(dx.device, rope_at(dx.f32(), pos.i32(), G, H, T, D, theta, -1));
}

void grouped_bias_forward(Tensor x, Tensor b) {
  const int64_t E = b.dim(0), C = b.dim(1), R = x.numel() / (E * C);
  SPARTA_CHECK(b.ndim == 2 && R * E * C == x.numel() && x.dim(-1) == C,
               "grouped_bias_forward: x {} b {}", x.shape_str(), b.shape_str());
  SPARTA_DISPATCH(x.device, grouped_bias_forward(x.f32(), b.f32(), E, R, C));
}

void grouped_bias_backward(Tensor db, Tensor dx) {
  const int64_t E = db.dim(0), C = db.dim(1), R = dx.numel() / (E * C);
  SPARTA_CHECK(db.ndim == 2 && R * E * C == dx.numel() && dx.dim(-1) == C,
               "grouped_bias_backward: dx {} db {}", dx.shape_str(), db.shape_str());
  SPARTA_DISPATCH(dx.device, grouped_bias_backward(db.f32(), dx.f32(), E, R, C));
}

}  // namespace sparta::kernels
