// MoE stages (kernels/moe.h) against double-precision references and finite differences, and
// the permutation's edge cases: an expert with no tokens, all tokens on one expert, K = E,
// capacity overflow, E not dividing anything.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "kernels/moe.h"
#include "tests/common/test_util.h"

namespace sparta::test {
namespace {

namespace k = sparta::kernels;
using Vec = std::vector<double>;

// Logits whose K-th and (K+1)-th values per row are at least `gap` apart, so finite differences
// never flip a routing decision.
HostF32 separated_logits(int64_t N, int64_t E, uint64_t stream) {
  HostF32 z({N, E});
  for (int64_t n = 0; n < N; ++n) {
    std::vector<int64_t> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    for (int64_t i = E - 1; i > 0; --i)
      std::swap(order[static_cast<size_t>(i)],
                order[k::philox(5, stream, static_cast<uint64_t>(n * E + i))[0] %
                      static_cast<uint64_t>(i + 1)]);
    for (int64_t r = 0; r < E; ++r)
      z[static_cast<size_t>(n * E + order[static_cast<size_t>(r)])] =
          0.4f * static_cast<float>(r) +
          0.1f * static_cast<float>(k::uniform(5, stream + 1, static_cast<uint64_t>(n * E + r)));
  }
  return z;
}

struct RefRoute {
  Vec probs, w;
  std::vector<int32_t> idx;
};

RefRoute ref_route(const Vec& z, int64_t N, int64_t E, int64_t K) {
  RefRoute r{Vec(z.size()), Vec(static_cast<size_t>(N * K)),
             std::vector<int32_t>(static_cast<size_t>(N * K))};
  for (int64_t n = 0; n < N; ++n) {
    double mx = -1e300, s = 0;
    for (int64_t e = 0; e < E; ++e) mx = std::max(mx, z[static_cast<size_t>(n * E + e)]);
    for (int64_t e = 0; e < E; ++e) s += std::exp(z[static_cast<size_t>(n * E + e)] - mx);
    std::vector<int32_t> ord(static_cast<size_t>(E));
    std::iota(ord.begin(), ord.end(), 0);
    for (int64_t e = 0; e < E; ++e)
      r.probs[static_cast<size_t>(n * E + e)] =
          std::exp(z[static_cast<size_t>(n * E + e)] - mx) / s;
    std::stable_sort(ord.begin(), ord.end(), [&](int32_t a, int32_t b) {
      return r.probs[static_cast<size_t>(n * E + a)] > r.probs[static_cast<size_t>(n * E + b)];
    });
    double S = 0;
    for (int64_t j = 0; j < K; ++j)
      S += r.probs[static_cast<size_t>(n * E + ord[static_cast<size_t>(j)])];
    for (int64_t j = 0; j < K; ++j) {
      r.idx[static_cast<size_t>(n * K + j)] = ord[static_cast<size_t>(j)];
      r.w[static_cast<size_t>(n * K + j)] =
          r.probs[static_cast<size_t>(n * E + ord[static_cast<size_t>(j)])] / S;
    }
  }
  return r;
}

class Route : public ::testing::TestWithParam<std::pair<int64_t, int64_t>> {};

TEST_P(Route, ForwardMatchesReferenceAndBackwardMatchesFiniteDifferences) {
  const auto [E, K] = GetParam();
  const int64_t N = 6;
  const HostF32 z = separated_logits(N, E, 10);
  HostF32 probs({N, E}), w({N, K}), dz({N, E});
  HostI32 idx({N, K});
  k::moe_route_forward(probs.t, idx.t, w.t, z.t);
  const RefRoute ref = ref_route(z.d(), N, E, K);
  EXPECT_EQ(idx.v, ref.idx);
  EXPECT_LT(rel_err(probs.v, ref.probs), 1e-6);
  EXPECT_LT(rel_err(w.v, ref.w), 1e-6);
  for (int64_t n = 0; n < N; ++n) {
    double s = 0;
    for (int64_t j = 0; j < K; ++j) s += w[static_cast<size_t>(n * K + j)];
    EXPECT_NEAR(s, 1.0, 1e-6);
  }
  const HostF32 dw = randn({N, K}, 11);
  k::moe_route_backward(dz.t, dw.t, probs.t, idx.t, w.t);
  const Vec fd = fd_grad([&](const Vec& x) { return dot(ref_route(x, N, E, K).w, dw.d()); }, z.d());
  EXPECT_LT(rel_err(dz.v, fd), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Route,
    ::testing::Values(std::pair<int64_t, int64_t>{4, 2}, std::pair<int64_t, int64_t>{7, 3},
                      std::pair<int64_t, int64_t>{5, 1}, std::pair<int64_t, int64_t>{3, 3}),
    [](const auto& info) { return fmt::format("E{}_K{}", info.param.first, info.param.second); });

TEST(MoeAux, LossValuesAndGradients) {
  const int64_t N = 8, E = 5, K = 2;
  const HostF32 z = separated_logits(N, E, 20);
  HostF32 probs({N, E}), w({N, K}), dz({N, E});
  HostI32 idx({N, K});
  k::moe_route_forward(probs.t, idx.t, w.t, z.t);
  std::vector<int64_t> counts;
  const float lb_coef = 0.7f, z_coef = 0.3f, scale = 0.5f;
  const auto aux = k::moe_aux_losses(z.t, probs.t, idx.t, counts, dz.t, lb_coef, z_coef, scale);
  ASSERT_EQ(counts.size(), 5u);
  EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), int64_t{0}), N * K);
  // Reference with f_e frozen at the routed counts.
  auto losses = [&](const Vec& x) {
    const RefRoute r = ref_route(x, N, E, K);
    double lb = 0, zl = 0;
    for (int64_t e = 0; e < E; ++e) {
      double P = 0;
      for (int64_t n = 0; n < N; ++n) P += r.probs[static_cast<size_t>(n * E + e)] / N;
      lb += E * (static_cast<double>(counts[static_cast<size_t>(e)]) / (N * K)) * P;
    }
    for (int64_t n = 0; n < N; ++n) {
      double mx = -1e300, s = 0;
      for (int64_t e = 0; e < E; ++e) mx = std::max(mx, x[static_cast<size_t>(n * E + e)]);
      for (int64_t e = 0; e < E; ++e) s += std::exp(x[static_cast<size_t>(n * E + e)] - mx);
      zl += std::pow(mx + std::log(s), 2) / N;
    }
    return std::pair{lb, zl};
  };
  const auto [lb, zl] = losses(z.d());
  EXPECT_NEAR(aux.load_balance, lb, 1e-6);
  EXPECT_NEAR(aux.z, zl, 1e-5);
  const Vec fd = fd_grad(
      [&](const Vec& x) {
        const auto [a, b] = losses(x);
        return scale * (lb_coef * a + z_coef * b);
      },
      z.d());
  EXPECT_LT(rel_err(dz.v, fd), 1e-4);
  // Perfect balance gives LB = 1 (uniform probabilities, equal counts).
  HostF32 flat({4, 4}), fp({4, 4}), fw({4, 1});
  HostI32 fi({4, 1});
  for (int64_t n = 0; n < 4; ++n)
    flat[static_cast<size_t>(n * 4 + n)] = 1e-3f;  // token n -> expert n
  k::moe_route_forward(fp.t, fi.t, fw.t, flat.t);
  EXPECT_NEAR(k::moe_aux_losses(flat.t, fp.t, fi.t, counts, Tensor(), 1, 1, 1).load_balance, 1.0,
              1e-3);
}

