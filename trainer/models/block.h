// One transformer block: its norm placement and its two halves (a Mixer and an Ffn), as data.
// Block equations (../shared/specs/mixln.md section 2; N_a, N_f are the block's two norms):
//   Pre-LN : u = x + Attn(N_a(x));  out = u + FFN(N_f(u))
//   Post-LN: u = N_a(x + Attn(x));  out = N_f(u + FFN(u))
// The parameter list (norm_a, attention, norm_f, FFN) does not depend on the placement, so
// Mix-LN with K = 0 is Pre-LN and K = L is Post-LN bit for bit.
//
// Recompute::attention puts the mixer's activations in an arena overlay shared by every layer's
// mixer (kMixerOverlay) and runs the mixer's forward again just before its backward.
// Recompute::block is the model's (transformer.h): the whole block is overlaid and re-run from
// its input; the output stays outside the overlay, since it is the next block's input.
#pragma once

#include <memory>

#include "trainer/models/layer.h"
#include "trainer/models/norm.h"

namespace sparta::models {

class Block {
 public:
  static constexpr int kMixerOverlay = 0;
  // Registers norm_a, then builds the mixer (`make_mixer` registers its parameters), then
  // norm_f, then the FFN: the canonical parameter order of a block.
  template <class MakeMixer, class MakeFfn>
  Block(ParamSet& ps, kernels::ArenaPlan& acts, const ModelConfig& cfg, const Dims& d, int layer,
        const Tensor& g_tmp, Recompute recompute, MakeMixer make_mixer, MakeFfn make_ffn)
      : post_(cfg.layer_is_post_ln(layer)),
        recompute_mixer_(recompute == Recompute::attention),
        g_tmp_(g_tmp),
        na_(ps, acts, cfg, d, "layers." + std::to_string(layer) + ".norm_a", layer),
        mixer_(overlaid(acts, recompute_mixer_, make_mixer)),
        nf_(ps, acts, cfg, d, "layers." + std::to_string(layer) + ".norm_f", layer),
        ffn_(make_ffn()) {
    plan(acts, d);
  }
  // out = Block(x) (the block's own buffer; the next block's input).
  Tensor forward(const Pass& pass, Tensor x, RouterState& state);
  // g: d(out) on entry, d(x) on return (updated in place).
  void backward(const Pass& pass, Tensor x, Tensor g, RouterStateGrad& state);
  Tensor output() const { return out_; }
  const Mixer& mixer() const { return *mixer_; }
  const Ffn& ffn() const { return *ffn_; }

 private:
  template <class Make>
  static std::unique_ptr<Mixer> overlaid(kernels::ArenaPlan& acts, bool on, Make make) {
    if (on) acts.open_overlay(kMixerOverlay);
    std::unique_ptr<Mixer> m = make();
    if (on) acts.close_overlay();
    return m;
  }
  void plan(kernels::ArenaPlan& acts, const Dims& d);
  bool post_;
  bool recompute_mixer_;
  const Tensor& g_tmp_;  // backward scratch [N, C] shared by the blocks (the model's)
  Norm na_;
  std::unique_ptr<Mixer> mixer_;
  Norm nf_;
  std::unique_ptr<Ffn> ffn_;
  Tensor out_, na_out_, nf_out_, sum1_, sum2_;  // nf_out_: Pre-LN; sum2_: Post-LN
};

}  // namespace sparta::models
