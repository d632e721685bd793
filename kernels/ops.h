// Every numeric op of sparta. Each function dispatches on its tensors' device to the CPU
// reference (kernels/cpu/, the oracle) or the CUDA twin (kernels/cuda/), and both are tested
// against each other (tests/gpu) and against double-precision references and finite differences
// (tests/unit).
//
// Conventions (hold for every op):
//  - Forward outputs are overwritten (=).
//  - Backward gradient outputs ACCUMULATE (+=). Parameter gradients thereby sum over micro-batches,
//    and an activation read by two consumers sums both contributions; callers zero what must start
//    at zero. An empty Tensor for a gradient output means "not needed" and is skipped.
//  - All float math is fp32 with fp32 (CPU: often double) reductions.
//  - Shapes are checked; a mismatch is an internal error naming the op and the shapes.
#pragma once

#include <cstdint>

#include "kernels/op_types.h"
#include "kernels/tensor.h"

namespace sparta::kernels {

// ---- matmul (BLAS / cuBLASLt) ----------------------------------------------------------------
// out[N,OC] = inp[N,IC] · weight[OC,IC]^T
void matmul_forward(Tensor out, Tensor inp, Tensor weight);
// dinp[N,IC] += dout · weight ; dweight[OC,IC] += dout^T · inp
void matmul_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight);

// ---- embeddings ------------------------------------------------------------------------------
// out[B*T,C] = wte[tokens] (+ wpe[t] when wpe is not empty). tokens: i32 [B,T], values < V.
// Vocab-parallel: wte holds rows [vocab_begin, vocab_begin + wte.dim(0)) of the full table;
// tokens outside embed as zeros and add no gradient (the tensor-parallel sum completes them).
void embedding_forward(Tensor out, Tensor tokens, Tensor wte, Tensor wpe, int64_t vocab_begin = 0);
void embedding_backward(Tensor dwte, Tensor dwpe, Tensor dout, Tensor tokens,
                        int64_t vocab_begin = 0);
// Rotary position embedding applied in place to x[B,H,T,D] (pairs (2i, 2i+1), position = t).
void rope_forward(Tensor x, float theta);
// Inverse rotation of dx in place: the adjoint of rope_forward.
void rope_backward(Tensor dx, float theta);

// ---- normalisation (rows of length C; N = numel / C) -------------------------------------------
void layernorm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor gamma, Tensor beta,
                       float eps);
void layernorm_backward(Tensor dinp, Tensor dgamma, Tensor dbeta, Tensor dout, Tensor inp,
                        Tensor gamma, Tensor mean, Tensor rstd);
// RMSNorm: out = gamma * x / sqrt(mean(x^2) + eps); rstd[N] saved for backward.
void rmsnorm_forward(Tensor out, Tensor rstd, Tensor inp, Tensor gamma, float eps);
void rmsnorm_backward(Tensor dinp, Tensor dgamma, Tensor dout, Tensor inp, Tensor gamma,
                      Tensor rstd);

// ---- activations -------------------------------------------------------------------------------
// GELU, tanh approximation (GPT-2).
void gelu_forward(Tensor out, Tensor inp);
void gelu_backward(Tensor dinp, Tensor dout, Tensor inp);
// SwiGLU: inp[N,2F] = [gate | up]; out[N,F] = silu(gate) * up.
void swiglu_forward(Tensor out, Tensor inp);
void swiglu_backward(Tensor dinp, Tensor dout, Tensor inp);

