// Naive double-precision references for every op: the straightforward formula, no blocking, no
// fusion. Tests compare the fp32 CPU ops against these, and take finite differences of them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace sparta::test::ref {

using Vec = std::vector<double>;

inline Vec matmul(const Vec& inp, const Vec& w, int64_t N, int64_t IC, int64_t OC) {
  Vec out(static_cast<size_t>(N * OC));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < OC; ++o) {
      double s = 0;
      for (int64_t i = 0; i < IC; ++i) s += inp[n * IC + i] * w[o * IC + i];
      out[n * OC + o] = s;
    }
  return out;
}

inline Vec embedding(const std::vector<int32_t>& tok, const Vec& wte, const Vec* wpe, int64_t B,
                     int64_t T, int64_t C) {
  Vec out(static_cast<size_t>(B * T * C));
  for (int64_t n = 0; n < B * T; ++n)
    for (int64_t c = 0; c < C; ++c)
      out[n * C + c] = wte[tok[n] * C + c] + (wpe ? (*wpe)[(n % T) * C + c] : 0.0);
  return out;
}

inline Vec rope(const Vec& x, int64_t BH, int64_t T, int64_t D, double theta) {
  Vec out = x;
  for (int64_t bh = 0; bh < BH; ++bh)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < D / 2; ++i) {
        const double a = t * std::pow(theta, -2.0 * i / D);
        const int64_t o = (bh * T + t) * D + 2 * i;
        out[o] = x[o] * std::cos(a) - x[o + 1] * std::sin(a);
        out[o + 1] = x[o] * std::sin(a) + x[o + 1] * std::cos(a);
      }
  return out;
}

inline Vec layernorm(const Vec& x, const Vec& g, const Vec& b, int64_t N, int64_t C, double eps) {
  Vec out(x.size());
  for (int64_t n = 0; n < N; ++n) {
    double mu = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mu += x[n * C + c] / C;
    for (int64_t c = 0; c < C; ++c) var += (x[n * C + c] - mu) * (x[n * C + c] - mu) / C;
    for (int64_t c = 0; c < C; ++c)
      out[n * C + c] = (x[n * C + c] - mu) / std::sqrt(var + eps) * g[c] + b[c];
  }
  return out;
}

inline Vec rmsnorm(const Vec& x, const Vec& g, int64_t N, int64_t C, double eps) {
  Vec out(x.size());
  for (int64_t n = 0; n < N; ++n) {
    double ms = 0;
    for (int64_t c = 0; c < C; ++c) ms += x[n * C + c] * x[n * C + c] / C;
    for (int64_t c = 0; c < C; ++c) out[n * C + c] = x[n * C + c] / std::sqrt(ms + eps) * g[c];
  }
  return out;
}

inline Vec gelu(const Vec& x) {
  Vec out(x.size());
  const double k = std::sqrt(2.0 / M_PI);
  for (size_t i = 0; i < x.size(); ++i)
    out[i] = 0.5 * x[i] * (1 + std::tanh(k * (x[i] + 0.044715 * x[i] * x[i] * x[i])));
  return out;
}

inline Vec swiglu(const Vec& x, int64_t N, int64_t F) {
  Vec out(static_cast<size_t>(N * F));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t f = 0; f < F; ++f) {
      const double g = x[n * 2 * F + f], u = x[n * 2 * F + F + f];
      out[n * F + f] = g / (1 + std::exp(-g)) * u;
    }
  return out;
}

// Full T x T softmax per (b,h) row, the textbook formula. Returns (o, lse).
inline std::pair<Vec, Vec> attention(const Vec& q, const Vec& k, const Vec& v, int64_t BH,
                                     int64_t T, int64_t D, bool causal) {
  Vec o(q.size()), lse(static_cast<size_t>(BH * T));
  std::vector<double> s(static_cast<size_t>(T));
  const double sc = 1.0 / std::sqrt(static_cast<double>(D));
  for (int64_t bh = 0; bh < BH; ++bh)
    for (int64_t i = 0; i < T; ++i) {
      const int64_t jend = causal ? i + 1 : T;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < jend; ++j) {
        double d = 0;
        for (int64_t e = 0; e < D; ++e) d += q[(bh * T + i) * D + e] * k[(bh * T + j) * D + e];
        s[j] = d * sc;
        mx = std::max(mx, s[j]);
      }
      double z = 0;
      for (int64_t j = 0; j < jend; ++j) z += std::exp(s[j] - mx);
      for (int64_t e = 0; e < D; ++e) {
        double acc = 0;
        for (int64_t j = 0; j < jend; ++j) acc += std::exp(s[j] - mx) / z * v[(bh * T + j) * D + e];
        o[(bh * T + i) * D + e] = acc;
      }
      lse[bh * T + i] = mx + std::log(z);
    }
  return {o, lse};
}

// Block attention over a mask window (kernels/op_types.h AttnMask): query i of [BH, Tq, D] sees
// key j of [BH, Tk, D] iff qb <= i < qe, kb <= j < ke and j <= i + diag. Rows with no visible
// key: o = 0, lse = -inf. Returns (o, lse).
inline std::pair<Vec, Vec> block_attention(const Vec& q, const Vec& k, const Vec& v, int64_t BH,
                                           int64_t Tq, int64_t Tk, int64_t D, int64_t qb,
                                           int64_t qe, int64_t kb, int64_t ke, int64_t diag) {
  Vec o(static_cast<size_t>(BH * Tq * D), 0.0),
      lse(static_cast<size_t>(BH * Tq), -std::numeric_limits<double>::infinity());
  const double sc = 1.0 / std::sqrt(static_cast<double>(D));
  std::vector<double> s(static_cast<size_t>(Tk));
  for (int64_t bh = 0; bh < BH; ++bh)
    for (int64_t i = qb; i < qe; ++i) {
      const int64_t jend = std::min(ke, i + diag + 1);
      if (jend <= kb) continue;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = kb; j < jend; ++j) {
        double d = 0;
        for (int64_t e = 0; e < D; ++e) d += q[(bh * Tq + i) * D + e] * k[(bh * Tk + j) * D + e];
        s[j] = d * sc;
        mx = std::max(mx, s[j]);
      }
      double z = 0;
      for (int64_t j = kb; j < jend; ++j) z += std::exp(s[j] - mx);
      for (int64_t j = kb; j < jend; ++j)
        for (int64_t e = 0; e < D; ++e)
          o[(bh * Tq + i) * D + e] += std::exp(s[j] - mx) / z * v[(bh * Tk + j) * D + e];
      lse[bh * Tq + i] = mx + std::log(z);
    }
  return {o, lse};
}

inline Vec xent(const Vec& h, const Vec& w, const std::vector<int32_t>& tgt, int64_t N, int64_t C,
                int64_t V) {
  const Vec z = matmul(h, w, N, C, V);
  Vec loss(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    if (tgt[n] < 0) continue;
    double mx = z[n * V];
    for (int64_t j = 1; j < V; ++j) mx = std::max(mx, z[n * V + j]);
    double s = 0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(z[n * V + j] - mx);
    loss[n] = mx + std::log(s) - z[n * V + tgt[n]];
  }
  return loss;
}

}  // namespace sparta::test::ref
