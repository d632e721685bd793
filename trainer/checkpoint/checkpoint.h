// Checkpoints: one directory per step, written so that a crash or a full disk at any moment
// leaves the previous checkpoint intact and loadable.
//
//   <dir>/step_00000120/model.safetensors   parameters by name (standard safetensors, f32)
//                      /optim.safetensors   AdamW moments "m.<name>", "v.<name>"
//                      /tokenizer.model     the run's tokenizer (sparta-sample needs it)
//                      /manifest.json       format version, step, tokens seen, config, layout,
//                                           tensors (name, file, dtype, shape, slice), RNG
//                                           and data-loader state, per-file size + XXH3-64
//   <dir>/latest                            "step_00000120", replaced last
//
// Protocol: write everything into step_N.tmp-<pid>/ (each file fsynced), fsync the directory,
// rename it to step_N, fsync <dir>, then replace `latest` the same way. Loading verifies every
// file's size and checksum before touching the model.
//
// State needed for a bit-exact resume is small because sparta's randomness is counter-based: the
// data order is a function of (seed, step) and the noise of (seed, step, param, index), so the
// step and the seed restore them exactly; the manifest records them with the loader's position.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "trainer/models/transformer.h"
#include "trainer/optim/adamw.h"

namespace sparta::checkpoint {

struct SaveInfo {
  int64_t step = 0;  // optimizer steps completed
  int64_t tokens_seen = 0;
  uint64_t seed = 0;
  int64_t samples_per_step = 0;  // B * grad_accum * world: the loader cursor is step * this
  int64_t epoch = 0;
  std::string config_toml;
  std::string tokenizer_path;  // copied into the checkpoint when not empty
  struct Layout {
    int64_t world = 1, dp = 1, tp = 1, cp = 1, ep = 1, zero = 0;
  } layout;  // recorded in the manifest; tensors are always saved whole
};

struct SaveResult {
  std::string path;
  uint64_t bytes = 0;
  double seconds = 0;
};

// Saves and prunes to keep_last complete checkpoints (0 keeps all). Tensors are saved whole: a
// sharded model's parts are gathered first, which is collective, so with tensor or expert
// parallelism every rank calls save() and only the one with write = true writes.
SaveResult save(const std::string& dir, const SaveInfo& info, const models::Transformer& model,
                const trainer::AdamW& optim, int keep_last, bool write = true);

struct Manifest {
  std::string path;  // the checkpoint directory
  int64_t step = 0, tokens_seen = 0;
  uint64_t seed = 0;
  std::string config_toml;
};

// Reads and verifies (sizes, checksums) a checkpoint directory; errors are ErrorKind::data.
Manifest verify(const std::string& ckpt_dir);
// Verifies, then loads parameters and (when optim is not null) optimizer moments.
Manifest load(const std::string& ckpt_dir, models::Transformer& model, trainer::AdamW* optim);

// Complete checkpoints in dir, newest first (ignores *.tmp-* leftovers).
std::vector<std::string> list(const std::string& dir);

// --resume auto: the newest checkpoint that verifies; a corrupt one is skipped with a warning
// on stderr. nullopt when there is none.
std::optional<std::string> find_resumable(const std::string& dir);

}  // namespace sparta::checkpoint