TEST(MoePermute, StableDroplessAndCapacity) {
  HostI32 idx({4, 2});
  const int32_t ids[] = {0, 1, 1, 2, 0, 2, 2, 0};
  std::copy(std::begin(ids), std::end(ids), idx.v.begin());
  HostI32 pos({8}), rt({8});
  std::vector<int64_t> off;
  EXPECT_EQ(k::moe_permute(pos.t, rt.t, off, idx.t, 3, 0), 0);
  EXPECT_EQ(off, (std::vector<int64_t>{0, 3, 5, 8}));
  EXPECT_EQ(pos.v, (std::vector<int32_t>{0, 3, 4, 5, 1, 6, 7, 2}));
  EXPECT_EQ(rt.v, (std::vector<int32_t>{0, 2, 3, 0, 1, 1, 2, 3}));
  // Capacity 2: expert 0 keeps tokens 0 and 2 (drops token 3's pair), expert 2 drops token 3's.
  EXPECT_EQ(k::moe_permute(pos.t, rt.t, off, idx.t, 3, 2), 2);
  EXPECT_EQ(off, (std::vector<int64_t>{0, 2, 4, 6}));
  EXPECT_EQ(pos.v, (std::vector<int32_t>{0, 2, 3, 4, 1, 5, -1, -1}));
  // An expert that receives nothing (E = 5 here) has an empty range.
  EXPECT_EQ(k::moe_permute(pos.t, rt.t, off, idx.t, 5, 0), 0);
  EXPECT_EQ(off, (std::vector<int64_t>{0, 3, 5, 8, 8, 8}));
}

