// Plain parameter structs shared by the op API and both backends (no dependencies, so the CUDA
// sources can include it without pulling host-only headers into nvcc).
#pragma once

#include <cstdint>

namespace sparta::kernels {

struct AdamWParams {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  float grad_scale = 1.0f;  // multiplies the gradient first (global-norm clipping)
  int64_t step = 1;         // 1-based, for bias correction
};

// The (query i, key j) pairs one attention call computes, for a query block of Tq rows and a
// key block of Tk rows: i in [q_begin, q_end), j in [k_begin, k_end) and j <= i + diag. Ring
// attention's block steps are such windows (spec context-parallel-attention.md §4.1: the causal
// diagonal, all queries against the first half of the keys, the second half of the queries
// against all keys). A query row with no such key gets o = 0 and lse = -inf, the identity of
// attention_merge.
struct AttnMask {
  int64_t q_begin = 0, q_end = 0, k_begin = 0, k_end = 0;
  int64_t diag = 0;  // 0: causal (diagonal included); -1: strictly causal; >= Tk: no cut
  static AttnMask full(int64_t Tq, int64_t Tk) { return {0, Tq, 0, Tk, Tk}; }
  static AttnMask causal(int64_t T) { return {0, T, 0, T, 0}; }
};

}  // namespace sparta::kernels
