// Small models the model-level tests share (trainer-level tests use trainer_util.h): configs
// sized for finite differences, random batches from the counter-based RNG, host copies.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/arena.h"
#include "kernels/rng.h"
#include "trainer/models/transformer.h"

namespace sparta::test {

// 3 layers, C 16, H 2, F 24, V 23, T 8; inits large enough that every path carries gradient.
inline models::ModelConfig toy_model_config() {
  models::ModelConfig c;
  c.n_layers = 3;
  c.d_model = 16;
  c.n_heads = 2;
  c.d_ff = 24;
  c.vocab_size = 23;
  c.seq_len = 8;
  c.init_std = 0.3f;
  c.embed_init_std = 0.5f;
  return c;
}

// A UoE model: 2 layers (1 Post-LN + 1 Pre-LN), C 16, H 4 in 2 attention experts, 4 MLP experts.
inline models::ModelConfig toy_uoe_config() {
  models::ModelConfig c;
  c.n_layers = 2;
  c.d_model = 16;
  c.n_heads = 4;
  c.d_ff = 24;
  c.vocab_size = 29;
  c.seq_len = 8;
  c.norm_placement = models::NormPlacement::mix;
  c.mixln_post_layers = 1;
  c.init_std = 0.3f;
  c.embed_init_std = 0.5f;
  c.uoe = true;
  c.uoe_attn_experts = 2;  // two heads per expert
  c.uoe_mlp_experts = 4;
  return c;
}

// Tokens and targets of a whole batch drawn from Philox stream `stream`.
inline void random_batch(models::Transformer& m, uint64_t stream) {
  const auto& c = m.config();
  const size_t n = static_cast<size_t>(m.batch()) * static_cast<size_t>(c.seq_len);
  std::vector<int32_t> tok(n), tgt(n);
  for (size_t i = 0; i < n; ++i) {
    tok[i] = static_cast<int32_t>(kernels::philox(7, stream, i)[0] %
                                  static_cast<uint32_t>(c.vocab_size));
    tgt[i] = static_cast<int32_t>(kernels::philox(7, stream, i)[1] %
                                  static_cast<uint32_t>(c.vocab_size));
  }
  m.set_batch(tok.data(), tgt.data());
}

// Any device's f32 tensor on the host.
inline std::vector<double> host_copy(const kernels::Tensor& t) {
  std::vector<float> h(static_cast<size_t>(t.numel()));
  kernels::Tensor ht = t;
  ht.device = kernels::Device::cpu();
  ht.data = h.data();
  kernels::copy(ht, t);
  return {h.begin(), h.end()};
}

}  // namespace sparta::test
