// The structure of a decoder-only language model, as data. Built from the [model] section of the
// config (trainer/config.h validates every key); layers never branch on anything else.
#pragma once

#include <cstdint>
#include <string>

namespace sparta::models {

enum class NormType { layernorm, rmsnorm };
enum class NormPlacement { pre, post, mix };
enum class PosEncoding { learned, rope };
enum class FfnType { swiglu, gelu };

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

  int head_dim() const { return d_model / n_heads; }
  // K = number of Post-LN layers (Mix-LN spec section 1): pre -> 0, post -> L, mix -> floor(aL).
  int post_ln_layers() const;
  bool layer_is_post_ln(int layer) const { return layer < post_ln_layers(); }
};

const char* to_string(NormType v);
const char* to_string(NormPlacement v);
const char* to_string(PosEncoding v);
const char* to_string(FfnType v);

}  // namespace sparta::models
