// CPU reference of the MoE stages (kernels/moe.h).
#include "kernels/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace sparta::kernels {

namespace {

constexpr int64_t kMaxExperts = 1024;

void cpu_only(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (!t->empty() && !t->device.is_cpu())
      SPARTA_USAGE_ERROR("{}: the MoE kernels run on the CPU only so far (got a {} tensor)", op,
                         to_string(t->device));
}

}  // namespace

void moe_route_forward(Tensor probs, Tensor idx, Tensor w, Tensor logits) {
  cpu_only("moe_route_forward", {&probs, &idx, &w, &logits});
  const int64_t N = logits.dim(0), E = logits.dim(1), K = idx.dim(1);
  SPARTA_CHECK(K >= 1 && K <= E && idx.dim(0) == N && w.numel() == N * K && probs.numel() == N * E,
               "moe_route_forward: logits {} idx {} w {}", logits.shape_str(), idx.shape_str(),
               w.shape_str());
  const float* z = logits.f32();
  float* p = probs.f32();
  int32_t* ix = idx.i32();
  float* wt = w.f32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float* zr = z + n * E;
    float* pr = p + n * E;
    const float mx = *std::max_element(zr, zr + E);
    double sum = 0;
    for (int64_t e = 0; e < E; ++e) sum += std::exp(static_cast<double>(zr[e] - mx));
    for (int64_t e = 0; e < E; ++e)
      pr[e] = static_cast<float>(std::exp(static_cast<double>(zr[e] - mx)) / sum);
    // Selection of the K largest by repeated scans: E is small (<= a few hundred).
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

void moe_route_backward(Tensor dlogits, Tensor dw, Tensor probs, Tensor idx, Tensor w) {
  cpu_only("moe_route_backward", {&dlogits, &dw, &probs, &idx, &w});
  const int64_t N = probs.dim(0), E = probs.dim(1), K = idx.dim(1);
  const float* p = probs.f32();
  const float* g = dw.f32();
  const float* wt = w.f32();
  const int32_t* ix = idx.i32();
  float* dz = dlogits.f32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    // w_j = p_{i_j} / S, S = sum_k p_{i_k}:  dp_e = (dw_e - sum_j dw_j w_j) / S for selected e.
    double S = 0, gw = 0;
    for (int64_t k = 0; k < K; ++k) {
      S += p[n * E + ix[n * K + k]];
      gw += static_cast<double>(g[n * K + k]) * wt[n * K + k];
    }
    double dp[kMaxExperts];
    SPARTA_CHECK(E <= kMaxExperts, "moe_route_backward: {} experts > {}", E, kMaxExperts);
    std::fill(dp, dp + E, 0.0);
    for (int64_t k = 0; k < K; ++k) dp[ix[n * K + k]] = (g[n * K + k] - gw) / S;
    // Softmax: dz_e = p_e (dp_e - sum_f p_f dp_f).
    double pdp = 0;
    for (int64_t e = 0; e < E; ++e) pdp += p[n * E + e] * dp[e];
    for (int64_t e = 0; e < E; ++e) dz[n * E + e] += static_cast<float>(p[n * E + e] * (dp[e] - pdp));
  }
}

MoeAux moe_aux_losses(Tensor logits, Tensor probs, Tensor idx, std::vector<int64_t>& counts,
                      Tensor dlogits, float lb_coef, float z_coef, float grad_scale) {
  cpu_only("moe_aux_losses", {&logits, &probs, &idx, &dlogits});
  const int64_t N = probs.dim(0), E = probs.dim(1), K = idx.dim(1);
  SPARTA_CHECK(E <= kMaxExperts, "moe_aux_losses: {} experts > {}", E, kMaxExperts);
  const float* z = logits.f32();
  const float* p = probs.f32();
  const int32_t* ix = idx.i32();
  counts.assign(static_cast<size_t>(E), 0);  // no reallocation once the caller sized it
  for (int64_t i = 0; i < N * K; ++i) ++counts[static_cast<size_t>(ix[i])];
  double P[kMaxExperts] = {}, gpe[kMaxExperts];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t e = 0; e < E; ++e) P[e] += p[n * E + e];
  MoeAux aux;
  for (int64_t e = 0; e < E; ++e) {
    const double f = static_cast<double>(counts[static_cast<size_t>(e)]) / static_cast<double>(N * K);
    aux.load_balance += static_cast<double>(E) * f * P[e] / static_cast<double>(N);
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
    aux.z += l * l / static_cast<double>(N);
  }
  if (!dlogits.empty()) {
    float* dz = dlogits.f32();
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      // Load balance through the softmax, plus dZ/dz_e = 2 lse p_e / N.
      double pg = 0;
      for (int64_t e = 0; e < E; ++e) pg += p[n * E + e] * gpe[e];
      const double zl = z_coef * 2.0 * lse_of(n) / static_cast<double>(N);
      for (int64_t e = 0; e < E; ++e)
        dz[n * E + e] += static_cast<float>(grad_scale * (p[n * E + e] * (gpe[e] - pg) + zl * p[n * E + e]));
    }
  }
  return aux;
}

