// Numbers the trainer publishes: the JSONL metrics file (--metrics-out) and the console progress
// line. Monitoring never reaches into models; the trainer hands it plain values.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace sparta::monitoring {

// Router statistics of one MoE layer (see models::MoeLayerStats).
struct MoeRecord {
  int layer = 0;
  std::vector<int64_t> expert_tokens;
  int64_t dropped = 0;
  double router_entropy = 0, load_balance_loss = 0, z_loss = 0;
  std::string block = "moe";  // "moe", "uoe.attn" or "uoe.mlp"
  int64_t fillers = 0;        // UoE paper mode: non-members processed in spare slots
};

// Cumulative traffic of one communicator and collective kind since the start of the run.
struct CommRecord {
  std::string comm, kind;
  int64_t calls = 0, bytes = 0;
  double seconds = 0;
};

struct TrainRecord {
  int64_t step = 0;  // 1-based: the number of optimizer steps done
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0, step_ms = 0;
  std::vector<double> layer_grad_norms;   // optional, per block (Mix-LN diagnostic)
  double noise_sigma = 0;                 // gradient-noise std this step (written when > 0)
  std::vector<double> angular_distances;  // optional, per block: d(l, 1) (Mix-LN diagnostic)
  std::vector<MoeRecord> moe;             // per MoE layer (written when not empty)
  std::vector<CommRecord> comm;           // per communicator and kind used (multi-rank runs)
  // Mean seconds per step of each phase since the last record (name, seconds).
  std::vector<std::pair<std::string, double>> phase_seconds;
};

struct EvalRecord {
  int64_t step = 0;
  double val_loss = 0, val_bpb = 0;
};

// A saved checkpoint: {"step", "checkpoint_seconds", "checkpoint_bytes"} (sparta-launch sizes
// the early-warning signal from it).
struct CheckpointRecord {
  int64_t step = 0;
  double seconds = 0;
  uint64_t bytes = 0;
};

// A control agreement that acted (trainer/control.h): {"step", "control": [actions], "source":
// [...], "exit_code"} (exit_code only when the run stops there).
struct ControlRecord {
  int64_t step = 0;
  std::vector<std::string> actions, sources;
  int exit_code = -1;  // < 0: the run goes on
  bool during_eval = false;
};

// One JSON object per line, flushed per line so `tail -f` and crashed runs keep every record.
class MetricsLog {
 public:
  MetricsLog() = default;
  // "" -> disabled; append continues an existing file (a resumed run).
  explicit MetricsLog(const std::string& path, bool append = false);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const TrainRecord& r);
  void write(const EvalRecord& r);
  void write(const ControlRecord& r);
  void write(const CheckpointRecord& r);

 private:
  std::FILE* f_ = nullptr;
};

// "step   120/1000 | loss 4.1234 | lr 2.95e-03 | gnorm 0.812 | 5321 tok/s | 385.0 ms | ETA 5m39s"
std::string progress_line(const TrainRecord& r, int64_t total_steps);
std::string format_duration(double seconds);

}  // namespace sparta::monitoring
