// CUDA twin of the MoE stages and the RMoE GRU cell (kernels/moe_backend.inc). Correctness
// first: one thread per token row for routing (E is small), one thread per expert for the
// stable permutation (scans the pairs in order, which makes the order and the capacity cut
// identical to the CPU's), elementwise kernels elsewhere. Host results are copied back.
#include <cfloat>
#include <vector>

#include "kernels/cuda/common.cuh"

namespace sparta::kernels::cuda {
#include "kernels/moe_backend.inc"

namespace {
constexpr int kThreads = 128;
constexpr int kMaxExperts = 1024;

unsigned grid(int64_t n) {
  return static_cast<unsigned>((n + kThreads - 1) / kThreads);
}

__global__ void route_fwd_k(float* p, int32_t* ix, float* wt, const float* z, int64_t N, int64_t E,
                            int64_t K) {
  const int64_t n = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (n >= N) return;
  const float* zr = z + n * E;
  float* pr = p + n * E;
  float mx = -FLT_MAX;
  for (int64_t e = 0; e < E; ++e) mx = fmaxf(mx, zr[e]);
  double sum = 0;
  for (int64_t e = 0; e < E; ++e) sum += exp(static_cast<double>(zr[e] - mx));
  for (int64_t e = 0; e < E; ++e)
    pr[e] = static_cast<float>(exp(static_cast<double>(zr[e] - mx)) / sum);
  int32_t* ir = ix + n * K;
  double s = 0;
  for (int64_t k = 0; k < K; ++k) {
    int32_t best = -1;
    for (int64_t e = 0; e < E; ++e) {
      bool taken = false;
      for (int64_t j = 0; j < k; ++j) taken = taken || ir[j] == e;
      if (!taken && (best < 0 || pr[e] > pr[best])) best = static_cast<int32_t>(e);
    }
    ir[k] = best;
    s += pr[best];
  }
  for (int64_t k = 0; k < K; ++k) wt[n * K + k] = static_cast<float>(pr[ir[k]] / s);
}

__global__ void route_bwd_k(float* dz, const float* g, const float* p, const int32_t* ix,
                            const float* wt, int64_t N, int64_t E, int64_t K) {
  const int64_t n = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (n >= N) return;
  double S = 0, gw = 0;
  for (int64_t k = 0; k < K; ++k) {
    S += p[n * E + ix[n * K + k]];
    gw += static_cast<double>(g[n * K + k]) * wt[n * K + k];
  }
  // dp is nonzero only on the K selected experts: sum_f p_f dp_f needs only those.
  double pdp = 0;
  for (int64_t k = 0; k < K; ++k) pdp += p[n * E + ix[n * K + k]] * (g[n * K + k] - gw) / S;
  for (int64_t e = 0; e < E; ++e) {
    double dp = 0;
    for (int64_t k = 0; k < K; ++k)
      if (ix[n * K + k] == e) dp = (g[n * K + k] - gw) / S;
    dz[n * E + e] += static_cast<float>(p[n * E + e] * (dp - pdp));
  }
}

// Per-row part of the aux losses: lse^2 / N and entropy into row arrays (summed on the host in
// order: deterministic), and (optional) the gradient, given the per-expert f_e on the device.
__global__ void aux_rows_k(double* lse2, double* ent, float* dz, const float* z, const float* p,
                           const double* gpe, int64_t N, int64_t E, float z_coef,
                           float grad_scale) {
  const int64_t n = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (n >= N) return;
  const float* zr = z + n * E;
  float mx = -FLT_MAX;
  for (int64_t e = 0; e < E; ++e) mx = fmaxf(mx, zr[e]);
  double s = 0, h = 0, pg = 0;
  for (int64_t e = 0; e < E; ++e) {
    s += exp(static_cast<double>(zr[e] - mx));
    const double pe = p[n * E + e];
    if (pe > 0) h -= pe * log(pe);
    if (dz) pg += pe * gpe[e];
  }
  const double lse = mx + log(s);
  lse2[n] = lse * lse;
  ent[n] = h;
  if (!dz) return;
  const double zg = z_coef * 2.0 * lse / static_cast<double>(N);
  for (int64_t e = 0; e < E; ++e)
    dz[n * E + e] +=
        static_cast<float>(grad_scale * (p[n * E + e] * (gpe[e] - pg) + zg * p[n * E + e]));
}

// Column sums of p (P_e * N) and the assignment counts, one thread per expert.
__global__ void aux_cols_k(double* colsum, int64_t* counts, const float* p, const int32_t* ix,
                           int64_t N, int64_t E, int64_t K) {
  const int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (e >= E) return;
  double s = 0;
  for (int64_t n = 0; n < N; ++n) s += p[n * E + e];
  int64_t c = 0;
  for (int64_t i = 0; i < N * K; ++i) c += ix[i] == e;
  colsum[e] = s;
  counts[e] = c;
}

// One thread per expert scans the pairs in (token, slot) order: stable, and the first
// `capacity` are kept, exactly as on the CPU.
__global__ void permute_k(int32_t* ps, int32_t* rt, const int64_t* offsets, const int32_t* ix,
                          int64_t NK, int64_t K, int64_t E, int64_t capacity) {
  const int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (e >= E) return;
  int64_t rank = 0;
  for (int64_t i = 0; i < NK; ++i) {
    if (ix[i] != e) continue;
    if (capacity > 0 && rank >= capacity) {
      ps[i] = -1;
    } else {
      const int64_t row = offsets[e] + rank;
      ps[i] = static_cast<int32_t>(row);
      rt[row] = static_cast<int32_t>(i / K);
    }
    ++rank;
  }
}

__global__ void count_k(int64_t* counts, const int32_t* ix, int64_t NK, int64_t E) {
  const int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (e >= E) return;
  int64_t c = 0;
  for (int64_t i = 0; i < NK; ++i) c += ix[i] == e;
  counts[e] = c;
}

__global__ void gather_k(float* xp, const float* x, const int32_t* rt, int64_t rows, int64_t C) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < rows * C;
       i += int64_t{gridDim.x} * blockDim.x)
    xp[i] = x[static_cast<int64_t>(rt[i / C]) * C + i % C];
}

