// Causal/full multi-head attention with a blocked online softmax (FlashAttention-2 style):
// queries in blocks of kBQ, keys in blocks of kBK, running max and sum per query row, so memory is
// O(kBQ * (kBK + D)) per thread whatever T is. The backward recomputes the probabilities from the
// saved log-sum-exp instead of storing them.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_ops.h"

namespace sparta::kernels::cpu {

namespace {
constexpr int64_t kBQ = 32;
constexpr int64_t kBK = 64;
constexpr int64_t kMaxD = 256;

inline float dot(const float* a, const float* b, int64_t D) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t d = 0; d < D; ++d) s += a[d] * b[d];
  return s;
}
}  // namespace

void split_heads(float* q, float* k, float* v, const float* qkv, int64_t B, int64_t T, int64_t H,
                 int64_t D) {
  const int64_t C = H * D;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const float* src = qkv + (b * T + t) * 3 * C + h * D;
        const int64_t dst = ((b * H + h) * T + t) * D;
        std::copy(src, src + D, q + dst);
        std::copy(src + C, src + C + D, k + dst);
        std::copy(src + 2 * C, src + 2 * C + D, v + dst);
      }
}

void split_heads_backward(float* dqkv, const float* dq, const float* dk, const float* dv, int64_t B,
                          int64_t T, int64_t H, int64_t D) {
  const int64_t C = H * D;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        float* dst = dqkv + (b * T + t) * 3 * C + h * D;
        const int64_t src = ((b * H + h) * T + t) * D;
        for (int64_t d = 0; d < D; ++d) {
          dst[d] += dq[src + d];
          dst[C + d] += dk[src + d];
          dst[2 * C + d] += dv[src + d];
        }
      }
}

void merge_heads(float* out, const float* o, int64_t B, int64_t T, int64_t H, int64_t D) {
  const int64_t C = H * D;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h) {
        const float* src = o + ((b * H + h) * T + t) * D;
        std::copy(src, src + D, out + (b * T + t) * C + h * D);
      }
}

void merge_heads_backward(float* dmo, const float* dout, int64_t B, int64_t T, int64_t H,
                          int64_t D) {
  const int64_t C = H * D;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const float* src = dout + (b * T + t) * C + h * D;
        float* dst = dmo + ((b * H + h) * T + t) * D;
        for (int64_t d = 0; d < D; ++d) dst[d] += src[d];
      }
}

