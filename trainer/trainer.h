// The training loop: data -> model -> gradient sync (reduction, clip, noise) -> AdamW, with
// periodic evaluation, progress lines, metrics and checkpoints. Everything is allocated in the
// constructor; step() is free of heap allocation (tests/unit/test_no_alloc.cpp proves it).
// docs/architecture.md follows one batch through these pieces.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "data/loader.h"
#include "launch/world.h"
#include "monitoring/metrics_log.h"
#include "parallel/mesh.h"
#include "parallel/process_groups.h"
#include "trainer/config.h"
#include "trainer/control.h"
#include "trainer/control_plane.h"
#include "trainer/fault_injection.h"
#include "trainer/grad_sync.h"
#include "trainer/models/transformer.h"
#include "trainer/multilevel/coalesce.h"
#include "trainer/optim/adamw.h"
#include "trainer/run_monitor.h"

namespace sparta::trainer {

struct RunOptions {
  std::string run_dir;        // config.toml, metrics.jsonl, checkpoints/ land here ("" : no files)
  std::string metrics_out;    // JSONL path ("" : <run_dir>/metrics.jsonl when run_dir is set)
  std::string resume;         // "" : fresh; "auto": newest good checkpoint (fresh if none); a path
  int64_t stop_at_step = -1;  // save a checkpoint after this many steps and return
  bool quiet = false;         // no console output (tests)
  // Starts rank 0's sparta.v1.Control server (sparta-train passes the gRPC one; empty: none).
  monitoring::ControlEndpointFactory control_endpoint;
  std::string control_dir;       // where control.address goes ("": run_dir)
  int64_t data_step_offset = 0;  // step s reads the training windows of step s + offset
};

struct StepResult {
  double loss = 0, grad_norm = 0, lr = 0, noise_sigma = 0;
  double seconds = 0;  // wall time
  // Where it went (monitoring::Phase order): data, forward, backward, optimizer (compute, the
  // time inside collectives excluded) and comm_wait (inside collectives).
  std::array<double, monitoring::kPhases> phases{};
};

struct EvalResult {
  double loss = 0, bpb = 0;
  int64_t tokens = 0;
  bool interrupted = false;  // a control request asked for the step boundary: loss is partial
};

struct RunSummary {
  int64_t start_step = 0;      // > 0 after a resume
  int64_t steps = 0;           // the step count reached
  bool stopped_early = false;  // --stop-at-step or a control request
  int exit_code = 0;           // the program's: 0, or trainer/control.h's 75 / 76
  std::string last_checkpoint;
  double final_train_loss = 0, final_val_loss = 0, final_val_bpb = 0;
  double unigram_val_loss = 0, unigram_val_bpb = 0;
  double seconds = 0, tokens_per_s = 0;
  double comm_seconds = 0;        // time inside collectives (this rank)
  std::vector<double> losses;     // per step run (from start_step)
  double tokens_per_step = 0;     // of the global batch
  double checkpoint_seconds = 0;  // total time spent saving
  uint64_t checkpoint_bytes = 0;  // size of the last checkpoint
};

class Trainer {
 public:
  Trainer(const Config& cfg, const RunOptions& opt);
  ~Trainer();

  StepResult step(int64_t step);  // one optimizer step (0-based)
  // With `pending`, the ranks agree on the control word once per batch (OR-ed into *pending) and
  // stop early when it asks for the step boundary.
  EvalResult evaluate(ControlWord* pending = nullptr);
  RunSummary run();  // run_steps(), with a failure reported to the Control service

  models::Transformer& model() { return *model_; }
  // Replaces the initial parameters (every rank passes the same full tensors by name): the
  // V-cycle's coalesced or interpolated model. Before run(); a resume overrides it.
  void set_parameters(const multilevel::ModelState& full);
  // Null unless monitoring.prometheus or the Control service is on.
  RunMonitor* monitor() { return monitor_.get(); }
  const ControlPlane& control_plane() const { return *plane_; }
  const Config& config() const { return cfg_; }
  // Cross-entropy of the validation tokens under the training split's unigram distribution
  // (add-one smoothing): the loss of a model that ignores context.
  EvalResult unigram_baseline() const;

 private:
  RunSummary run_steps();
  void say(const std::string& line) const;
  kernels::Device choose_device() const;
  void open_data(int vocab_size);
  void log_step(int64_t done, const StepResult& r, double step_ms, double tokens_per_step,
                const std::array<double, monitoring::kPhases>& window_phases);
  void save_checkpoint(int64_t done, double tokens_per_step, RunSummary& sum, size_t reason);
  // Acts on an agreed word at the boundary after step `done`: diagnostics, the requested
  // checkpoint (unless one was saved there already), the record; true when the run stops.
  bool act_on_control(const ControlWord& w, int64_t done, bool saved, double tokens_per_step,
                      RunSummary& sum, bool during_eval);
  void dump_diagnostics(int64_t done, const StepResult* last) const;
  std::string checkpoint_dir() const;
  int64_t resume_if_asked();
  std::vector<monitoring::CommRecord> comm_records() const;
  kernels::Tensor host_scalars(int64_t n);

  Config cfg_;
  RunOptions opt_;
  launch::World world_;
  std::unique_ptr<parallel::ProcessMesh> mesh_;
  std::unique_ptr<parallel::ProcessGroups> groups_;
  FaultInjection fault_;
  double val_bytes_per_token_ = 0;
  std::unique_ptr<data::TokenDataset> train_data_, val_data_;
  std::unique_ptr<data::DataLoader> train_loader_, val_loader_;
  std::unique_ptr<models::Transformer> model_;
  std::unique_ptr<GradSync> sync_;
  std::unique_ptr<AdamW> optim_;
  std::unique_ptr<monitoring::MetricsLog> metrics_;
  std::unique_ptr<RunMonitor> monitor_;  // [monitoring] prometheus, or the Control service
  std::unique_ptr<ControlPlane> plane_;  // always; serves only on rank 0 with an endpoint
  std::unique_ptr<SignalHandlers> signals_;
  std::unique_ptr<Control> control_;
  StepResult last_step_;                   // for diagnostics
  std::vector<int32_t> tokens_, targets_;  // host staging of one micro-batch (whole sequences)
  std::vector<float> scalars_;             // host scalars for small all-reduces (loss, eval sums)
};

}  // namespace sparta::trainer
