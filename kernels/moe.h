// Mixture-of-experts stages, each a separate op with its own test (issue: sparse models):
//   route (softmax, top-K, renormalise) -> aux losses -> permute (stable, by expert, with
//   capacity) -> gather -> [expert GEMMs: kernels::matmul_* on per-expert row ranges] ->
//   combine (weighted sum back into token order), and the backward of each.
// Conventions as in ops.h: forward outputs '=', gradients '+='. Router math is fp32.
//
// CPU reference in kernels/cpu/moe.cpp, CUDA twin in kernels/cuda/moe.cu (raw signatures in
// moe_backend.inc). Host-side results (aux values, counts, expert offsets) are copied back, so
// on a GPU the permute and the aux losses are sync points.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/tensor.h"

namespace sparta::kernels {

// probs[N,E] = softmax(logits[N,E]); idx[N,K] (i32) the K most probable experts in descending
// order (ties: lower id first); w[N,K] their probabilities renormalised to sum 1.
void moe_route_forward(Tensor probs, Tensor idx, Tensor w, Tensor logits);
// dlogits[N,E] += d/dlogits of <dw, w> through the renormalisation and the softmax.
void moe_route_backward(Tensor dlogits, Tensor dw, Tensor probs, Tensor idx, Tensor w);

struct MoeAux {
  double load_balance = 0;    // Switch: E * sum_e f_e * P_e (1 when perfectly balanced)
  double z = 0;               // mean over tokens of logsumexp(logits)^2
  double router_entropy = 0;  // mean over tokens of -sum_e p_e log p_e (nats)
};
// Computes the auxiliary losses and the per-expert assignment counts (counts.size() == E);
// with dlogits given, adds grad_scale * (lb_coef * dLB + z_coef * dZ) (f_e treated as constant,
// as in Switch/GShard). f_global (E values, host) replaces the local assignment fractions f_e:
// data-parallel ranks pass the fractions of the whole global batch, so that the gradients they
// average are exactly the single process's (each rank's P_e is its own tokens' mean).
MoeAux moe_aux_losses(Tensor logits, Tensor probs, Tensor idx, std::vector<int64_t>& counts,
                      Tensor dlogits, float lb_coef, float z_coef, float grad_scale,
                      const double* f_global = nullptr);

// Stable counting sort of the (token, slot) pairs by expert. pos[N*K] (i32): the pair's row in
// the permuted buffer, -1 if dropped by the capacity; row_token[N*K] (i32): the token of each
// permuted row. offsets (size E+1, host) delimit each expert's kept rows. capacity 0: dropless.
// Returns the number of dropped pairs.
int64_t moe_permute(Tensor pos, Tensor row_token, std::vector<int64_t>& offsets, Tensor idx,
                    int64_t num_experts, int64_t capacity);
// xp[r] = x[row_token[r]] for r < rows.
void moe_gather(Tensor xp, Tensor x, Tensor row_token, int64_t rows);
// dx[n] += sum_k dxp[pos[n,k]] (pos >= 0): the gather's backward, deterministic per token.
void moe_gather_backward(Tensor dx, Tensor dxp, Tensor pos);
// y[n] = sum_k w[n,k] * outp[pos[n,k]] over kept pairs (a dropped pair contributes 0).
void moe_combine_forward(Tensor y, Tensor outp, Tensor w, Tensor pos);
// doutp[pos[n,k]] += w[n,k] * dy[n]; dw[n,k] += <dy[n], outp[pos[n,k]]> (dw may be empty).
void moe_combine_backward(Tensor doutp, Tensor dw, Tensor dy, Tensor outp, Tensor w, Tensor pos);

// All experts' GEMMs in one call (CPU: BLAS per expert; CUDA: one cublasSgemmGroupedBatched):
// out rows [offsets[e], offsets[e+1]) = inp rows times weight[e]^T, weight [E, OC, IC]; offsets
// (E + 1, host) as moe_permute returns them. Backward: dinp += dout W_e, dweight[e] += dout^T inp
// over each expert's rows (either may be empty).
void grouped_matmul_forward(Tensor out, Tensor inp, Tensor weight,
                            const std::vector<int64_t>& offsets);
void grouped_matmul_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight,
                             const std::vector<int64_t>& offsets);

// GRU cell (PyTorch's gate order r, z, n) for the RMoE router, one row per token:
//   r = sigma(gi_r + b_ih_r + gh_r + b_hh_r)        z = sigma(gi_z + b_ih_z + gh_z + b_hh_z)
//   n = tanh(gi_n + b_ih_n + r * (gh_n + b_hh_n))    h = (1 - z) * n + z * h_prev
// gi = x W_ih^T and gh = h_prev W_hh^T come from kernels::matmul_forward ([N,3P] each, biases
// not included). saved[N,4P] keeps r, z, n and (gh_n + b_hh_n) for the backward.
void gru_cell_forward(Tensor h, Tensor saved, Tensor gi, Tensor gh, Tensor b_ih, Tensor b_hh,
                      Tensor h_prev);
// From dh[N,P]: dgi, dgh [N,3P] (=, pre-activation gate gradients), db_ih, db_hh [3P] (+=),
// dh_prev [N,P] (+=, may be empty).
void gru_cell_backward(Tensor dgi, Tensor dgh, Tensor db_ih, Tensor db_hh, Tensor dh_prev,
                       Tensor dh, Tensor saved, Tensor h_prev);

}  // namespace sparta::kernels
