// The run configuration: a TOML file (toml++) plus `--set section.key=value` overrides, checked
// against one schema table (config.cpp) that also generates the README's config reference.
// Unknown key, wrong type, or out-of-range value -> Error(usage) naming the key and what is
// allowed; the CLI turns it into exit code 2.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/models/model_config.h"

namespace sparta::trainer {

struct TrainSection {
  int64_t steps = 1000;
  int64_t batch_size = 8;  // sequences per micro-batch (per rank)
  int64_t grad_accum = 1;  // micro-batches per optimizer step
  int64_t seed = 1337;
  int64_t eval_every = 100;  // 0: only at the end
  int64_t eval_batches = 0;  // 0: the whole validation split
  int64_t log_every = 1;
  std::string device = "cpu";      // cpu | cuda
  int64_t threads = 0;             // CPU threads for OpenMP/OpenBLAS; 0: all cores
  std::string recompute = "none";  // none | attention | block (models::Recompute)
};

struct OptimSection {
  double lr = 3e-3;
  double min_lr_ratio = 0.1;  // cosine decays to lr * min_lr_ratio
  int64_t warmup_steps = 50;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double clip_norm = 1.0;  // global gradient-norm clip; 0 disables
};

struct DataSection {
  std::string dir = "data/default";
};

struct CheckpointSection {
  std::string dir;          // "" : <run-dir>/checkpoints
  int64_t every_steps = 0;  // 0: only when asked (--stop-at-step) and at the end of training
  int64_t keep_last = 3;    // complete checkpoints kept (0: all)
};

// Annealed gradient noise (../shared/specs/grad-noise.md): after clipping, every gradient element
// gets N(0, sigma_t^2), sigma_t^2 = eta / (1 + t)^gamma, t the 0-based optimizer step.
struct NoiseSection {
  bool enabled = false;
  double eta = 0.01;  // a variance
  double gamma = 0.55;
  int64_t seed = -1;  // -1: train.seed
};

// The distributed layout ([parallel], parallel/mesh.h); the product of tp, cp, ep, dp is the
// world size (dp 0: inferred).
struct ParallelSection {
  int64_t tp = 1, cp = 1, ep = 1, dp = 0;
  std::string order = "tp-cp-ep-dp";
  std::string cp_algo = "ulysses";  // parallel::CpAlgo
  int64_t cp_ulysses = 0;           // hybrid: the Ulysses degree
  int64_t zero = 0;              // 1: ZeRO-1, optimizer state sharded over the data-parallel ranks
  double timeout_s = 60.0;       // a collective without progress this long ends the job
  std::string backend = "auto";  // device tensors: "nccl", "mpi" (staged), "auto" (nccl on GPUs)
  // Start each block's gradient all-reduce inside the backward. Off by default: on the 2-core
  // test VM, where every core computes and Open MPI progresses only inside MPI calls, it
  // measured 7-17 % slower steps (README, "Several processes").
  bool overlap_grad_reduce = false;
};

// Live monitoring ([monitoring], README "Watching a run"): a Prometheus /metrics endpoint on
// every rank and the file_sd target list rank 0 writes into the run directory.
struct MonitoringSection {
  bool prometheus = false;
  std::string bind = "127.0.0.1";  // address the endpoints listen on
  int64_t port = 0;                // 0: an ephemeral port; else port + local rank
  std::string job = "";            // the job label of the targets ("": the run directory's name)
  std::string targets_dir = "";    // also write <targets_dir>/<job>.json ("": <run-dir>/..
                                   // /prometheus_targets; "none": only the run directory's)
  double peak_flops = 0;           // FLOP/s of one rank's device for MFU (0: measured / estimated)
  int64_t expert_series = 1024;    // above this many (layer, expert) series: top and bottom K
};

// Steering a running job ([control], trainer/control.h, README "Controlling a run").
struct ControlSection {
  // Checkpoint at the next step, then exit 75 (SIGTERM always does this too). USR1 by default:
  // Open MPI's mpirun forwards USR1 and USR2 to the ranks but ends the job on SIGTERM.
  std::string checkpoint_signal = "USR1";  // USR1 | USR2 | HUP | none
  std::string trigger_file = "";           // "": <run-dir>/control.request; "none": off
  // sparta.v1.Control on rank 0 (README "Control API"); port 0 picks a free one, written to
  // <run-dir>/control.address. Any non-loopback address needs token_file.
  std::string grpc_bind = "127.0.0.1:0";  // host:port | "none"
  std::string token_file = "";            // clients send "authorization: Bearer <its text>"
};

// Multi-level V-cycle training ([multilevel], trainer/multilevel/vcycle.h, README "Multi-level
// training"): phases of train.steps at coarser and coarser models and back.
struct MultilevelSection {
  bool enabled = false;
  int64_t levels = 2;                    // models in the cycle, the full one included
  std::string mode = "both";             // width | depth | both: what one level halves
  std::string width_pairing = "halves";  // halves | adjacent
  std::string depth_pairing = "adjacent";
  std::string embeddings = "preserving";  // preserving | faithful (the authors' GPT-2 map)
  double alpha = 0.5;                     // interpolation weight of the de-coalesced model
  double down_fraction = 0.05;    // of train.steps, each level's first visit (on the way down)
  double coarse_fraction = 0.45;  // the coarsest level
  double up_fraction = 0.2;       // each intermediate level on the way up (levels > 2)
  double lr_scale = 4.0;          // level k trains at optim.lr * lr_scale^k
  int64_t warmup_steps = 0;       // warmup of each phase after the first (0: the spec, none)
};

struct Config {
  models::ModelConfig model;
  ParallelSection parallel;
  TrainSection train;
  OptimSection optim;
  DataSection data;
  CheckpointSection checkpoint;
  NoiseSection noise;
  MonitoringSection monitoring;
  ControlSection control;
  MultilevelSection multilevel;
  std::string moe_router_dtype = "fp32";  // [moe] router_dtype: the router is always fp32
};

// Builds the config: struct defaults, then the file (or the embedded configs/default.toml when
// `file` is empty), then each "section.key=value" override in order; then cross-key checks.
Config load_config(const std::string& file, const std::vector<std::string>& overrides);
// The same from TOML text (a checkpoint's saved config); `origin` names it in errors.
Config load_config_text(const std::string& toml_text, const std::string& origin);
// The effective config as TOML (every key, printed at start and saved in the run dir).
std::string to_toml(const Config& c);
// Markdown table of every key: section, key, type, default, allowed values, meaning.
std::string config_reference_markdown();
// The embedded configs/default.toml text.
const char* embedded_default_config();

}  // namespace sparta::trainer
