// CPU reference of the MoE stages and the RMoE GRU cell (kernels/moe.h, moe_backend.inc).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/check.h"
#include "kernels/op_types.h"

namespace sparta::kernels::cpu {
#include "kernels/backend_ops.inc"
#include "kernels/moe_backend.inc"

namespace {
constexpr int64_t kMaxExperts = 1024;
inline float sigm(float x) {
  return 1.0f / (1.0f + std::exp(-x));
}
}  // namespace

void moe_route_forward(float* p, int32_t* ix, float* wt, const float* z, int64_t N, int64_t E,
                       int64_t K) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* zr = z + n * E;
    float* pr = p + n * E;
    const float mx = *std::max_element(zr, zr + E);
    double sum = 0;
    for (int64_t e = 0; e < E; ++e) sum += std::exp(static_cast<double>(zr[e] - mx));
    for (int64_t e = 0; e < E; ++e)
      pr[e] = static_cast<float>(std::exp(static_cast<double>(zr[e] - mx)) / sum);
    // The K largest by repeated scans (E is small); ties go to the lower id.
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
}

void moe_route_backward(float* dz, const float* g, const float* p, const int32_t* ix,
                        const float* wt, int64_t N, int64_t E, int64_t K) {
  SPARTA_CHECK(E <= kMaxExperts, "moe_route_backward: {} experts > {}", E, kMaxExperts);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    // w_j = p_{i_j} / S, S = sum_k p_{i_k}:  dp_e = (dw_e - sum_j dw_j w_j) / S for selected e.
    double S = 0, gw = 0;
    for (int64_t k = 0; k < K; ++k) {
      S += p[n * E + ix[n * K + k]];
      gw += static_cast<double>(g[n * K + k]) * wt[n * K + k];
    }
    double dp[kMaxExperts];
    std::fill(dp, dp + E, 0.0);
    for (int64_t k = 0; k < K; ++k) dp[ix[n * K + k]] = (g[n * K + k] - gw) / S;
    // Softmax: dz_e = p_e (dp_e - sum_f p_f dp_f).
    double pdp = 0;
    for (int64_t e = 0; e < E; ++e) pdp += p[n * E + e] * dp[e];
    for (int64_t e = 0; e < E; ++e)
      dz[n * E + e] += static_cast<float>(p[n * E + e] * (dp[e] - pdp));
  }
}

void moe_aux_losses(double* out3, int64_t* counts, float* dz, const float* z, const float* p,
                    const int32_t* ix, int64_t N, int64_t E, int64_t K, float lb_coef, float z_coef,
                    float grad_scale, const double* f_global) {
  SPARTA_CHECK(E <= kMaxExperts, "moe_aux_losses: {} experts > {}", E, kMaxExperts);
  std::fill(counts, counts + E, 0);
  for (int64_t i = 0; i < N * K; ++i) ++counts[ix[i]];
  double P[kMaxExperts] = {}, gpe[kMaxExperts];
  double entropy = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t e = 0; e < E; ++e) {
      const double pe = p[n * E + e];
      P[e] += pe;
      if (pe > 0) entropy -= pe * std::log(pe);
    }
  double lb = 0, zl = 0;
  for (int64_t e = 0; e < E; ++e) {
    const double f =
        f_global ? f_global[e] : static_cast<double>(counts[e]) / static_cast<double>(N * K);
    lb += static_cast<double>(E) * f * P[e] / static_cast<double>(N);
    gpe[e] = lb_coef * static_cast<double>(E) * f / static_cast<double>(N);  // dLB/dp_{n,e}
  }
  auto lse_of = [&](int64_t n) {
    const float* zr = z + n * E;
    const double mx = *std::max_element(zr, zr + E);
    double s = 0;
    for (int64_t e = 0; e < E; ++e) s += std::exp(zr[e] - mx);
    return mx + std::log(s);
  };
  for (int64_t n = 0; n < N; ++n) {
    const double l = lse_of(n);
    zl += l * l / static_cast<double>(N);
  }
  out3[0] = lb;
  out3[1] = zl;
  out3[2] = entropy / static_cast<double>(N);
  if (!dz) return;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    // Load balance through the softmax, plus dZ/dz_e = 2 lse p_e / N.
    double pg = 0;
    for (int64_t e = 0; e < E; ++e) pg += p[n * E + e] * gpe[e];
    const double zg = z_coef * 2.0 * lse_of(n) / static_cast<double>(N);
    for (int64_t e = 0; e < E; ++e)
      dz[n * E + e] +=
          static_cast<float>(grad_scale * (p[n * E + e] * (gpe[e] - pg) + zg * p[n * E + e]));
  }
}

int64_t moe_permute(int32_t* ps, int32_t* rt, int64_t* offsets, const int32_t* ix, int64_t N,
                    int64_t K, int64_t E, int64_t capacity) {
  SPARTA_CHECK(E <= kMaxExperts, "moe_permute: {} experts > {}", E, kMaxExperts);
  int64_t count[kMaxExperts] = {}, fill[kMaxExperts] = {};
  for (int64_t i = 0; i < N * K; ++i) {
    SPARTA_CHECK(ix[i] >= 0 && ix[i] < E, "moe_permute: expert id {} outside [0,{})", ix[i], E);
    ++count[ix[i]];
  }
  offsets[0] = 0;
  for (int64_t e = 0; e < E; ++e)
    offsets[e + 1] = offsets[e] + (capacity > 0 ? std::min(count[e], capacity) : count[e]);
  // Pairs in (token, slot) order; each expert fills its rows in that order, so the sort is
  // stable and the first `capacity` pairs of an expert are the ones kept.
  int64_t dropped = 0;
  for (int64_t i = 0; i < N * K; ++i) {
    const int32_t e = ix[i];
    const int64_t rank = fill[e]++;
    if (capacity > 0 && rank >= capacity) {
      ps[i] = -1;
      ++dropped;
      continue;
    }
    const int64_t row = offsets[e] + rank;
    ps[i] = static_cast<int32_t>(row);
    rt[row] = static_cast<int32_t>(i / K);
  }
  return dropped;
}

