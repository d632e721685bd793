// The structure of a decoder-only language model, as data. Built from the [model] section of the
// config (trainer/config.h validates every key); layers never branch on anything else.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "parallel/mesh.h"

namespace sparta::models {

enum class NormType { layernorm, rmsnorm };
enum class NormPlacement { pre, post, mix };
enum class PosEncoding { learned, rope };
enum class FfnType { swiglu, gelu };
// train.recompute: which activations the backward recomputes instead of keeping (never changes
// the function: losses and gradients are bit-identical). attention: each layer's token mixer;
// block: the whole block from its input, keeping only the block outputs (and RMoE's state).
enum class Recompute { none, attention, block };

struct ModelConfig {
  int n_layers = 4;       // L
  int d_model = 128;      // C
  int n_heads = 4;        // H (D = C / H)
  int d_ff = 512;         // F: hidden width of the FFN (SwiGLU: of each of gate and up)
  int vocab_size = 4096;  // V
  int seq_len = 128;      // T (maximum context)
  NormType norm = NormType::rmsnorm;
  NormPlacement norm_placement = NormPlacement::mix;
  double mixln_alpha = 0.25;   // mix: the first floor(alpha * L) layers are Post-LN
  int mixln_post_layers = -1;  // mix: explicit K, overrides alpha when >= 0
  PosEncoding pos = PosEncoding::rope;
  FfnType ffn = FfnType::swiglu;
  bool tie_embeddings = false;
  float rope_theta = 10000.0f;
  float norm_eps = 1e-6f;
  float init_std = 0.02f;        // linear layers
  float embed_init_std = 0.02f;  // token (and position) embeddings

  // Top-k mixture of experts in place of the dense FFN ([moe] section).
  int moe_experts = 0;              // E; 0: every FFN is dense
  int moe_top_k = 2;                // K
  int moe_expert_ffn = 0;           // F_e, hidden width of one expert; 0: d_ff
  std::string moe_layers = "all";   // "all", "every-other" (1, 3, 5, ...), or a list "0,2,5"
  double moe_capacity_factor = 0;   // 0: dropless; else capacity = ceil(cf * N * K / E) per expert
  double moe_aux_loss_coef = 0.01;  // Switch load-balance loss weight
  double moe_z_loss_coef = 0.0;     // router z-loss weight
  // RMoE (../shared/specs/rmoe.md): "gru" routes from a GRU state carried across the MoE layers
  // (one GRU shared by all of them, a projector and a router matrix per layer); "linear" is the
  // standard per-layer router.
  std::string moe_router = "linear";
  int moe_gru_dim = 128;  // GRU width p

  // Union of Experts ([uoe] section, ../shared/specs/uoe.md): every layer's attention becomes
  // selective multi-head attention (experts = groups of heads, tokens choose attn_top_k of them)
  // and its FFN a union of MLP experts (experts = column/row slices of the d_ff-wide FFN).
  // Routers are rank-only and frozen (spec section 1.1). Exclusive with [moe].
  bool uoe = false;
  std::string uoe_mode = "clean";   // "clean" (causal, fillers masked) or "paper" (released code)
  int uoe_attn_experts = 0;         // E_a; 0: n_heads (one head per expert)
  int uoe_attn_top_k = 0;           // k_a; 0: E_a / 2
  double uoe_attn_capacity = 1.25;  // clean: T = min(L, ceil(c * L * k_a / E_a)); paper: max count
  int uoe_mlp_experts = 4;          // E_m (divides d_ff)
  int uoe_mlp_top_k = 2;            // k_m
  // clean: T = min(L, ceil(c * L * k_m / E_m)) per sequence; paper: floor(c * B * k_m / E_m) per
  // time step (the released code's 0.5 * B for k_m / E_m = 1/2).
  double uoe_mlp_capacity = 1.0;

  int head_dim() const { return d_model / n_heads; }
  // K = number of Post-LN layers (Mix-LN spec section 1): pre -> 0, post -> L, mix -> floor(aL).
  int post_ln_layers() const;
  bool layer_is_post_ln(int layer) const { return layer < post_ln_layers(); }
  // Which layers carry an MoE FFN (all false when moe_experts == 0). A malformed moe.layers or
  // one naming a missing layer is a usage error.
  std::vector<bool> moe_layer_mask() const;
  int expert_ffn() const { return moe_expert_ffn > 0 ? moe_expert_ffn : d_ff; }
  int uoe_attn_experts_or_default() const {
    return uoe_attn_experts > 0 ? uoe_attn_experts : n_heads;
  }
  int uoe_attn_top_k_or_default() const {
    return uoe_attn_top_k > 0 ? uoe_attn_top_k : std::max(1, uoe_attn_experts_or_default() / 2);
  }
};

// Model FLOPs of one training token (forward + backward: 3 x 2 FLOPs per multiply-add of every
// weight the token meets, frozen UoE routers forward only, plus causal attention over an average
// (T + 1) / 2 positions): the numerator of MFU.
double train_flops_per_token(const ModelConfig& cfg);

// What this model asks of a process layout (parallel::validate_model_support).
parallel::MeshModelLimits mesh_limits(const ModelConfig& cfg);

const char* to_string(NormType v);
const char* to_string(NormPlacement v);
const char* to_string(PosEncoding v);
const char* to_string(FfnType v);

}  // namespace sparta::models
