// The numbers a running job publishes for scraping (README "Watching a run" lists every metric).
// The trainer writes them once per step (and at evaluations and checkpoints); an exporter's
// scrape thread reads a snapshot. Every series is known after configure() and starts at 0, the
// storage is fixed then, so an update allocates nothing and holds the lock for a few stores; a
// scrape copies the state under the same lock and formats it on its own thread.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace sparta::monitoring {

// Where a step's time went. Compute phases exclude the time spent inside collectives, which is
// comm_wait: a collective equalises wall time across ranks, so compute time is what shows a
// straggler.
enum class Phase { data, forward, backward, optimizer, comm_wait, checkpoint, eval };
constexpr size_t kPhases = 7;
// Collective kinds, in parallel::CollKind order (trainer/run_monitor.cpp checks the count).
constexpr size_t kCollectiveOpCount = 9;
const char* to_string(Phase p);

// A routed block (MoE FFN, UoE attention or MLP) and the experts this rank exports.
struct RoutedBlock {
  int layer = 0;
  std::string block = "moe";       // "moe", "uoe.attn", "uoe.mlp"
  int experts = 0;                 // E
  int own_begin = 0, own_end = 0;  // experts whose token counters this rank exports
};

// What fixes the series set, and the constant series.
struct RunInfo {
  std::string version, git_sha, host, device, gpu_uuid, layout;
  int rank = 0, local_rank = 0;
  double peak_flops = 0;       // of this rank's device
  double start_timestamp = 0;  // Unix seconds when the run (this process) started
  int64_t target_steps = 0;    // train.steps
  int64_t restarts = 0;        // SLURM_RESTART_COUNT (requeues of this job)
  int layers = 0;
  std::vector<RoutedBlock> routed;
  bool report_routers = false;  // this rank exports the per-layer router gauges
  int64_t expert_series_cap = 1024;
  std::vector<std::pair<std::string, double>> arena_bytes;  // kind -> bytes
  std::vector<std::string> comm_groups;                     // group names with > 1 rank
};

struct StepSample {
  int64_t step = 0;  // optimizer steps done
  double loss = 0, lr = 0, grad_norm = 0, noise_sigma = 0;
  double seconds = 0;      // wall time of the step
  double tokens = 0;       // this rank's equal share of the global batch's tokens
  double model_flops = 0;  // this rank's equal share of the step's model FLOPs
  std::array<double, kPhases> phase_seconds{};  // data, forward, backward, optimizer, comm_wait
  double timestamp = 0;                         // Unix seconds at the end of the step
};

// Everything a scrape sees (plain values: copyable on the scrape thread).
struct MetricsState {
  RunInfo info;
  double step = 0, steps_total = 0, tokens_total = 0, model_flops_total = 0, mfu = 0;
  double loss = 0, val_loss = 0, val_bpb = 0, grad_norm = 0, lr = 0, noise_sigma = 0;
  std::vector<double> layer_grad_norm;
  std::array<double, kPhases> phase_seconds_total{};
  // step duration histogram: cumulative counts per upper bound (kStepBuckets), sum, count
  std::vector<double> step_hist;
  double step_sum = 0, step_count = 0;
  std::vector<double> ckpt_hist;
  double ckpt_sum = 0, ckpt_count = 0;
  std::array<double, 5> checkpoints_total{};  // by kCheckpointReasons
  std::array<double, 4> signals_total{};      // by kSignalNames
  std::array<double, 4> control_total{};      // agreed actions by kControlActions
  double last_step_ts = 0, last_ckpt_ts = 0, device_memory_bytes = 0;
  // Per routed block: cumulative tokens per expert (all E; only own ones are exported), last
  // step's per-expert tokens (for balance), dropped, entropy, aux and z.
  std::vector<std::vector<double>> expert_tokens_total, expert_tokens_step;
  std::vector<double> dropped_total, router_entropy, aux_loss, z_loss;
  // Collectives by (group, op): cumulative seconds and bytes.
  std::vector<std::array<double, kCollectiveOpCount>> coll_seconds, coll_bytes;
};

const std::vector<double>& step_duration_buckets();
const std::vector<double>& checkpoint_duration_buckets();
constexpr const char* kCollectiveOps[kCollectiveOpCount] = {
    "all_reduce", "reduce_scatter", "all_gather", "all_to_all_v", "send",
    "recv",       "broadcast",      "barrier",    "sendrecv"};
// stop: --stop-at-step; signal: SIGTERM or the checkpoint signal; request: trigger file or RPC.
constexpr const char* kCheckpointReasons[5] = {"interval", "final", "stop", "signal", "request"};
constexpr const char* kSignalNames[4] = {"SIGTERM", "SIGUSR1", "SIGUSR2", "SIGHUP"};
constexpr const char* kControlActions[4] = {"checkpoint", "stop", "stop_now", "dump"};

class LiveMetrics {
 public:
  void configure(const RunInfo& info);
  void on_step(const StepSample& s);
  void on_phase(Phase p, double seconds);  // checkpoint and eval, outside the step
  void on_layer_grad_norms(const std::vector<double>& norms);
  // Routed block i of RunInfo::routed: this step's tokens per expert (E values), dropped
  // assignments, mean router entropy and the aux / z losses of its last forward.
  void on_routing(size_t i, const int64_t* tokens, int64_t dropped, double entropy, double aux,
                  double z);
  // Cumulative totals of group g (index into RunInfo::comm_groups) and op (kCollectiveOps).
  void on_collectives(size_t g, size_t op, double seconds, double bytes);
  void on_eval(double loss, double bpb);
  void on_checkpoint(double seconds, size_t reason, double timestamp);
  void on_device_memory(double bytes);
  // Cumulative counts: signals this process received (kSignalNames), control actions the ranks
  // agreed on (kControlActions).
  void on_control(const std::array<double, 4>& signals, const std::array<double, 4>& actions);
  MetricsState snapshot() const;

 private:
  mutable std::mutex mu_;
  MetricsState s_;
};

}  // namespace sparta::monitoring