TEST(MoePermute, AllTokensToOneExpertAndKEqualsE) {
  const int64_t N = 5;
  HostI32 one({N, 1}), pos({N}), rt({N});
  std::fill(one.v.begin(), one.v.end(), 2);
  std::vector<int64_t> off;
  EXPECT_EQ(k::moe_permute(pos.t, rt.t, off, one.t, 3, 0), 0);
  EXPECT_EQ(off, (std::vector<int64_t>{0, 0, 0, 5}));
  EXPECT_EQ(k::moe_permute(pos.t, rt.t, off, one.t, 3, 2), 3);  // capacity overflow
  // K = E: every token visits every expert once.
  HostI32 all({N, 3}), pos3({N * 3}), rt3({N * 3});
  for (int64_t n = 0; n < N; ++n)
    for (int32_t e = 0; e < 3; ++e)
      all.v[static_cast<size_t>(n * 3 + e)] = (e + static_cast<int32_t>(n)) % 3;
  EXPECT_EQ(k::moe_permute(pos3.t, rt3.t, off, all.t, 3, 0), 0);
  EXPECT_EQ(off, (std::vector<int64_t>{0, 5, 10, 15}));
  std::vector<int32_t> sorted = pos3.v;
  std::sort(sorted.begin(), sorted.end());
  for (int32_t i = 0; i < 15; ++i) EXPECT_EQ(sorted[static_cast<size_t>(i)], i);
}

TEST(MoeCombine, GatherCombineAndTheirBackward) {
  const int64_t N = 4, K = 2, C = 3;
  HostI32 idx({N, K});
  const int32_t ids[] = {0, 1, 1, 2, 0, 2, 2, 0};
  std::copy(std::begin(ids), std::end(ids), idx.v.begin());
  HostI32 pos({N * K}), rt({N * K});
  std::vector<int64_t> off;
  k::moe_permute(pos.t, rt.t, off, idx.t, 3, 2);  // two pairs dropped
  const int64_t rows = off.back();
  const HostF32 x = randn({N, C}, 30), outp = randn({N * K, C}, 31), w = randn({N, K}, 32);
  HostF32 xp({N * K, C}), y({N, C});
  k::moe_gather(xp.t, x.t, rt.t, rows);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < C; ++c)
      EXPECT_EQ(xp[static_cast<size_t>(r * C + c)],
                x[static_cast<size_t>(rt.v[static_cast<size_t>(r)] * C + c)]);
  k::moe_combine_forward(y.t, outp.t, w.t, pos.t);
  auto f = [&](const Vec& o, const Vec& wv) {
    Vec out(static_cast<size_t>(N * C), 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = 0; j < K; ++j) {
        const int32_t r = pos.v[static_cast<size_t>(n * K + j)];
        if (r < 0) continue;
        for (int64_t c = 0; c < C; ++c)
          out[static_cast<size_t>(n * C + c)] +=
              wv[static_cast<size_t>(n * K + j)] * o[static_cast<size_t>(r * C + c)];
      }
    return out;
  };
  EXPECT_LT(rel_err(y.v, f(outp.d(), w.d())), 1e-6);
  const HostF32 dy = randn({N, C}, 33);
  HostF32 doutp({N * K, C}), dw({N, K}), dx({N, C});
  k::moe_combine_backward(doutp.t, dw.t, dy.t, outp.t, w.t, pos.t);
  EXPECT_LT(
      rel_err(doutp.v, fd_grad([&](const Vec& o) { return dot(f(o, w.d()), dy.d()); }, outp.d())),
      1e-6);
  EXPECT_LT(
      rel_err(dw.v, fd_grad([&](const Vec& wv) { return dot(f(outp.d(), wv), dy.d()); }, w.d())),
      1e-6);
  // Gather backward: dx[n] = sum of the rows that came from token n.
  k::moe_gather_backward(dx.t, doutp.t, pos.t);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      double s = 0;
      for (int64_t j = 0; j < K; ++j) {
        const int32_t r = pos.v[static_cast<size_t>(n * K + j)];
        if (r >= 0) s += doutp[static_cast<size_t>(r * C + c)];
      }
      EXPECT_NEAR(dx[static_cast<size_t>(n * C + c)], s, 1e-6);
    }
}

}  // namespace
}  // namespace sparta::test