int64_t moe_permute(Tensor pos, Tensor row_token, std::vector<int64_t>& offsets, Tensor idx,
                    int64_t num_experts, int64_t capacity) {
  cpu_only("moe_permute", {&pos, &row_token, &idx});
  const int64_t N = idx.dim(0), K = idx.dim(1), E = num_experts;
  const int32_t* ix = idx.i32();
  int32_t* ps = pos.i32();
  int32_t* rt = row_token.i32();
  SPARTA_CHECK(E <= kMaxExperts, "moe_permute: {} experts > {}", E, kMaxExperts);
  int64_t count[kMaxExperts] = {}, fill[kMaxExperts] = {};
  for (int64_t i = 0; i < N * K; ++i) {
    SPARTA_CHECK(ix[i] >= 0 && ix[i] < E, "moe_permute: expert id {} outside [0,{})", ix[i], E);
    ++count[ix[i]];
  }
  offsets.assign(static_cast<size_t>(E + 1), 0);  // no reallocation once the caller sized it
  for (int64_t e = 0; e < E; ++e) {
    const int64_t kept = capacity > 0 ? std::min(count[e], capacity) : count[e];
    offsets[static_cast<size_t>(e + 1)] = offsets[static_cast<size_t>(e)] + kept;
  }
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
    const int64_t row = offsets[static_cast<size_t>(e)] + rank;
    ps[i] = static_cast<int32_t>(row);
    rt[row] = static_cast<int32_t>(i / K);
  }
  return dropped;
}

void moe_gather(Tensor xp, Tensor x, Tensor row_token, int64_t rows) {
  cpu_only("moe_gather", {&xp, &x, &row_token});
  const int64_t C = x.dim(-1);
  const int32_t* rt = row_token.i32();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) std::copy_n(x.f32() + rt[r] * C, C, xp.f32() + r * C);
}

void moe_gather_backward(Tensor dx, Tensor dxp, Tensor pos) {
  cpu_only("moe_gather_backward", {&dx, &dxp, &pos});
  const int64_t C = dx.dim(-1), N = dx.numel() / C, K = pos.numel() / N;
  const int32_t* ps = pos.i32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int32_t r = ps[n * K + k];
      if (r < 0) continue;
      for (int64_t c = 0; c < C; ++c) dx.f32()[n * C + c] += dxp.f32()[r * C + c];
    }
}

void moe_combine_forward(Tensor y, Tensor outp, Tensor w, Tensor pos) {
  cpu_only("moe_combine_forward", {&y, &outp, &w, &pos});
  const int64_t C = y.dim(-1), N = y.numel() / C, K = w.numel() / N;
  const int32_t* ps = pos.i32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    float* yr = y.f32() + n * C;
    std::fill(yr, yr + C, 0.0f);
    for (int64_t k = 0; k < K; ++k) {
      const int32_t r = ps[n * K + k];
      if (r < 0) continue;
      const float wk = w.f32()[n * K + k];
      for (int64_t c = 0; c < C; ++c) yr[c] += wk * outp.f32()[r * C + c];
    }
  }
}

void moe_combine_backward(Tensor doutp, Tensor dw, Tensor dy, Tensor outp, Tensor w, Tensor pos) {
  cpu_only("moe_combine_backward", {&doutp, &dw, &dy, &outp, &w, &pos});
  const int64_t C = dy.dim(-1), N = dy.numel() / C, K = w.numel() / N;
  const int32_t* ps = pos.i32();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int32_t r = ps[n * K + k];
      if (r < 0) continue;
      const float wk = w.f32()[n * K + k];
      const float* g = dy.f32() + n * C;
      const float* o = outp.f32() + r * C;
      double dot = 0;
      for (int64_t c = 0; c < C; ++c) {
        doutp.f32()[r * C + c] += wk * g[c];
        dot += static_cast<double>(g[c]) * o[c];
      }
      dw.f32()[n * K + k] += static_cast<float>(dot);
    }
}

}  // namespace sparta::kernels