void attention_forward(float* o, float* lse, const float* q, const float* k, const float* v,
                       int64_t BH, int64_t Tq, int64_t Tk, int64_t D, const AttnMask& msk) {
  SPARTA_CHECK(D <= kMaxD, "attention head dim {} > {}", D, kMaxD);
  const float sc = 1.0f / std::sqrt(static_cast<float>(D));
  const float ninf = -std::numeric_limits<float>::infinity();
  const int64_t nqb = (Tq + kBQ - 1) / kBQ;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
  for (int64_t bh = 0; bh < BH; ++bh) {
    for (int64_t qb = 0; qb < nqb; ++qb) {
      const float* Q = q + bh * Tq * D;
      const float* K = k + bh * Tk * D;
      const float* Vv = v + bh * Tk * D;
      const int64_t q0 = qb * kBQ, q1 = std::min(Tq, q0 + kBQ), nq = q1 - q0;
      float m[kBQ], l[kBQ], s[kBQ * kBK];
      alignas(64) float acc[kBQ * kMaxD];
      for (int64_t i = 0; i < nq; ++i) {
        m[i] = ninf;
        l[i] = 0.0f;
        std::fill(acc + i * D, acc + (i + 1) * D, 0.0f);
      }
      // Keys any row of this block may see; rows outside [q_begin, q_end) see none.
      const int64_t lo = std::max(q0, msk.q_begin), hi = std::min(q1, msk.q_end);
      const int64_t kend = hi > lo ? std::min(msk.k_end, hi - 1 + msk.diag + 1) : msk.k_begin;
      for (int64_t k0 = msk.k_begin; k0 < kend; k0 += kBK) {
        const int64_t k1 = std::min(kend, k0 + kBK), nk = k1 - k0;
        for (int64_t i = lo - q0; i < hi - q0; ++i) {
          const int64_t qi = q0 + i;
          const int64_t jmax = std::min(nk, qi + msk.diag - k0 + 1);  // keys j <= qi + diag
          if (jmax <= 0) continue;
          float mx = m[i];
          float* si = s + i * kBK;
          for (int64_t j = 0; j < jmax; ++j) {
            si[j] = dot(Q + qi * D, K + (k0 + j) * D, D) * sc;
            mx = std::max(mx, si[j]);
          }
          const float corr = std::exp(m[i] - mx);  // exp(-inf) = 0 on the first block
          float* a = acc + i * D;
          float rowsum = 0.0f;
          for (int64_t d = 0; d < D; ++d) a[d] *= corr;
          for (int64_t j = 0; j < jmax; ++j) {
            const float p = std::exp(si[j] - mx);
            rowsum += p;
            const float* vj = Vv + (k0 + j) * D;
#pragma omp simd
            for (int64_t d = 0; d < D; ++d) a[d] += p * vj[d];
          }
          l[i] = l[i] * corr + rowsum;
          m[i] = mx;
        }
      }
      for (int64_t i = 0; i < nq; ++i) {
        float* out = o + (bh * Tq + q0 + i) * D;
        if (l[i] == 0.0f) {  // no visible key: the merge identity
          std::fill(out, out + D, 0.0f);
          lse[bh * Tq + q0 + i] = ninf;
          continue;
        }
        const float inv = 1.0f / l[i];
        for (int64_t d = 0; d < D; ++d) out[d] = acc[i * D + d] * inv;
        lse[bh * Tq + q0 + i] = m[i] + std::log(l[i]);
      }
    }
  }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* o, const float* lse,
                        int64_t BH, int64_t Tq, int64_t Tk, int64_t D, const AttnMask& msk) {
  SPARTA_CHECK(D <= kMaxD, "attention head dim {} > {}", D, kMaxD);
  const float sc = 1.0f / std::sqrt(static_cast<float>(D));
  // One (batch, head) per task: dK and dV rows receive contributions from every query block, so
  // splitting query blocks across threads would race.
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t bh = 0; bh < BH; ++bh) {
    const int64_t qoff = bh * Tq * D, koff = bh * Tk * D;
    const float *Q = q + qoff, *K = k + koff, *Vv = v + koff, *O = o + qoff, *dO = dout + qoff;
    float *dQ = dq + qoff, *dK = dk + koff, *dV = dv + koff;
    const float* L = lse + bh * Tq;
    for (int64_t q0 = msk.q_begin; q0 < msk.q_end; q0 += kBQ) {
      const int64_t q1 = std::min(msk.q_end, q0 + kBQ), nq = q1 - q0;
      float delta[kBQ];  // rowsum(dO * O)
      for (int64_t i = 0; i < nq; ++i) delta[i] = dot(dO + (q0 + i) * D, O + (q0 + i) * D, D);
      const int64_t kend = std::min(msk.k_end, q1 - 1 + msk.diag + 1);
      for (int64_t k0 = msk.k_begin; k0 < kend; k0 += kBK) {
        const int64_t k1 = std::min(kend, k0 + kBK), nk = k1 - k0;
        for (int64_t i = 0; i < nq; ++i) {
          const int64_t qi = q0 + i;
          const int64_t jmax = std::min(nk, qi + msk.diag - k0 + 1);
          const float* qrow = Q + qi * D;
          const float* dorow = dO + qi * D;
          float* dqrow = dQ + qi * D;
          for (int64_t j = 0; j < jmax; ++j) {
            const int64_t kj = k0 + j;
            const float p = std::exp(dot(qrow, K + kj * D, D) * sc - L[qi]);
            const float dp = dot(dorow, Vv + kj * D, D);
            const float ds = p * (dp - delta[i]) * sc;
            float* dvrow = dV + kj * D;
            float* dkrow = dK + kj * D;
            const float* krow = K + kj * D;
#pragma omp simd
            for (int64_t d = 0; d < D; ++d) {
              dvrow[d] += p * dorow[d];
              dqrow[d] += ds * krow[d];
              dkrow[d] += ds * qrow[d];
            }
          }
        }
      }
    }
  }
}

void attention_merge(float* o, float* lse, const float* o_part, const float* lse_part, int64_t BH,
                     int64_t T, int64_t D) {
  const float ninf = -std::numeric_limits<float>::infinity();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < BH * T; ++r) {
    const float a = lse[r], b = lse_part[r];
    if (b == ninf) continue;  // nothing new (also covers two empty rows: stays 0, -inf)
    float* out = o + r * D;
    const float* part = o_part + r * D;
    if (a == ninf) {
      std::copy(part, part + D, out);
      lse[r] = b;
      continue;
    }
    const float mx = std::max(a, b), n = mx + std::log1p(std::exp(-std::fabs(a - b)));
    const float wa = std::exp(a - n), wb = std::exp(b - n);
    for (int64_t d = 0; d < D; ++d) out[d] = wa * out[d] + wb * part[d];
    lse[r] = n;
  }
}

}  // namespace sparta::kernels::cpu
