// Zigzag ring attention over the context-parallel group (spec context-parallel-attention.md
// §4.1-4.3; Megatron-Core's CP design). The sequence is cut into 2 cp chunks of m = Tf / (2 cp)
// tokens; rank r holds chunks r and 2 cp - 1 - r, in that order, so each of the cp steps costs
// every rank the same m x 2m score entries. Per step t the K/V block of rank (r - t) mod cp is
// attended to with one mask window (kernels/op_types.h AttnMask) and merged into (o, lse) by
// log-sum-exps; then the K/V block moves one rank on. The backward passes the K/V blocks the
// same way with a travelling fp32 dK/dV accumulator beside them, which a last pass returns to
// its owner: K/V move cp - 1 times, dK/dV cp times.
//
// Each pass is a Comm::start_sendrecv, started before the block compute it overlaps and waited
// for after it (MPI: Isend/Irecv on host tensors; NCCL: the communicator's own stream). K/V have
// two buffers (the one attended to is sent while the next arrives); dK/dV two more and one for
// a step's share, which is added once the block's accumulator has arrived.
#pragma once

#include "kernels/arena.h"
#include "kernels/op_types.h"
#include "parallel/comm.h"
#include "trainer/models/layer.h"

namespace sparta::models {

class RingAttention {
 public:
  // Plans the double buffers for [B, Hc, Ta, D] blocks and the positions; `cp` is the ring's
  // group (Dims::cpr ranks).
  RingAttention(kernels::ArenaPlan& acts, const Dims& d, parallel::Comm* cp);

  // The pairs step `t` computes: rank r against the block of src = (r - t) mod cp.
  static kernels::AttnMask step_mask(int rank, int src, int64_t T);

  // q, k, v, o: [B, Hc, Ta, D] of this ring rank's tokens; lse [B, Hc, Ta]. Exact causal
  // attention of the whole sequence, for these queries.
  void forward(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v);
  // dq, dk, dv += the gradients of this rank's q, k, v given the final o, lse and dout.
  void backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                Tensor o, Tensor lse);
  // Global positions of this ring rank's tokens, [B, Ta] i32 (RoPE at the zigzag positions).
  Tensor positions();

 private:
  void start_pass(Tensor out, Tensor in);  // in -> rank + 1; out <- rank - 1
  Dims d_;
  parallel::Comm* cp_;
  int64_t n_;  // elements of one K (or V) block
  Tensor kv_[2], dkv_[2], dkv_part_, o_part_, lse_part_, pos_;
  bool pos_ready_ = false;
};

}  // namespace sparta::models
