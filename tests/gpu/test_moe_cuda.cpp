// The CUDA MoE stages and GRU cell against the CPU reference on the same inputs. Skipped without
// a GPU.
#include <gtest/gtest.h>

#include "kernels/moe.h"
#include "kernels/ops.h"
#include "tests/common/device_util.h"

namespace sparta::test {
namespace {

namespace k = sparta::kernels;

std::vector<double> i32_host(const DeviceTensor& d) {
  std::vector<int32_t> h(static_cast<size_t>(d.t.numel()));
  Tensor ht = d.t;
  ht.device = k::Device::cpu();
  ht.data = h.data();
  k::copy(ht, d.t);
  return {h.begin(), h.end()};
}

TEST(CudaMoe, RouteAuxPermuteGatherCombine) {
  SPARTA_REQUIRE_GPU();
  const int64_t N = 300, E = 7, K = 2, C = 24;
  const HostF32 z = randn({N, E}, 1, 2.0f);
  HostF32 probs({N, E}), w({N, K}), dz({N, E});
  HostI32 idx({N, K});
  k::moe_route_forward(probs.t, idx.t, w.t, z.t);
  DeviceTensor gz(z), gp(probs), gw(w), gi(idx), gdz(dz);
  k::moe_route_forward(gp.t, gi.t, gw.t, gz.t);
  EXPECT_LT(rel_err(gp.to_host(), probs.d()), 1e-6);
  EXPECT_EQ(i32_host(gi), std::vector<double>(idx.v.begin(), idx.v.end()));
  EXPECT_LT(rel_err(gw.to_host(), w.d()), 1e-6);

  const HostF32 dw = randn({N, K}, 2);
  DeviceTensor gdw(dw);
  k::moe_route_backward(dz.t, dw.t, probs.t, idx.t, w.t);
  k::moe_route_backward(gdz.t, gdw.t, gp.t, gi.t, gw.t);
  std::vector<int64_t> counts, gcounts;
  const auto a = k::moe_aux_losses(z.t, probs.t, idx.t, counts, dz.t, 0.3f, 0.2f, 0.5f);
  const auto b = k::moe_aux_losses(gz.t, gp.t, gi.t, gcounts, gdz.t, 0.3f, 0.2f, 0.5f);
  EXPECT_EQ(counts, gcounts);
  EXPECT_NEAR(a.load_balance, b.load_balance, 1e-9);
  EXPECT_NEAR(a.z, b.z, 1e-6 * a.z);
  EXPECT_NEAR(a.router_entropy, b.router_entropy, 1e-6);
  EXPECT_LT(rel_err(gdz.to_host(), dz.d()), 1e-5);

  for (int64_t capacity : {int64_t{0}, int64_t{70}}) {
    HostI32 pos({N * K}), rt({N * K}), gpos_h({N * K}), grt_h({N * K});
    DeviceTensor gpos(gpos_h), grt(grt_h);
    std::vector<int64_t> off, goff;
    EXPECT_EQ(k::moe_permute(pos.t, rt.t, off, idx.t, E, capacity),
              k::moe_permute(gpos.t, grt.t, goff, gi.t, E, capacity));
    EXPECT_EQ(off, goff);
    EXPECT_EQ(i32_host(gpos), std::vector<double>(pos.v.begin(), pos.v.end()));
    const int64_t rows = off.back();
    const HostF32 x = randn({N, C}, 3), outp = randn({N * K, C}, 4), dy = randn({N, C}, 5);
    HostF32 xp({N * K, C}), y({N, C}), doutp({N * K, C}), dwc({N, K}), dx({N, C});
    DeviceTensor gx(x), goutp(outp), gdy(dy), gxp(xp), gy(y), gdoutp(doutp), gdwc(dwc), gdx(dx);
    k::moe_gather(xp.t, x.t, rt.t, rows);
    k::moe_gather(gxp.t, gx.t, grt.t, rows);
    EXPECT_EQ(gxp.to_host(), xp.d());
    k::moe_combine_forward(y.t, outp.t, w.t, pos.t);
    k::moe_combine_forward(gy.t, goutp.t, gw.t, gpos.t);
    EXPECT_LT(rel_err(gy.to_host(), y.d()), 1e-6);
    k::moe_combine_backward(doutp.t, dwc.t, dy.t, outp.t, w.t, pos.t);
    k::moe_combine_backward(gdoutp.t, gdwc.t, gdy.t, goutp.t, gw.t, gpos.t);
    EXPECT_LT(rel_err(gdoutp.to_host(), doutp.d()), 1e-6);
    EXPECT_LT(rel_err(gdwc.to_host(), dwc.d()), 1e-5);
    k::moe_gather_backward(dx.t, doutp.t, pos.t);
    k::moe_gather_backward(gdx.t, gdoutp.t, gpos.t);
    EXPECT_LT(rel_err(gdx.to_host(), dx.d()), 1e-6);
  }
}

// The grouped expert GEMM (one cublasSgemmGroupedBatched call) against the CPU's per-expert BLAS,
// with an empty expert and uneven row counts.
TEST(CudaMoe, GroupedExpertGemm) {
  SPARTA_REQUIRE_GPU();
  const int64_t E = 5, IC = 48, OC = 40;
  const std::vector<int64_t> off = {0, 37, 37, 100, 101, 164};
  const int64_t R = off.back();
  const HostF32 x = randn({R, IC}, 20), w = randn({E, OC, IC}, 21), dy = randn({R, OC}, 22);
  HostF32 y({R, OC}), dx({R, IC}), dw({E, OC, IC});
  DeviceTensor gx(x), gw(w), gdy(dy), gy(y), gdx(dx), gdw(dw);
  k::grouped_matmul_forward(y.t, x.t, w.t, off);
  k::grouped_matmul_forward(gy.t, gx.t, gw.t, off);
  EXPECT_LT(rel_err(gy.to_host(), y.d()), 1e-5);
  k::grouped_matmul_backward(dx.t, dw.t, dy.t, x.t, w.t, off);
  k::grouped_matmul_backward(gdx.t, gdw.t, gdy.t, gx.t, gw.t, off);
  EXPECT_LT(rel_err(gdx.to_host(), dx.d()), 1e-5);
  EXPECT_LT(rel_err(gdw.to_host(), dw.d()), 1e-5);
}

TEST(CudaMoe, GruCell) {
  SPARTA_REQUIRE_GPU();
  const int64_t N = 50, P = 40;
  const HostF32 gi = randn({N, 3 * P}, 6), gh = randn({N, 3 * P}, 7), bih = randn({3 * P}, 8),
                bhh = randn({3 * P}, 9), hp = randn({N, P}, 10), dh = randn({N, P}, 11);
  HostF32 h({N, P}), saved({N, 4 * P}), dgi({N, 3 * P}), dgh({N, 3 * P}), dbih({3 * P}),
      dbhh({3 * P}), dhp({N, P});
  k::gru_cell_forward(h.t, saved.t, gi.t, gh.t, bih.t, bhh.t, hp.t);
  k::gru_cell_backward(dgi.t, dgh.t, dbih.t, dbhh.t, dhp.t, dh.t, saved.t, hp.t);
  DeviceTensor ggi(gi), ggh(gh), gbih(bih), gbhh(bhh), ghp(hp), gdh(dh), gh_(h), gsaved(saved),
      gdgi(dgi), gdgh(dgh), gdbih(HostF32({3 * P})), gdbhh(HostF32({3 * P})), gdhp(HostF32({N, P}));
  k::gru_cell_forward(gh_.t, gsaved.t, ggi.t, ggh.t, gbih.t, gbhh.t, ghp.t);
  k::gru_cell_backward(gdgi.t, gdgh.t, gdbih.t, gdbhh.t, gdhp.t, gdh.t, gsaved.t, ghp.t);
  EXPECT_LT(rel_err(gh_.to_host(), h.d()), 1e-6);
  EXPECT_LT(rel_err(gdgi.to_host(), dgi.d()), 1e-5);
  EXPECT_LT(rel_err(gdgh.to_host(), dgh.d()), 1e-5);
  EXPECT_LT(rel_err(gdbih.to_host(), dbih.d()), 1e-5);
  EXPECT_LT(rel_err(gdbhh.to_host(), dbhh.d()), 1e-5);
  EXPECT_LT(rel_err(gdhp.to_host(), dhp.d()), 1e-5);
}

}  // namespace
}  // namespace sparta::test