void moe_gather(float* xp, const float* x, const int32_t* rt, int64_t rows, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) std::copy_n(x + rt[r] * C, C, xp + r * C);
}

void moe_gather_backward(float* dx, const float* dxp, const int32_t* ps, int64_t N, int64_t K,
                         int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int32_t r = ps[n * K + k];
      if (r < 0) continue;
      for (int64_t c = 0; c < C; ++c) dx[n * C + c] += dxp[r * C + c];
    }
}

void moe_combine_forward(float* y, const float* outp, const float* w, const int32_t* ps, int64_t N,
                         int64_t K, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    float* yr = y + n * C;
    std::fill(yr, yr + C, 0.0f);
    for (int64_t k = 0; k < K; ++k) {
      const int32_t r = ps[n * K + k];
      if (r < 0) continue;
      const float wk = w[n * K + k];
      for (int64_t c = 0; c < C; ++c) yr[c] += wk * outp[r * C + c];
    }
  }
}

void moe_combine_backward(float* doutp, float* dw, const float* dy, const float* outp,
                          const float* w, const int32_t* ps, int64_t N, int64_t K, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int32_t r = ps[n * K + k];
      if (r < 0) continue;
      const float wk = w[n * K + k];
      const float* g = dy + n * C;
      const float* o = outp + r * C;
      double dot = 0;
      for (int64_t c = 0; c < C; ++c) {
        doutp[r * C + c] += wk * g[c];
        dot += static_cast<double>(g[c]) * o[c];
      }
      if (dw) dw[n * K + k] += static_cast<float>(dot);
    }
}

void grouped_matmul_forward(float* out, const float* inp, const float* w, const int64_t* off,
                            int64_t E, int64_t IC, int64_t OC) {
  for (int64_t e = 0; e < E; ++e)
    if (off[e + 1] > off[e])
      matmul_forward(out + off[e] * OC, inp + off[e] * IC, w + e * OC * IC, off[e + 1] - off[e], IC,
                     OC);
}

void grouped_matmul_backward(float* dinp, float* dw, const float* dout, const float* inp,
                             const float* w, const int64_t* off, int64_t E, int64_t IC,
                             int64_t OC) {
  for (int64_t e = 0; e < E; ++e)
    if (off[e + 1] > off[e])
      matmul_backward(dinp ? dinp + off[e] * IC : nullptr, dw ? dw + e * OC * IC : nullptr,
                      dout + off[e] * OC, inp + off[e] * IC, w + e * OC * IC, off[e + 1] - off[e],
                      IC, OC);
}

void gru_cell_forward(float* h, float* saved, const float* a, const float* b, const float* bi,
                      const float* bh, const float* hp, int64_t N, int64_t P) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* ar = a + n * 3 * P;
    const float* br = b + n * 3 * P;
    float* s = saved + n * 4 * P;
    for (int64_t j = 0; j < P; ++j) {
      const float r = sigm(ar[j] + bi[j] + br[j] + bh[j]);
      const float zz = sigm(ar[P + j] + bi[P + j] + br[P + j] + bh[P + j]);
      const float hn = br[2 * P + j] + bh[2 * P + j];
      const float nn = std::tanh(ar[2 * P + j] + bi[2 * P + j] + r * hn);
      h[n * P + j] = (1.0f - zz) * nn + zz * hp[n * P + j];
      s[j] = r;
      s[P + j] = zz;
      s[2 * P + j] = nn;
      s[3 * P + j] = hn;
    }
  }
}

void gru_cell_backward(float* dgi, float* dgh, float* db_ih, float* db_hh, float* dh_prev,
                       const float* dh, const float* saved, const float* hp, int64_t N, int64_t P) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* s = saved + n * 4 * P;
    float* da = dgi + n * 3 * P;
    float* db = dgh + n * 3 * P;
    for (int64_t j = 0; j < P; ++j) {
      const float r = s[j], zz = s[P + j], nn = s[2 * P + j], hn = s[3 * P + j];
      const float g = dh[n * P + j];
      const float dn_pre = g * (1.0f - zz) * (1.0f - nn * nn);
      const float dz_pre = g * (hp[n * P + j] - nn) * zz * (1.0f - zz);
      const float dr_pre = dn_pre * hn * r * (1.0f - r);
      da[j] = dr_pre;
      da[P + j] = dz_pre;
      da[2 * P + j] = dn_pre;
      db[j] = dr_pre;
      db[P + j] = dz_pre;
      db[2 * P + j] = dn_pre * r;
      if (dh_prev) dh_prev[n * P + j] += g * zz;
    }
  }
  // Bias gradients: column sums in a fixed row order (deterministic).
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < 3 * P; ++j) {
      db_ih[j] += dgi[n * 3 * P + j];
      db_hh[j] += dgh[n * 3 * P + j];
    }
}

}  // namespace sparta::kernels::cpu
