// The V-cycle inside sparta-train ([multilevel], README "Multi-level training"): train.steps
// split into phases, one Trainer each, down from the full model to the coarsest and back up:
//   level 0 (down_fraction) -> C -> level 1 (down_fraction) -> ... -> C -> level L-1
//   (coarse_fraction) -> D + I -> level L-2 (up_fraction) -> ... -> D + I -> level 0 (the rest).
// C coalesces the phase's final model; D + I de-coalesces it and interpolates with the model
// that left that level on the way down (alpha). Every phase starts a fresh optimizer and LR
// schedule (the spec's default): level k peaks at optim.lr * lr_scale^k; the first phase warms
// up for optim.warmup_steps, every later one for multilevel.warmup_steps (0 in the spec). Each
// phase is an ordinary run directory, RUN_DIR/phase-P-level-K/ (config.toml, metrics.jsonl,
// status, checkpoints/: its final one is the boundary state); the training
// windows continue across phases (a phase's step s reads global step first_step + s). A stop
// inside a phase ends the run with that phase's exit code; --resume auto skips the finished
// phases and resumes the first unfinished one, so the cycle resumes bit-exactly.
#pragma once

#include <string>
#include <vector>

#include "trainer/config.h"
#include "trainer/models/model_config.h"
#include "trainer/trainer.h"

namespace sparta::trainer::multilevel {

struct Phase {
  int index = 0, level = 0;
  int64_t first_step = 0, steps = 0;  // global steps [first_step, first_step + steps)
  models::ModelConfig model;
  double lr = 0;
  int64_t warmup = 0;
  std::string dir;  // relative to the run directory
};

// The phases of cfg's cycle (usage errors name the [multilevel] key or the model key that makes
// a level impossible).
std::vector<Phase> plan_vcycle(const Config& cfg);

// Runs (or resumes) the cycle in opt.run_dir; returns the program's exit code.
int run_vcycle(const Config& cfg, const RunOptions& opt);

}  // namespace sparta::trainer::multilevel
