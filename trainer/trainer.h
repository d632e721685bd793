// The training loop: data -> model -> gradient reduction -> clipping -> AdamW, with periodic
// evaluation, progress lines and metrics. Everything is allocated in the constructor; step() is
// free of heap allocation (tests/unit/test_trainer.cpp counts allocations to prove it).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "data/loader.h"
#include "launch/world.h"
#include "monitoring/metrics_log.h"
#include "parallel/comm.h"
#include "parallel/mesh.h"
#include "trainer/config.h"
#include "trainer/models/transformer.h"
#include "trainer/optim/adamw.h"
#include "trainer/optim/grad_noise.h"

namespace sparta::trainer {

struct RunOptions {
  std::string run_dir;        // config.toml, metrics.jsonl, checkpoints/ land here ("" : no files)
  std::string metrics_out;    // JSONL path ("" : <run_dir>/metrics.jsonl when run_dir is set)
  std::string resume;         // "" : fresh; "auto": newest good checkpoint (fresh if none); a path
  int64_t stop_at_step = -1;  // save a checkpoint after this many steps and return
  bool quiet = false;         // no console output (tests)
};

struct StepResult {
  double loss = 0, grad_norm = 0, lr = 0, noise_sigma = 0;
};

struct EvalResult {
  double loss = 0, bpb = 0;
  int64_t tokens = 0;
};

struct RunSummary {
  int64_t start_step = 0;      // > 0 after a resume
  int64_t steps = 0;           // the step count reached
  bool stopped_early = false;  // --stop-at-step
  std::string last_checkpoint;
  double final_train_loss = 0, final_val_loss = 0, final_val_bpb = 0;
  double unigram_val_loss = 0, unigram_val_bpb = 0;
  double seconds = 0, tokens_per_s = 0;
  double comm_seconds = 0;        // time inside data-parallel collectives (this rank)
  std::vector<double> losses;     // per step run (from start_step)
  double checkpoint_seconds = 0;  // total time spent saving
  uint64_t checkpoint_bytes = 0;  // size of the last checkpoint
};

class Trainer {
 public:
  Trainer(const Config& cfg, const RunOptions& opt);
  ~Trainer();

  StepResult step(int64_t step);  // one optimizer step (0-based)
  EvalResult evaluate();
  RunSummary run();

  models::Transformer& model() { return *model_; }
  const Config& config() const { return cfg_; }
  // Cross-entropy of the validation tokens under the training split's unigram distribution
  // (add-one smoothing): the loss of a model that ignores context.
  EvalResult unigram_baseline() const;

 private:
  void say(const std::string& line) const;
  void setup_parallel();
  kernels::Tensor host_scalars(int64_t n);
  std::vector<monitoring::CommRecord> comm_records() const;
  std::string checkpoint_dir() const;
  int64_t resume_if_asked();

  Config cfg_;
  RunOptions opt_;
  launch::World world_;
  std::unique_ptr<parallel::ProcessMesh> mesh_;
  // Groups (parallel/mesh.h): dp = the dense data-parallel group (cp x ep x dp ranks: every
  // rank holding the same dense parameters), ep = expert parallel, edp = expert data parallel
  // (cp x dp: the ranks holding the same experts), tp = tensor parallel, cp = context parallel.
  // nccl_*: their device twins on GPUs.
  std::unique_ptr<parallel::Comm> world_comm_, dp_comm_, ep_comm_, edp_comm_, tp_comm_, cp_comm_;
  std::unique_ptr<parallel::Comm> nccl_dp_, nccl_ep_, nccl_edp_, nccl_tp_, nccl_cp_;
  parallel::Comm* grad_comm_ = nullptr;  // device tensors: nccl_dp_ or dp_comm_
  parallel::Comm *ep_dev_ = nullptr, *edp_dev_ = nullptr, *tp_dev_ = nullptr, *cp_dev_ = nullptr;
  int data_rank_ = 0, data_size_ = 1;  // which sequences this rank reads (ep x dp coordinates)
  const std::vector<int32_t>& set_batch();
  std::vector<int32_t> local_tokens_, local_targets_;  // context parallel: this rank's part
  double grad_norm(const kernels::Tensor& flat_grads);
  void reduce_grads();
  // Gradient buckets: block l's gradients (index l) and the rest (index n_layers), as ranges of
  // the flat gradient block with the communicator that averages them. A block's buckets start
  // their all-reduce from the model's backward hook as soon as the block is done (last
  // micro-batch only), overlapping the blocks below; reduce_grads() starts the rest and waits.
  struct GradBucket {
    parallel::Comm* comm;  // null: nothing to reduce (a group of one rank)
    kernels::Tensor t;
    bool expert;  // summed over expert-DP, then scaled (reduce_grads)
  };
  void build_buckets();
  void start_buckets(size_t i);
  std::vector<std::vector<GradBucket>> buckets_;
  std::vector<char> started_;
  bool overlap_now_ = false;
  kernels::Arena grad_shard_;   // ZeRO-1: this rank's block of the reduced gradient
  std::vector<float> scalars_;  // host scalars for small all-reduces (loss, norm, eval sums)
  int64_t fail_at_step_ = -1;   // SPARTA_TEST_FAIL: throw at this (0-based) step on this rank
  bool fail_hang_ = false;      // ... or stop responding there
  double val_bytes_per_token_ = 0;
  std::unique_ptr<data::TokenDataset> train_data_, val_data_;
  std::unique_ptr<data::DataLoader> train_loader_, val_loader_;
  std::unique_ptr<models::Transformer> model_;
  std::unique_ptr<AdamW> optim_;
  std::unique_ptr<monitoring::MetricsLog> metrics_;
  NoiseParams noise_;
  std::vector<int32_t> tokens_, targets_;  // host staging of one micro-batch
};

}  // namespace sparta::trainer