namespace sparta::test {
namespace {

// The grouped expert GEMM against a double reference per expert, with an empty expert and
// uneven row counts; the backward accumulates (+=) into dinp and dweight.
TEST(GroupedMatmul, ExpertBlocksMatchReference) {
  const int64_t E = 4, IC = 6, OC = 5;
  const std::vector<int64_t> off = {0, 3, 3, 10, 12};
  const int64_t R = off.back();
  const HostF32 x = randn({R, IC}, 31), w = randn({E, OC, IC}, 32), dy = randn({R, OC}, 33);
  HostF32 y({R, OC}), dx = randn({R, IC}, 34), dw = randn({E, OC, IC}, 35);
  const HostF32 dx0 = dx, dw0 = dw;
  k::grouped_matmul_forward(y.t, x.t, w.t, off);
  k::grouped_matmul_backward(dx.t, dw.t, dy.t, x.t, w.t, off);
  Vec ry(static_cast<size_t>(R * OC)), rdx(dx0.d()), rdw(dw0.d());
  for (int64_t e = 0; e < E; ++e)
    for (int64_t r = off[static_cast<size_t>(e)]; r < off[static_cast<size_t>(e + 1)]; ++r)
      for (int64_t o = 0; o < OC; ++o)
        for (int64_t i = 0; i < IC; ++i) {
          const double wv = w[static_cast<size_t>((e * OC + o) * IC + i)];
          ry[static_cast<size_t>(r * OC + o)] += x[static_cast<size_t>(r * IC + i)] * wv;
          rdx[static_cast<size_t>(r * IC + i)] += dy[static_cast<size_t>(r * OC + o)] * wv;
          rdw[static_cast<size_t>((e * OC + o) * IC + i)] +=
              dy[static_cast<size_t>(r * OC + o)] * x[static_cast<size_t>(r * IC + i)];
        }
  EXPECT_LT(rel_err(y.v, ry), 1e-6);
  EXPECT_LT(rel_err(dx.v, rdx), 1e-6);
  EXPECT_LT(rel_err(dw.v, rdw), 1e-6);
  // The empty expert's weight gradient is untouched.
  for (int64_t j = 0; j < OC * IC; ++j)
    EXPECT_EQ(dw[static_cast<size_t>(OC * IC + j)], dw0[static_cast<size_t>(OC * IC + j)]);
}

// GRU cell: forward against the textbook equations in double, backward against finite
// differences of a scalar projection of h.
TEST(GruCell, ForwardAndBackwardMatchReference) {
  const int64_t N = 3, P = 4;
  const HostF32 gi = randn({N, 3 * P}, 40), gh = randn({N, 3 * P}, 41),
                bih = randn({3 * P}, 42, 0.3f), bhh = randn({3 * P}, 43, 0.3f),
                hp = randn({N, P}, 44), dh = randn({N, P}, 45);
  HostF32 h({N, P}), saved({N, 4 * P});
  k::gru_cell_forward(h.t, saved.t, gi.t, gh.t, bih.t, bhh.t, hp.t);
  auto ref = [&](const Vec& a, const Vec& b, const Vec& bi, const Vec& bh, const Vec& hprev) {
    Vec out(static_cast<size_t>(N * P));
    auto sg = [](double x) { return 1 / (1 + std::exp(-x)); };
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = 0; j < P; ++j) {
        auto at = [&](const Vec& v, int64_t g) {
          return v[static_cast<size_t>(n * 3 * P + g * P + j)];
        };
        auto bb = [&](const Vec& v, int64_t g) { return v[static_cast<size_t>(g * P + j)]; };
        const double r = sg(at(a, 0) + bb(bi, 0) + at(b, 0) + bb(bh, 0));
        const double z = sg(at(a, 1) + bb(bi, 1) + at(b, 1) + bb(bh, 1));
        const double nn = std::tanh(at(a, 2) + bb(bi, 2) + r * (at(b, 2) + bb(bh, 2)));
        out[static_cast<size_t>(n * P + j)] =
            (1 - z) * nn + z * hprev[static_cast<size_t>(n * P + j)];
      }
    return out;
  };
  EXPECT_LT(rel_err(h.v, ref(gi.d(), gh.d(), bih.d(), bhh.d(), hp.d())), 1e-6);
  HostF32 dgi({N, 3 * P}), dgh({N, 3 * P}), dbih({3 * P}), dbhh({3 * P}), dhp({N, P});
  k::gru_cell_backward(dgi.t, dgh.t, dbih.t, dbhh.t, dhp.t, dh.t, saved.t, hp.t);
  const std::vector<Vec> in = {gi.d(), gh.d(), bih.d(), bhh.d(), hp.d()};
  auto grad_of = [&](size_t which) {
    return fd_grad(
        [&](const Vec& x) {
          std::vector<Vec> v = in;
          v[which] = x;
          return dot(ref(v[0], v[1], v[2], v[3], v[4]), dh.d());
        },
        in[which]);
  };
  EXPECT_LT(rel_err(dgi.v, grad_of(0)), 1e-4);
  EXPECT_LT(rel_err(dgh.v, grad_of(1)), 1e-4);
  EXPECT_LT(rel_err(dbih.v, grad_of(2)), 1e-4);
  EXPECT_LT(rel_err(dbhh.v, grad_of(3)), 1e-4);
  EXPECT_LT(rel_err(dhp.v, grad_of(4)), 1e-4);
}

}  // namespace
}  // namespace sparta::test
