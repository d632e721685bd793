// The whole model on the GPU against the same model on the CPU: same seed, same batch; the loss
// and every parameter gradient must agree to fp32 accuracy, for each norm placement. Then a few
// AdamW steps on both devices must stay together. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/ops.h"
#include "kernels/rng.h"
#include "tests/common/device_util.h"
#include "tests/common/model_util.h"
#include "trainer/models/transformer.h"
#include "trainer/optim/adamw.h"

namespace sparta::test {
namespace {

namespace k = sparta::kernels;
using models::ModelConfig;
using models::NormPlacement;

TEST(CudaModel, LossAndGradientsMatchTheCpuModel) {
  SPARTA_REQUIRE_GPU();
  struct Case {
    NormPlacement placement;
    int experts;
    const char* router;
    const char* uoe = nullptr;  // "clean" / "paper": a UoE model
  };
  for (const Case cs :
       {Case{NormPlacement::pre, 0, "linear"}, Case{NormPlacement::post, 0, "linear"},
        Case{NormPlacement::mix, 0, "linear"}, Case{NormPlacement::mix, 5, "linear"},
        Case{NormPlacement::pre, 4, "gru"}, Case{NormPlacement::mix, 0, "linear", "clean"},
        Case{NormPlacement::pre, 0, "linear", "paper"}}) {
    const NormPlacement placement = cs.placement;
    ModelConfig c;
    c.moe_experts = cs.experts;
    c.moe_router = cs.router;
    c.moe_gru_dim = 16;
    c.moe_expert_ffn = 32;
    c.moe_z_loss_coef = 0.01;
    c.n_layers = 3;
    c.d_model = 64;
    c.n_heads = 4;
    c.d_ff = 96;
    c.vocab_size = 101;
    c.seq_len = 40;
    c.norm_placement = placement;
    c.mixln_post_layers = 1;
    if (cs.uoe) {
      c.uoe = true;
      c.uoe_mode = cs.uoe;
    }
    models::Transformer cpu(c, 3, k::Device::cpu(), 9), gpu(c, 3, k::Device::cuda(0), 9);
    std::vector<int32_t> tok(3 * 40), tgt(3 * 40);
    for (size_t i = 0; i < tok.size(); ++i) {
      tok[i] = static_cast<int32_t>(k::philox(1, 2, i)[0] % 101);
      tgt[i] = static_cast<int32_t>(k::philox(1, 2, i)[1] % 101);
    }
    cpu.set_batch(tok.data(), tgt.data());
    gpu.set_batch(tok.data(), tgt.data());
    cpu.zero_grads();
    gpu.zero_grads();
    const float lc = cpu.forward_backward(1.0f), lg = gpu.forward_backward(1.0f);
    EXPECT_NEAR(lc, lg, 1e-5 * std::fabs(lc)) << models::to_string(placement);
    for (size_t i = 0; i < cpu.params().size(); ++i)
      EXPECT_LT(rel_err(host_copy(gpu.params()[i].g), host_copy(cpu.params()[i].g)), 1e-4)
          << models::to_string(placement) << " " << cpu.params()[i].name;

    trainer::AdamW oc(cpu.params(), cpu.flat_params(), {0.9, 0.95, 1e-8, 0.1});
    trainer::AdamW og(gpu.params(), gpu.flat_params(), {0.9, 0.95, 1e-8, 0.1});
    for (int64_t s = 1; s <= 3; ++s) {
      oc.step(1e-3, 1.0, s);
      og.step(1e-3, 1.0, s);
      cpu.zero_grads();
      gpu.zero_grads();
      const float a = cpu.forward_backward(1.0f), b = gpu.forward_backward(1.0f);
      EXPECT_NEAR(a, b, 1e-4 * std::fabs(a)) << "after step " << s;
    }
  }
}

}  // namespace
}  // namespace sparta::test