__global__ void gather_bwd_k(float* dx, const float* dxp, const int32_t* ps, int64_t N, int64_t K,
                             int64_t C) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < N * C;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t n = i / C, c = i % C;
    float s = 0;
    for (int64_t k = 0; k < K; ++k) {
      const int32_t r = ps[n * K + k];
      if (r >= 0) s += dxp[static_cast<int64_t>(r) * C + c];
    }
    dx[i] += s;
  }
}

__global__ void combine_fwd_k(float* y, const float* outp, const float* w, const int32_t* ps,
                              int64_t N, int64_t K, int64_t C) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < N * C;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t n = i / C, c = i % C;
    float s = 0;
    for (int64_t k = 0; k < K; ++k) {
      const int32_t r = ps[n * K + k];
      if (r >= 0) s += w[n * K + k] * outp[static_cast<int64_t>(r) * C + c];
    }
    y[i] = s;
  }
}

// doutp: each permuted row belongs to exactly one pair, so no two threads write the same row.
__global__ void combine_bwd_rows_k(float* doutp, const float* dy, const float* w, const int32_t* ps,
                                   int64_t N, int64_t K, int64_t C) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < N * K * C;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t pair = i / C, c = i % C;
    const int32_t r = ps[pair];
    if (r >= 0) doutp[static_cast<int64_t>(r) * C + c] += w[pair] * dy[(pair / K) * C + c];
  }
}

// dw: one warp per pair.
__global__ void combine_bwd_w_k(float* dw, const float* dy, const float* outp, const int32_t* ps,
                                int64_t NK, int64_t K, int64_t C) {
  const int64_t pair = blockIdx.x * int64_t{kThreads / 32} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (pair >= NK) return;
  const int32_t r = ps[pair];
  if (r < 0) return;
  float s = 0;
  for (int64_t c = lane; c < C; c += 32)
    s += dy[(pair / K) * C + c] * outp[static_cast<int64_t>(r) * C + c];
  s = warp_sum(s);
  if (lane == 0) dw[pair] += s;
}

__device__ inline float sigm(float x) {
  return 1.0f / (1.0f + expf(-x));
}

__global__ void gru_fwd_k(float* h, float* saved, const float* a, const float* b, const float* bi,
                          const float* bh, const float* hp, int64_t N, int64_t P) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < N * P;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t n = i / P, j = i % P;
    const float* ar = a + n * 3 * P;
    const float* br = b + n * 3 * P;
    const float r = sigm(ar[j] + bi[j] + br[j] + bh[j]);
    const float zz = sigm(ar[P + j] + bi[P + j] + br[P + j] + bh[P + j]);
    const float hn = br[2 * P + j] + bh[2 * P + j];
    const float nn = tanhf(ar[2 * P + j] + bi[2 * P + j] + r * hn);
    h[i] = (1.0f - zz) * nn + zz * hp[i];
    float* s = saved + n * 4 * P;
    s[j] = r;
    s[P + j] = zz;
    s[2 * P + j] = nn;
    s[3 * P + j] = hn;
  }
}

