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
  acts.add(&dkv_part_, {2 * n_});
  acts.add(&o_part_, {d.B, d.Hc, d.Ta, d.D});
  acts.add(&lse_part_, {d.B, d.Hc, d.Ta});
  acts.add(&pos_, k::DType::i32, {d.B, d.Ta});
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
    for (int64_t b = 0; b < d_.B; ++b)
      for (int64_t i = 0; i < d_.Ta; ++i)
        host[static_cast<size_t>(b * d_.Ta + i)] =
            static_cast<int32_t>(Dims::zigzag_position(i, d_.Ta, d_.cpr_rank, d_.cpr));
    k::copy(pos_, Tensor(host.data(), k::DType::i32, k::Device::cpu(), {d_.B, d_.Ta}));
    pos_ready_ = true;
  }
  return pos_;
}

void RingAttention::start_pass(Tensor out, Tensor in) {
  const int P = d_.cpr, r = d_.cpr_rank;
  cp_->start_sendrecv(out, (r + P - 1) % P, in, (r + 1) % P);
}

namespace {
Tensor half(Tensor kv, int which, int64_t n, const Dims& d) {
  return kv.rows(which * n, (which + 1) * n).view({d.B, d.Hc, d.Ta, d.D});
}
}  // namespace

// Step t's K/V block goes on to the next rank while step t attends to it (a read beside a
// read); step t + 1's arrives in the other buffer, which step t - 1 finished with.
void RingAttention::forward(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v) {
  const int P = d_.cpr, r = d_.cpr_rank;
  k::copy(half(kv_[0], 0, n_, d_), k);
  k::copy(half(kv_[0], 1, n_, d_), v);
  for (int t = 0; t < P; ++t) {
    const Tensor kv = kv_[t % 2];
    if (t + 1 < P) start_pass(kv_[(t + 1) % 2], kv);
    const int src = (r - t + P) % P;
    const AttnMask m = step_mask(r, src, d_.Ta);
    if (t == 0) {
      k::attention_forward(o, lse, q, half(kv, 0, n_, d_), half(kv, 1, n_, d_), m);
    } else {
      k::attention_forward(o_part_, lse_part_, q, half(kv, 0, n_, d_), half(kv, 1, n_, d_), m);
      k::attention_merge(o, lse, o_part_, lse_part_);
    }
    cp_->wait_all();
  }
}

// The dK/dV accumulator of a block travels with it. Its pass cannot overlap the step that adds
// to it, so each step computes its share into dkv_part_ while the accumulator of its block
// arrives (sent at the end of the previous rank's step) and the next K/V block is on its way;
// then it adds the share and sends the accumulator on, to arrive during the next step. After
// the last step it holds block (r + 1)'s, and one more pass hands every rank its own.
void RingAttention::backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k,
                             Tensor v, Tensor o, Tensor lse) {
  const int P = d_.cpr, r = d_.cpr_rank;
  k::copy(half(kv_[0], 0, n_, d_), k);
  k::copy(half(kv_[0], 1, n_, d_), v);
  for (int t = 0; t < P; ++t) {
    const Tensor kv = kv_[t % 2], acc = dkv_[t % 2];
    if (t + 1 < P) start_pass(kv_[(t + 1) % 2], kv);
    const Tensor share = t == 0 ? acc : dkv_part_;  // step 0's block is this rank's own
    k::zero(share);
    k::attention_backward(dq, half(share, 0, n_, d_), half(share, 1, n_, d_), dout, q,
                          half(kv, 0, n_, d_), half(kv, 1, n_, d_), o, lse,
                          step_mask(r, (r - t + P) % P, d_.Ta));
    cp_->wait_all();  // the next K/V block, and (t > 0) this block's accumulator in acc
    if (t > 0) k::accumulate(acc, dkv_part_);
    start_pass(dkv_[(t + 1) % 2], acc);
  }
  cp_->wait_all();
  const Tensor mine = dkv_[P % 2];
  k::accumulate(dk, half(mine, 0, n_, d_));
  k::accumulate(dv, half(mine, 1, n_, d_));
}

}  // namespace sparta::models
