// Dense causal multi-head attention (QKV projection, RoPE, blocked online-softmax attention,
// output projection), with its tensor- and context-parallel communication inside:
//   tensor parallel (Megatron): QKV column-parallel (whole heads of q, k and v per rank), the
//     output projection row-parallel, its output summed over tp (TensorParallel);
//   context parallel, parallel.cp_algo = "ulysses" (DeepSpeed-Ulysses): this rank holds tokens
//     [cp_rank * T, (cp_rank + 1) * T) of every sequence; all-to-alls over cp swap tokens for
//     heads before the attention, so each rank attends over whole sequences with
//     n_heads / (tp * cp) heads, and back afterwards;
//   "ring" (RingAttention): this rank holds two zigzag chunks of every sequence and all its tp
//     heads; K/V blocks travel the cp ring, RoPE rotates at the chunks' global positions;
//   "hybrid" (USP): the Ulysses all-to-alls inside cp_a2a gather a ring rank's zigzag chunks
//     for Hl / cpa heads, then the ring runs across cp_ring.
#pragma once

#include <memory>
#include <vector>

#include "trainer/models/layer.h"
#include "trainer/models/ring_attention.h"

namespace sparta::models {

// Backward scratch of the attention modules (one set for the model) and the context-parallel
// exchange buffers, which the forward uses too.
struct AttentionScratch {
  AttentionScratch(kernels::ArenaPlan& acts, const Dims& d, parallel::Comm* ring_comm);
  Tensor g_att, g_qkv, g_q, g_k, g_v, g_o;
  // Ulysses: [B, H_tp, T, D] per-rank token blocks of all this rank's tp heads, the
  // all-to-all's send/receive buffers, and its per-peer element counts.
  Tensor cp_q, cp_k, cp_v, cp_send, cp_recv;
  std::vector<int64_t> cp_counts;
  std::unique_ptr<RingAttention> ring;  // ring: its buffers, one set for the model
};

class Attention final : public Mixer {
 public:
  // Registers `layers.<l>.attn.qkv.weight` [3C, C] and `layers.<l>.attn.proj.weight` [C, C].
  Attention(ParamSet& ps, kernels::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d,
            const parallel::ProcessGroups& g, const TensorParallel& tp, AttentionScratch& s,
            int layer);
  Tensor forward(Tensor x) override;
  void backward(Tensor x, Tensor dout, Tensor dx) override;

 private:
  void to_heads(Tensor dst, Tensor src);   // [B, Hl, T, D] -> [B, Hc, Tf, D] (all-to-all)
  void to_tokens(Tensor dst, Tensor src);  // the inverse
  bool ulysses() const { return d_.cpa > 1; }
  Dims d_;
  bool rope_;
  float theta_;
  parallel::Comm* cp_;
  const TensorParallel& tp_;
  AttentionScratch& s_;
  Weight wqkv_, wproj_;
  Tensor qkv_, q_, k_, v_, o_, lse_, att_, out_;
};

}  // namespace sparta::models
