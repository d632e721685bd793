#include "trainer/models/model_config.h"

#include <cmath>
#include <sstream>

#include "kernels/check.h"

namespace sparta::models {

parallel::MeshModelLimits mesh_limits(const ModelConfig& m) {
  parallel::MeshModelLimits lim;
  lim.n_heads = m.n_heads;
  lim.d_ff = m.d_ff;
  lim.vocab_size = m.vocab_size;
  lim.seq_len = m.seq_len;
  lim.moe_experts = m.moe_experts;
  lim.uoe = m.uoe;
  lim.uoe_attn_experts = m.uoe ? m.uoe_attn_experts_or_default() : 0;
  lim.uoe_mlp_experts = m.uoe ? m.uoe_mlp_experts : 0;
  lim.learned_pos = m.pos == PosEncoding::learned;
  return lim;
}

double train_flops_per_token(const ModelConfig& m) {
  const double C = m.d_model, F = m.d_ff, T = m.seq_len, V = m.vocab_size;
  const double FC = m.ffn == FfnType::swiglu ? 2 * F : F;
  const std::vector<bool> moe = m.moe_layer_mask();
  double trained = V * C, frozen = 0, attn_width = 0;  // MACs per token; attention width
  for (int l = 0; l < m.n_layers; ++l) {
    if (m.uoe) {
      const double Ea = m.uoe_attn_experts_or_default(), ka = m.uoe_attn_top_k_or_default();
      const double Em = m.uoe_mlp_experts, km = m.uoe_mlp_top_k, Fm = F / Em;
      const double FCm = m.ffn == FfnType::swiglu ? 2 * Fm : Fm, Wa = C / Ea;
      trained += ka * 4 * Wa * C + km * (FCm * C + C * Fm);
      frozen += (Ea + Em) * C;
      attn_width += ka * Wa;
    } else if (moe[static_cast<size_t>(l)]) {
      const double E = m.moe_experts, K = m.moe_top_k, Fe = m.expert_ffn(), P = m.moe_gru_dim;
      const double FCe = m.ffn == FfnType::swiglu ? 2 * Fe : Fe;
      trained += 4 * C * C + K * (FCe * C + C * Fe);
      trained += m.moe_router == "gru" ? P * C + 6 * P * P + E * P : E * C;
      attn_width += C;
    } else {
      trained += 4 * C * C + FC * C + C * F;
      attn_width += C;
    }
  }
  // Causal attention: QK^T and PV, 2 multiply-adds per (query, key, width) pair.
  const double attention = 2 * attn_width * (T + 1) / 2;
  return 3 * 2 * (trained + attention) + 2 * frozen;
}

int ModelConfig::post_ln_layers() const {
  switch (norm_placement) {
    case NormPlacement::pre:
      return 0;
    case NormPlacement::post:
      return n_layers;
    case NormPlacement::mix:
      if (mixln_post_layers >= 0) return mixln_post_layers;
      // floor(alpha * L) with a tolerance so that e.g. 0.25 * 12 is 3 despite binary rounding.
      return static_cast<int>(std::floor(mixln_alpha * n_layers + 1e-9));
  }
  return 0;
}

std::vector<bool> ModelConfig::moe_layer_mask() const {
  std::vector<bool> mask(static_cast<size_t>(n_layers), false);
  if (moe_experts <= 0) return mask;
  if (moe_layers == "all") {
    mask.assign(mask.size(), true);
  } else if (moe_layers == "every-other") {
    for (int l = 1; l < n_layers; l += 2) mask[static_cast<size_t>(l)] = true;
  } else {
    std::stringstream ss(moe_layers);
    std::string item;
    while (std::getline(ss, item, ',')) {
      size_t used = 0;
      int l = -1;
      try {
        l = std::stoi(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != item.size() || l < 0 || l >= n_layers)
        SPARTA_USAGE_ERROR(
            "moe.layers = \"{}\": '{}' is not a layer index in [0, {}); use \"all\", "
            "\"every-other\" or a list like \"0,2,5\"",
            moe_layers, item, n_layers);
      mask[static_cast<size_t>(l)] = true;
    }
  }
  return mask;
}

const char* to_string(NormType v) {
  return v == NormType::layernorm ? "layernorm" : "rmsnorm";
}
const char* to_string(NormPlacement v) {
  return v == NormPlacement::pre ? "pre" : v == NormPlacement::post ? "post" : "mix";
}
const char* to_string(PosEncoding v) {
  return v == PosEncoding::learned ? "learned" : "rope";
}
const char* to_string(FfnType v) {
  return v == FfnType::swiglu ? "swiglu" : "gelu";
}

}  // namespace sparta::models
