// The trainer's checkpoints: where they go, saving one at a step, and resuming from one.
#include <chrono>
#include <filesystem>

#include <fmt/format.h>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/trainer.h"

namespace sparta::trainer {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string Trainer::checkpoint_dir() const {
  if (!cfg_.checkpoint.dir.empty()) return cfg_.checkpoint.dir;
  return opt_.run_dir.empty() ? "" : (fs::path(opt_.run_dir) / "checkpoints").string();
}

// Loads the checkpoint --resume names; returns the step to continue from.
int64_t Trainer::resume_if_asked() {
  if (opt_.resume.empty()) return 0;
  std::string path = opt_.resume;
  if (path == "auto") {
    const std::string dir = checkpoint_dir();
    if (dir.empty())
      SPARTA_USAGE_ERROR("--resume auto needs a place to look: give --run-dir or checkpoint.dir");
    const auto found = checkpoint::find_resumable(dir);
    if (!found) {
      say(fmt::format("resume: no complete checkpoint in {}; starting fresh", dir));
      return 0;
    }
    path = *found;
  }
  const auto t0 = Clock::now();
  optim_->prepare_full_state();  // ZeRO-1: load into full-size moments, then keep the shard
  const auto m = checkpoint::load(path, *model_, optim_.get());
  optim_->scatter_full_state();
  if (m.step > cfg_.train.steps)
    SPARTA_USAGE_ERROR("checkpoint {} is at step {}, beyond train.steps = {}", path, m.step,
                       cfg_.train.steps);
  say(fmt::format("resume: loaded {} (step {}, {} tokens seen) in {:.2f} s", path, m.step,
                  m.tokens_seen, std::chrono::duration<double>(Clock::now() - t0).count()));
  return m.step;
}

void Trainer::set_parameters(const multilevel::ModelState& full) {
  multilevel::load_state(*model_, full);
}

void Trainer::save_checkpoint(int64_t done, double tokens_per_step, RunSummary& sum,
                              size_t reason) {
  checkpoint::SaveInfo info;
  info.step = done;
  info.tokens_seen = static_cast<int64_t>(tokens_per_step) * done;
  info.seed = static_cast<uint64_t>(cfg_.train.seed);
  info.samples_per_step = cfg_.train.batch_size * cfg_.train.grad_accum * groups_->data_size;
  info.epoch = train_loader_->epoch_of(done, static_cast<int>(cfg_.train.grad_accum));
  info.config_toml = to_toml(cfg_);
  info.tokenizer_path = (fs::path(cfg_.data.dir) / "tokenizer.model").string();
  optim_->gather_full_state(*groups_->dp.dev);  // ZeRO-1: every rank's moments, on every rank
  info.layout = {world_.size,
                 mesh_->size(parallel::Dim::dp),
                 mesh_->size(parallel::Dim::tp),
                 mesh_->size(parallel::Dim::cp),
                 mesh_->size(parallel::Dim::ep),
                 cfg_.parallel.zero};
  checkpoint::SaveResult saved;
  // Sharded parameters are gathered (collective), so then every rank takes part.
  if (world_.rank == 0 || groups_->tp.size() > 1 || groups_->ep.size() > 1)
    saved = checkpoint::save(checkpoint_dir(), info, *model_, *optim_,
                             static_cast<int>(cfg_.checkpoint.keep_last), world_.rank == 0);
  groups_->world.host->barrier();  // nobody runs ahead (or resumes) before the save is complete
  if (monitor_) monitor_->after_checkpoint(saved.seconds, reason);
  metrics_->write(monitoring::CheckpointRecord{done, saved.seconds, saved.bytes});
  sum.last_checkpoint = saved.path;
  plane_->on_checkpoint(done, saved.path);
  sum.checkpoint_seconds += saved.seconds;
  sum.checkpoint_bytes = saved.bytes;
  say(fmt::format("checkpoint: saved {} ({:.1f} MB) in {:.2f} s", saved.path,
                  static_cast<double>(saved.bytes) / 1e6, saved.seconds));
}

}  // namespace sparta::trainer
