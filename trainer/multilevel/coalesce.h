// The V-cycle's operators on whole models (../shared/specs/vcycle.md; README "Multi-level
// training"): coalesce C (large -> small: half the width and/or half the depth), de-coalesce D
// (small -> large) and interpolate I. They act on a model's full tensors by name (ModelState:
// what a checkpoint holds, gathered from any layout), so every layout gets the one-process
// result. The per-parameter rules are in coalesce.cpp's width_layout() and the README table:
// average on the output side and sum on the input side to coalesce, copy on the output side
// and halve on the input side to de-coalesce; layers average / copy in their pairs.
#pragma once

#include <map>
#include <string>

#include "trainer/models/model_config.h"
#include "trainer/multilevel/pairing.h"

namespace sparta::models {
class Transformer;
}

namespace sparta::trainer::multilevel {

using ModelState = std::map<std::string, HostTensor>;

enum class Mode { width, depth, both };
Mode parse_mode(const std::string& name);  // "width" | "depth" | "both"

// D's treatment of the residual stream. preserving (the project's rule, spec section 4): the
// embeddings are copied at full scale, every reader of the residual gets halved inputs, and a
// tied head's ½ goes into the final norm: D is then exactly function-preserving in width, and
// C is its left inverse (embeddings averaged, the tied final norm doubled). faithful: the
// authors' GPT-2 map (embeddings halved by D and summed by C), kept for reproduction.
enum class Embeddings { preserving, faithful };

struct MapOptions {
  Mode mode = Mode::width;
  Pairing width_pairing = Pairing::halves;
  Pairing depth_pairing = Pairing::adjacent;
  Embeddings embeddings = Embeddings::preserving;
};

// The model one level down. Usage errors name the key that makes it impossible (an odd head
// count or FFN width, an odd layer count, a layer pair that mixes Post-LN and Pre-LN or MoE and
// dense layers, UoE attention experts of one head).
models::ModelConfig small_config(const models::ModelConfig& large, const MapOptions& o);

ModelState coalesce(const models::ModelConfig& large, const ModelState& s, const MapOptions& o);
ModelState decoalesce(const models::ModelConfig& large, const ModelState& small,
                      const MapOptions& o);
// (1 - alpha) * pre + alpha * up, element-wise over every tensor (the same names and shapes).
ModelState interpolate(const ModelState& pre, const ModelState& up, float alpha);

// A model's parameters and buffers as full tensors (collective over tp/ep when sharded), and
// back into a model of the same config (every rank keeps its part).
ModelState model_state(const models::Transformer& m);
void load_state(models::Transformer& m, const ModelState& s);

}  // namespace sparta::trainer::multilevel
