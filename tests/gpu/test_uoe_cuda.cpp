// The CUDA UoE stages against the CPU reference on the same inputs: slot maps (identical, the
// spec's T10 across devices), RoPE at explicit positions, grouped biases. Skipped without a GPU.
#include <gtest/gtest.h>

#include "kernels/moe.h"
#include "kernels/uoe.h"
#include "tests/common/device_util.h"

namespace sparta::test {
namespace {

namespace k = sparta::kernels;

std::vector<int32_t> i32_host(const Tensor& d) {
  std::vector<int32_t> h(static_cast<size_t>(d.numel()));
  Tensor ht = d;
  ht.device = k::Device::cpu();
  ht.data = h.data();
  k::copy(ht, d);
  return h;
}

TEST(CudaUoe, SlotMapsAreIdenticalToTheCpu) {
  SPARTA_REQUIRE_GPU();
  const int64_t B = 4, L = 33, E = 6, K = 3, N = B * L;
  const HostF32 z = randn({N, E}, 1, 2.0f);
  HostF32 probs({N, E}), w({N, K});
  HostI32 idx({N, K});
  k::moe_route_forward(probs.t, idx.t, w.t, z.t);
  DeviceTensor gidx(idx), gprobs(probs);
  struct Case {
    k::UoeGrouping g;
    k::UoeMode mode;
    int64_t slots;
  };
  for (const Case cs :
       {Case{{B, L, L, 1}, k::UoeMode::clean, 9}, Case{{L, B, 1, L}, k::UoeMode::clean, 2},
        Case{{B, L, L, 1}, k::UoeMode::paper, 0}, Case{{L, B, 1, L}, k::UoeMode::paper, 2}}) {
    const int64_t cap = E * cs.g.groups * cs.g.items;
    HostI32 rt({cap}), pos({N * E}), sp({cap});
    DeviceTensor grt(rt), gpos(pos), gsp(sp);
    k::UoeAssignStats a, b;
    k::uoe_assign(rt.t, pos.t, sp.t, idx.t, probs.t, E, cs.g, cs.mode, cs.slots, a);
    k::uoe_assign(grt.t, gpos.t, gsp.t, gidx.t, gprobs.t, E, cs.g, cs.mode, cs.slots, b);
    EXPECT_EQ(a.slots, b.slots);
    EXPECT_EQ(a.members, b.members);
    EXPECT_EQ(a.admitted, b.admitted);
    const size_t used = static_cast<size_t>(E * cs.g.groups * a.slots);
    const auto grt_h = i32_host(grt.t), gsp_h = i32_host(gsp.t);
    EXPECT_EQ(std::vector<int32_t>(grt_h.begin(), grt_h.begin() + static_cast<long>(used)),
              std::vector<int32_t>(rt.v.begin(), rt.v.begin() + static_cast<long>(used)));
    EXPECT_EQ(std::vector<int32_t>(gsp_h.begin(), gsp_h.begin() + static_cast<long>(used)),
              std::vector<int32_t>(sp.v.begin(), sp.v.begin() + static_cast<long>(used)));
    EXPECT_EQ(i32_host(gpos.t), pos.v);
  }
}

TEST(CudaUoe, RopeAtAndGroupedBias) {
  SPARTA_REQUIRE_GPU();
  const int64_t G = 5, H = 3, T = 17, D = 32;
  HostF32 x = randn({G, H, T, D}, 2);
  HostI32 pos({G, T});
  for (int64_t i = 0; i < G * T; ++i)
    pos.v[static_cast<size_t>(i)] = static_cast<int32_t>((i * 131) % 4000);
  DeviceTensor gx(x), gpos(pos);
  k::rope_at_forward(x.t, pos.t, 10000.0f);
  k::rope_at_forward(gx.t, gpos.t, 10000.0f);
  EXPECT_LT(rel_err(gx.to_host(), x.d()), 1e-6);
  k::rope_at_backward(x.t, pos.t, 10000.0f);
  k::rope_at_backward(gx.t, gpos.t, 10000.0f);
  EXPECT_LT(rel_err(gx.to_host(), x.d()), 1e-6);

  const int64_t E = 4, R = 300, C = 24;
  HostF32 y = randn({E, R, C}, 3), db({E, C});
  const HostF32 b = randn({E, C}, 4), dy = randn({E, R, C}, 5);
  DeviceTensor gy(y), gb(b), gdy(dy), gdb(db);
  k::grouped_bias_forward(y.t, b.t);
  k::grouped_bias_forward(gy.t, gb.t);
  EXPECT_EQ(gy.to_host(), y.d());
  k::grouped_bias_backward(db.t, dy.t);
  k::grouped_bias_backward(gdb.t, gdy.t);
  EXPECT_LT(rel_err(gdb.to_host(), db.d()), 1e-6);
}

}  // namespace
}  // namespace sparta::test