// ---- attention ---------------------------------------------------------------------------------
// qkv[B,T,3C] (C = H*D, order q|k|v, head-major inside each) -> q,k,v[B,H,T,D]
void split_heads(Tensor q, Tensor k, Tensor v, Tensor qkv);
void split_heads_backward(Tensor dqkv, Tensor dq, Tensor dk, Tensor dv);
// o[B,H,T,D] -> out[B,T,C]
void merge_heads(Tensor out, Tensor o);
void merge_heads_backward(Tensor dmo, Tensor dout);
// Blocked online-softmax attention; scale 1/sqrt(D). Never materialises T x T scores.
// o[B,H,T,D] = softmax(q k^T * scale [causal mask]) v ; lse[B,H,T] = log-sum-exp of each row.
void attention_forward(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v, bool causal);
void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                        Tensor o, Tensor lse, bool causal);
// Block attention (the ring's step): q, o [B,H,Tq,D] against k, v [B,H,Tk,D] over the pairs of
// `m` (op_types.h). Rows without a visible key: o = 0, lse = -inf. The backward adds (+=) the
// block's share of dq, dk, dv given the final o and lse of the whole attention.
void attention_forward(Tensor o, Tensor lse, Tensor q, Tensor k, Tensor v, const AttnMask& m);
void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                        Tensor o, Tensor lse, const AttnMask& m);
// Exact merge of two partial attentions of the same queries over disjoint key sets, by their
// log-sum-exps (spec context-parallel-attention.md §4.2): o, lse [B,H,T,D], [B,H,T] <- merged.
// A part with lse = -inf changes nothing; fp32 throughout.
void attention_merge(Tensor o, Tensor lse, Tensor o_part, Tensor lse_part);

// ---- LM head + softmax cross-entropy, fused ----------------------------------------------------
// For each row n of hidden[N,C]: logits = hidden[n] · wout[V,C]^T, losses[n] = logsumexp(logits) -
// logits[targets[n]] (targets < 0: ignored, loss 0, no gradient). Rows are processed in chunks of
// R = logits_ws.dim(0) through the workspace logits_ws[R,V], so the full [N,V] logits never exist.
// With dhidden/dwout given, backpropagates d(sum_n dloss * losses[n]) into them (+=).
void lm_head_xent(Tensor losses, Tensor logits_ws, Tensor hidden, Tensor wout, Tensor targets,
                  float dloss, Tensor dhidden, Tensor dwout);
// Vocab-parallel cross-entropy in two passes around the tensor-parallel reductions; wout holds
// vocabulary rows [vocab_begin, vocab_begin + wout.dim(0)), targets are full-vocabulary ids.
// Pass 1: part_lse[n] = log-sum-exp of this part's logits of row n, target_logit[n] = the
// target's logit if this part holds it, else 0 (ignored rows: both 0). The full row's
// log-sum-exp is the log-sum-exp of the parts' values; the target logit is their sum.
void lm_head_lse(Tensor part_lse, Tensor target_logit, Tensor logits_ws, Tensor hidden, Tensor wout,
                 Tensor targets, int64_t vocab_begin);
// Pass 2: recomputes this part's logits and adds the gradient of dloss * sum_n loss[n] given
// the full rows' log-sum-exp: dlogits = dloss * (exp(z - row_lse) - onehot). dhidden receives
// this part's share (to be summed over the parts).
void lm_head_xent_backward(Tensor logits_ws, Tensor hidden, Tensor wout, Tensor targets,
                           Tensor row_lse, int64_t vocab_begin, float dloss, Tensor dhidden,
                           Tensor dwout);

// ---- elementwise, reductions, optimizer --------------------------------------------------------
void add(Tensor out, Tensor a, Tensor b);  // out = a + b
void accumulate(Tensor dst, Tensor src);   // dst += src
void scale(Tensor x, float s);             // x *= s
// Sum of squares of every element, accumulated in double; returns to the host (a sync on GPU).
double sum_squares(Tensor x);

// Gradient noise: x[i] += sigma * kernels::noise_normal(seed, param_id, step, index_offset + i),
// where index_offset is the global index of x's first element in its logical parameter (so a
// shard of a parameter gets exactly the noise of those elements of the whole).
void add_gaussian_noise(Tensor x, float sigma, uint64_t seed, uint32_t param_id, uint32_t step,
                        int64_t index_offset = 0);
// Decoupled weight decay (Loshchilov & Hutter): p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p).
void adamw_update(Tensor param, Tensor grad, Tensor m, Tensor v, const AdamWParams& p);

}  // namespace sparta::kernels
