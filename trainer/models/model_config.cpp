#include "trainer/models/model_config.h"

#include <cmath>

namespace sparta::models {

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
