// The tiny model that every trainer-level test trains: 2 layers (1 Post-LN + 1 Pre-LN), C 32,
// H 2, F 48, T 16, B 4, on a data directory from tests/common/data_util.h. Seconds per run.
#pragma once

#include <string>
#include <vector>

#include "trainer/config.h"
#include "trainer/trainer.h"

namespace sparta::test {

inline trainer::Config tiny_config(const std::string& data_dir, std::vector<std::string> extra = {}) {
  std::vector<std::string> sets = {
      "model.n_layers=2",   "model.d_model=32",     "model.n_heads=2",
      "model.d_ff=48",      "model.seq_len=16",     "model.mixln_post_layers=1",
      "train.batch_size=4", "optim.warmup_steps=2", "train.eval_every=0",
      "train.eval_batches=1", "data.dir=" + data_dir};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return trainer::load_config("", sets);
}

inline trainer::RunOptions quiet_run(const std::string& run_dir = "", const std::string& resume = "",
                                     int64_t stop_at_step = -1) {
  trainer::RunOptions o;
  o.quiet = true;
  o.run_dir = run_dir;
  o.resume = resume;
  o.stop_at_step = stop_at_step;
  return o;
}

}  // namespace sparta::test
