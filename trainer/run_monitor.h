// The trainer's side of live monitoring: builds the run's series (monitoring/live_metrics.h)
// from the model and the layout, serves them (monitoring/prometheus_exporter.h) on every rank,
// writes the file_sd target list (rank 0), and publishes each step's numbers. Monitoring never
// reaches into the model: this class reads it and hands plain values over.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "launch/world.h"
#include "monitoring/live_metrics.h"
#include "monitoring/prometheus_exporter.h"
#include "parallel/mesh.h"
#include "parallel/process_groups.h"
#include "trainer/config.h"
#include "trainer/models/transformer.h"

namespace sparta::trainer {

// "tp2 cp1 ep1 dp2 zero1": the layout as the metrics and the Control service name it.
std::string layout_name(const parallel::ProcessMesh& mesh, int64_t zero);

class RunMonitor {
 public:
  // With `prometheus`: starts the endpoint (a usage error when it cannot listen) and, on rank 0
  // with a run directory, writes <run_dir>/prometheus_targets.json. Without: keeps the numbers
  // only (what the Control service reads). Collective over the world either way: every rank
  // has a RunMonitor or none does (after_step reduces UoE counts over dp).
  RunMonitor(const Config& cfg, const launch::World& world, const parallel::ProcessGroups& g,
             const parallel::ProcessMesh& mesh, const models::Transformer& model,
             kernels::Device device, const std::string& run_dir, bool prometheus);
  ~RunMonitor();
  RunMonitor(const RunMonitor&) = delete;
  RunMonitor& operator=(const RunMonitor&) = delete;

  int port() const;  // 0 without the endpoint
  const monitoring::LiveMetrics& live() const { return live_; }
  const std::string& endpoint() const { return endpoint_; }
  const std::string& targets_file() const { return targets_file_; }
  const std::string& shared_targets_file() const { return shared_targets_file_; }
  // After each micro-batch's forward: its routers' expert counts (allocates nothing).
  void after_micro_batch(const models::Transformer& model);
  // After the optimizer step `done` (1-based) with its results.
  // After the optimizer step `done` (1-based): the step's numbers, its routers' last stats.
  void after_step(const models::Transformer& model, int64_t done, double loss, double lr,
                  double grad_norm, double sigma, double seconds,
                  const std::array<double, monitoring::kPhases>& phases);
  void after_log(const std::vector<double>& layer_grad_norms);
  void after_eval(double loss, double bpb, double seconds);
  void after_checkpoint(double seconds, size_t reason);  // monitoring::kCheckpointReasons
  // After a control agreement: the signal counts so far (monitoring::kSignalNames) and the
  // agreed action bits (bit a = monitoring::kControlActions[a], trainer/control.h).
  void after_control(const std::array<int, 4>& signals, uint32_t action_bits);

 private:
  monitoring::RunInfo run_info(const Config& cfg, const launch::World& world,
                               const parallel::ProcessMesh& mesh, const models::Transformer& model,
                               kernels::Device device) const;
  void publish_collectives();
  const parallel::ProcessGroups& g_;
  kernels::Device device_;
  monitoring::LiveMetrics live_;
  std::unique_ptr<monitoring::PrometheusExporter> exporter_;
  std::string endpoint_, targets_file_, shared_targets_file_;
  double tokens_per_step_ = 0, flops_per_step_ = 0;  // this rank's shares
  std::vector<std::vector<int64_t>> step_tokens_;    // per routed block, this step's counts
  std::vector<int64_t> step_dropped_;
  std::vector<bool> uoe_block_;
  std::array<double, 4> actions_{};  // agreed control actions so far
  std::vector<int32_t> reduce_buf_;  // UoE counts summed over dp (routing is per dp rank)
  bool reduce_uoe_ = false;
  std::vector<const parallel::Comm*> comms_;
  std::vector<size_t> comm_group_;  // groups_.comms() index -> RunInfo::comm_groups index
};

}  // namespace sparta::trainer
