// Every context-parallel algorithm at the attention module (trainer/models/attention.h), under
// mpirun with 2 and 4 ranks (ctest label mpi): Ulysses (cp 2, 4), ring (cp 2, 4) and hybrid
// (cp 4 = Ulysses 2 x ring 2). Each rank runs the module on its own tokens (Dims::token_position)
// and must match the module run by one process on the whole sequence: the output rows, the
// input gradient rows, and the weight gradients summed over cp (spec
// context-parallel-attention.md T3), for T in {256, 1024, 4096}. RoPE makes positions matter.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "kernels/arena.h"
#include "kernels/ops.h"
#include "parallel/mesh.h"
#include "parallel/process_groups.h"
#include "tests/common/model_util.h"
#include "tests/common/mpi_main.h"
#include "tests/common/test_util.h"
#include "trainer/models/attention.h"

namespace sparta::test {
namespace {

namespace k = sparta::kernels;
namespace models = sparta::models;

std::unique_ptr<parallel::Comm> g_world;

// One attention layer of its own (parameters, activations, scratch) on `groups`.
struct Layer {
  Layer(const models::ModelConfig& cfg, const parallel::ProcessGroups& groups)
      : d(models::Dims::of(cfg, 1, groups)), acts("cp test") {
    tp = std::make_unique<models::TensorParallel>(groups.tp, acts, d);
    scratch = std::make_unique<models::AttentionScratch>(acts, d, groups.cp_ring.dev);
    attn = std::make_unique<models::Attention>(ps, acts, cfg, d, groups, *tp, *scratch, 0);
    arena = acts.commit(k::Device::cpu());
    ps.carve(k::Device::cpu());
    ps.init(17);
  }
  models::Dims d;
  models::ParamSet ps;
  k::ArenaPlan acts;
  std::unique_ptr<models::TensorParallel> tp;
  std::unique_ptr<models::AttentionScratch> scratch;
  std::unique_ptr<models::Attention> attn;
  k::Arena arena;
};

std::vector<double> rows_of(const std::vector<float>& full, const models::Dims& d, int64_t C) {
  std::vector<double> out;
  for (int64_t i = 0; i < d.T; ++i) {
    const auto at = full.begin() + d.token_position(i) * C;
    out.insert(out.end(), at, at + C);
  }
  return out;
}

struct Algo {
  std::string name;
  parallel::CpAlgo algo;
  int ulysses;  // hybrid's Ulysses degree
  int ranks;    // the world size it runs at (0: any)
};

class CpAttention : public ::testing::TestWithParam<int64_t> {};

TEST_P(CpAttention, EveryAlgorithmMatchesOneProcess) {
  parallel::Comm& world = *g_world;
  const int P = world.size();
  models::ModelConfig cfg;
  cfg.n_layers = 1;
  cfg.d_model = 32;
  cfg.n_heads = 4;
  cfg.seq_len = static_cast<int>(GetParam());
  cfg.init_std = 0.3f;
  const int64_t Tf = cfg.seq_len, C = cfg.d_model;
  const HostF32 x = randn({Tf, C}, 71), dy = randn({Tf, C}, 72);

  const parallel::ProcessGroups alone;
  Layer ref(cfg, alone);
  HostF32 ref_dx({Tf, C});
  const std::vector<double> ref_y = host_copy(ref.attn->forward(x.t));
  const std::vector<float> ref_yf(ref_y.begin(), ref_y.end());
  ref.attn->backward(x.t, dy.t, ref_dx.t);

  for (const Algo& a : {Algo{"ulysses", parallel::CpAlgo::ulysses, 0, 0},
                        Algo{"ring", parallel::CpAlgo::ring, 0, 0},
                        Algo{"hybrid 2x2", parallel::CpAlgo::hybrid, 2, 4}}) {
    if (a.ranks > 0 && a.ranks != P) continue;
    parallel::MeshLayout layout;
    layout.cp = P;
    layout.dp = 1;
    layout.cp_algo = a.algo;
    layout.cp_ulysses = a.ulysses;
    const parallel::ProcessMesh mesh(layout, P, models::mesh_limits(cfg));
    const parallel::ProcessGroups groups(mesh, {world.rank(), P, "mpirun"}, k::Device::cpu(), "mpi",
                                         60);
    Layer mine(cfg, groups);
    const models::Dims& d = mine.d;
    HostF32 lx({d.T, C}), ldy({d.T, C}), ldx({d.T, C});
    for (int64_t i = 0; i < d.T; ++i)
      for (int64_t j = 0; j < C; ++j) {
        lx.v[static_cast<size_t>(i * C + j)] =
            x.v[static_cast<size_t>(d.token_position(i) * C + j)];
        ldy.v[static_cast<size_t>(i * C + j)] =
            dy.v[static_cast<size_t>(d.token_position(i) * C + j)];
      }
    const std::vector<double> y = host_copy(mine.attn->forward(lx.t));
    mine.attn->backward(lx.t, ldy.t, ldx.t);
    const std::string where = a.name + " cp" + std::to_string(P) + " rank " +
                              std::to_string(world.rank()) + " T " + std::to_string(Tf);
    EXPECT_LT(rel_err(y, rows_of(ref_yf, d, C)), 1e-5) << where;
    EXPECT_LT(rel_err(ldx.v, rows_of(ref_dx.v, d, C)), 1e-4) << where;
    // Each rank's weight gradient is its tokens' share: summed over cp it is the whole's.
    for (size_t p = 0; p < mine.ps.params().size(); ++p) {
      const k::Tensor g = mine.ps.params()[p].g;
      groups.cp.host->all_reduce(g, parallel::ReduceOp::sum);
      EXPECT_LT(rel_err(host_copy(g), host_copy(ref.ps.params()[p].g)), 1e-4)
          << where << " " << mine.ps.params()[p].name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(SeqLens, CpAttention, ::testing::Values(256, 1024, 4096),
                         ::testing::PrintToStringParamName());

}  // namespace
}  // namespace sparta::test

int main(int argc, char** argv) {
  return sparta::test::run_mpi_tests(argc, argv, sparta::test::g_world);
}