__global__ void gru_bwd_k(float* dgi, float* dgh, float* dh_prev, const float* dh,
                          const float* saved, const float* hp, int64_t N, int64_t P) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < N * P;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t n = i / P, j = i % P;
    const float* s = saved + n * 4 * P;
    const float r = s[j], zz = s[P + j], nn = s[2 * P + j], hn = s[3 * P + j];
    const float g = dh[i];
    const float dn_pre = g * (1.0f - zz) * (1.0f - nn * nn);
    const float dz_pre = g * (hp[i] - nn) * zz * (1.0f - zz);
    const float dr_pre = dn_pre * hn * r * (1.0f - r);
    float* da = dgi + n * 3 * P;
    float* db = dgh + n * 3 * P;
    da[j] = dr_pre;
    da[P + j] = dz_pre;
    da[2 * P + j] = dn_pre;
    db[j] = dr_pre;
    db[P + j] = dz_pre;
    db[2 * P + j] = dn_pre * r;
    if (dh_prev) dh_prev[i] += g * zz;
  }
}

// Column sums in row order (deterministic), one thread per column.
__global__ void colsum_add_k(float* out, const float* m, int64_t rows, int64_t cols) {
  const int64_t j = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (j >= cols) return;
  float s = 0;
  for (int64_t r = 0; r < rows; ++r) s += m[r * cols + j];
  out[j] += s;
}

template <class T>
std::vector<T> to_host(const T* d, int64_t n) {
  std::vector<T> h(static_cast<size_t>(n));
  SPARTA_CUDA_CHECK(
      cudaMemcpy(h.data(), d, static_cast<size_t>(n) * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}
}  // namespace

void moe_route_forward(float* probs, int32_t* idx, float* w, const float* logits, int64_t N,
                       int64_t E, int64_t K) {
  route_fwd_k<<<grid(N), kThreads>>>(probs, idx, w, logits, N, E, K);
  SPARTA_CUDA_LAUNCHED();
}

void moe_route_backward(float* dlogits, const float* dw, const float* probs, const int32_t* idx,
                        const float* w, int64_t N, int64_t E, int64_t K) {
  route_bwd_k<<<grid(N), kThreads>>>(dlogits, dw, probs, idx, w, N, E, K);
  SPARTA_CUDA_LAUNCHED();
}

void moe_aux_losses(double* out3, int64_t* counts_host, float* dlogits, const float* logits,
                    const float* probs, const int32_t* idx, int64_t N, int64_t E, int64_t K,
                    float lb_coef, float z_coef, float grad_scale, const double* f_global) {
  if (E > kMaxExperts) fail(__FILE__, __LINE__, "moe_aux_losses", "more than 1024 experts");
  // Scratch layout: colsum[E] | gpe[E] | lse2[N] | ent[N] (doubles) | counts[E] (int64).
  auto* base = static_cast<double*>(scratch(static_cast<size_t>(2 * E + 2 * N) * sizeof(double) +
                                            static_cast<size_t>(E) * sizeof(int64_t)));
  double *colsum = base, *gpe = base + E, *lse2 = base + 2 * E, *ent = base + 2 * E + N;
  auto* counts = reinterpret_cast<int64_t*>(base + 2 * E + 2 * N);
  aux_cols_k<<<grid(E), kThreads>>>(colsum, counts, probs, idx, N, E, K);
  SPARTA_CUDA_LAUNCHED();
  const auto hc = to_host(counts, E);
  const auto hs = to_host(colsum, E);
  std::vector<double> hg(static_cast<size_t>(E));
  double lb = 0;
  for (int64_t e = 0; e < E; ++e) {
    counts_host[e] = hc[static_cast<size_t>(e)];
    const double f =
        f_global ? f_global[e]
                 : static_cast<double>(hc[static_cast<size_t>(e)]) / static_cast<double>(N * K);
    lb += static_cast<double>(E) * f * hs[static_cast<size_t>(e)] / static_cast<double>(N);
    hg[static_cast<size_t>(e)] = lb_coef * static_cast<double>(E) * f / static_cast<double>(N);
  }
  SPARTA_CUDA_CHECK(cudaMemcpy(gpe, hg.data(), hg.size() * sizeof(double), cudaMemcpyHostToDevice));
  aux_rows_k<<<grid(N), kThreads>>>(lse2, ent, dlogits, logits, probs, gpe, N, E, z_coef,
                                    grad_scale);
  SPARTA_CUDA_LAUNCHED();
  const auto hl = to_host(lse2, N), he = to_host(ent, N);
  double z = 0, h = 0;
  for (int64_t n = 0; n < N; ++n) {
    z += hl[static_cast<size_t>(n)] / static_cast<double>(N);
    h += he[static_cast<size_t>(n)];
  }
  out3[0] = lb;
  out3[1] = z;
  out3[2] = h / static_cast<double>(N);
}

int64_t moe_permute(int32_t* pos, int32_t* row_token, int64_t* offsets_host, const int32_t* idx,
                    int64_t N, int64_t K, int64_t E, int64_t capacity) {
  auto* d = static_cast<int64_t*>(scratch(static_cast<size_t>(2 * E + 1) * sizeof(int64_t)));
  int64_t *counts = d, *offsets = d + E;
  count_k<<<grid(E), kThreads>>>(counts, idx, N * K, E);
  SPARTA_CUDA_LAUNCHED();
  const auto hc = to_host(counts, E);
  int64_t dropped = 0;
  offsets_host[0] = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t c = hc[static_cast<size_t>(e)];
    const int64_t kept = capacity > 0 && c > capacity ? capacity : c;
    dropped += c - kept;
    offsets_host[e + 1] = offsets_host[e] + kept;
  }
  SPARTA_CUDA_CHECK(cudaMemcpy(offsets, offsets_host, static_cast<size_t>(E + 1) * sizeof(int64_t),
                               cudaMemcpyHostToDevice));
  permute_k<<<grid(E), kThreads>>>(pos, row_token, offsets, idx, N * K, K, E, capacity);
  SPARTA_CUDA_LAUNCHED();
  return dropped;
}

