#include "trainer/models/ring_attention.h"

#include <limits>

#include "kernels/ops.h"

namespace sparta::models {

namespace k = sparta::kernels;
using k::AttnMask;

RingAttention::RingAttention(k::ArenaPlan& acts, const Dims& d, parallel::Comm* cp)
    : d_(d), cp_(cp), n_(d.B * d.Hc * d.Ta * d.D) {
  for (int i = 0; i < 2; ++i) {
    acts.add(&kv_[i], {2 * n_});  // K then V
    acts.add(&dkv_[i], {2 * n_});
  }
  acts.add(&o_part_, {d.B, d.Hc, d.Ta, d.D});
  acts.add(&lse_part_, {d.B, d.Hc, d.Ta});
  acts.add(&pos_, k::DType::i32, {d.B, d.Ta});
  const auto P = static_cast<size_t>(d.cpr), r = static_cast<size_t>(d.cpr_rank);
  send_counts_.assign(P, 0);
  recv_counts_.assign(P, 0);
  send_counts_[(r + 1) % P] = 2 * n_;
  recv_counts_[(r + P - 1) % P] = 2 * n_;
}

AttnMask RingAttention::step_mask(int rank, int src, int64_t T) {
  const int64_t m = T / 2;
  if (src == rank) return AttnMask::causal(T);  // [a; b] against itself, positions increasing
  if (src < rank) return {0, T, 0, m, T};       // c_src precedes both local chunks
  return {m, T, 0, T, T};                       // both of src's chunks precede chunk b only
}

Tensor RingAttention::positions() {
  if (!pos_ready_) {
    std::vector<int32_t> host(static_cast<size_t>(d_.B * d_.Ta));
    const int64_t m = d_.Ta / 2;
    for (int64_t b = 0; b < d_.B; ++b)
      for (int64_t i = 0; i < d_.Ta; ++i)
        host[static_cast<size_t>(b * d_.Ta + i)] =
            static_cast<int32_t>(chunk_start(i < m ? 0 : 1, m, d_.cpr_rank, d_.cpr) + i % m);
    k::copy(pos_, Tensor(host.data(), k::DType::i32, k::Device::cpu(), {d_.B, d_.Ta}));
    pos_ready_ = true;
  }
  return pos_;
}

void RingAttention::pass(Tensor out, Tensor in) {
  cp_->all_to_all_v(out, recv_counts_, in, send_counts_);
}

namespace {
Tensor half(Tensor kv, int which, int64_t n, const Dims& d) {
  return kv.rows(which * n, (which + 1) * n).view({d.B, d.Hc, d.Ta, d.D});
}
}  // namespace

void RingAttention::forward(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v) {
  const int P = d_.cpr, r = d_.cpr_rank;
  k::copy(half(kv_[0], 0, n_, d_), k);
  k::copy(half(kv_[0], 1, n_, d_), v);
  for (int t = 0; t < P; ++t) {
    const Tensor kv = kv_[t % 2];
    const int src = (r - t + P) % P;
    const AttnMask m = step_mask(r, src, d_.Ta);
    if (t == 0) {
      k::attention_forward(o, lse, q, half(kv, 0, n_, d_), half(kv, 1, n_, d_), m);
    } else {
      k::attention_forward(o_part_, lse_part_, q, half(kv, 0, n_, d_), half(kv, 1, n_, d_), m);
      k::attention_merge(o, lse, o_part_, lse_part_);
    }
    if (t + 1 < P) pass(kv_[(t + 1) % 2], kv);
  }
}

void RingAttention::backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k,
                             Tensor v, Tensor o, Tensor lse) {
  const int P = d_.cpr, r = d_.cpr_rank;
  k::copy(half(kv_[0], 0, n_, d_), k);
  k::copy(half(kv_[0], 1, n_, d_), v);
  k::zero(dkv_[0]);
  for (int t = 0; t < P; ++t) {
    const Tensor kv = kv_[t % 2], dkv = dkv_[t % 2];
    const int src = (r - t + P) % P;
    k::attention_backward(dq, half(dkv, 0, n_, d_), half(dkv, 1, n_, d_), dout, q,
                          half(kv, 0, n_, d_), half(kv, 1, n_, d_), o, lse,
                          step_mask(r, src, d_.Ta));
    // The accumulator travels with its block; after the last step it holds block (r + 1)'s,
    // and one more pass hands every rank its own.
    if (t + 1 < P) pass(kv_[(t + 1) % 2], kv);
    pass(dkv_[(t + 1) % 2], dkv);
  }
  const Tensor mine = dkv_[P % 2];
  k::accumulate(dk, half(mine, 0, n_, d_));
  k::accumulate(dv, half(mine, 1, n_, d_));
}

}  // namespace sparta::models