void moe_gather(float* xp, const float* x, const int32_t* row_token, int64_t rows, int64_t C) {
  if (rows == 0) return;
  gather_k<<<blocks_for(rows * C, kThreads), kThreads>>>(xp, x, row_token, rows, C);
  SPARTA_CUDA_LAUNCHED();
}

void moe_gather_backward(float* dx, const float* dxp, const int32_t* pos, int64_t N, int64_t K,
                         int64_t C) {
  gather_bwd_k<<<blocks_for(N * C, kThreads), kThreads>>>(dx, dxp, pos, N, K, C);
  SPARTA_CUDA_LAUNCHED();
}

void moe_combine_forward(float* y, const float* outp, const float* w, const int32_t* pos, int64_t N,
                         int64_t K, int64_t C) {
  combine_fwd_k<<<blocks_for(N * C, kThreads), kThreads>>>(y, outp, w, pos, N, K, C);
  SPARTA_CUDA_LAUNCHED();
}

void moe_combine_backward(float* doutp, float* dw, const float* dy, const float* outp,
                          const float* w, const int32_t* pos, int64_t N, int64_t K, int64_t C) {
  combine_bwd_rows_k<<<blocks_for(N * K * C, kThreads), kThreads>>>(doutp, dy, w, pos, N, K, C);
  SPARTA_CUDA_LAUNCHED();
  if (!dw) return;
  const auto blocks = static_cast<unsigned>((N * K + kThreads / 32 - 1) / (kThreads / 32));
  combine_bwd_w_k<<<blocks, kThreads>>>(dw, dy, outp, pos, N * K, K, C);
  SPARTA_CUDA_LAUNCHED();
}

void gru_cell_forward(float* h, float* saved, const float* gi, const float* gh, const float* b_ih,
                      const float* b_hh, const float* h_prev, int64_t N, int64_t P) {
  gru_fwd_k<<<blocks_for(N * P, kThreads), kThreads>>>(h, saved, gi, gh, b_ih, b_hh, h_prev, N, P);
  SPARTA_CUDA_LAUNCHED();
}

void gru_cell_backward(float* dgi, float* dgh, float* db_ih, float* db_hh, float* dh_prev,
                       const float* dh, const float* saved, const float* h_prev, int64_t N,
                       int64_t P) {
  gru_bwd_k<<<blocks_for(N * P, kThreads), kThreads>>>(dgi, dgh, dh_prev, dh, saved, h_prev, N, P);
  SPARTA_CUDA_LAUNCHED();
  colsum_add_k<<<grid(3 * P), kThreads>>>(db_ih, dgi, N, 3 * P);
  SPARTA_CUDA_LAUNCHED();
  colsum_add_k<<<grid(3 * P), kThreads>>>(db_hh, dgh, N, 3 * P);
  SPARTA_CUDA_LAUNCHED();
}

}  // namespace sparta::kernels::cuda
