#include "launch/sbatch.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kernels/check.h"

namespace sparta::launch {

long parse_slurm_time(const std::string& t) {
  // Slurm's forms: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS. sparta-launch takes those with
  // seconds or with days.
  long d = 0, h = 0, m = 0, s = 0;
  char tail = 0;
  bool ok = false;
  if (std::sscanf(t.c_str(), "%ld-%ld:%ld:%ld%c", &d, &h, &m, &s, &tail) == 4)
    ok = true;
  else if (d = 0; std::sscanf(t.c_str(), "%ld:%ld:%ld%c", &h, &m, &s, &tail) == 3)
    ok = true;
  else if (h = 0; std::sscanf(t.c_str(), "%ld:%ld%c", &m, &s, &tail) == 2)
    ok = true;
  ok = ok && d >= 0 && h >= 0 && m >= 0 && m < 60 && s >= 0 && s < 60 &&
       t.find_first_not_of("0123456789:-") == std::string::npos;
  if (!ok) SPARTA_USAGE_ERROR("--time '{}': expected HH:MM:SS, MM:SS or D-HH:MM:SS", t);
  const long total = ((d * 24 + h) * 60 + m) * 60 + s;
  if (total <= 0) SPARTA_USAGE_ERROR("--time '{}' must be longer than 0 s", t);
  return total;
}

int signal_lead_seconds(double checkpoint_s, double step_s, double margin_s, long limit_s) {
  const double want = std::ceil(checkpoint_s + step_s + margin_s);
  const long lead = std::max<long>(60, static_cast<long>(want));
  if (lead >= limit_s)
    SPARTA_USAGE_ERROR(
        "the checkpoint warning needs {} s before the time limit (checkpoint {:.1f} s + step "
        "{:.1f} s + margin {:.0f} s, at least 60 s), but --time allows only {} s: ask for more "
        "time",
        lead, checkpoint_s, step_s, margin_s, limit_s);
  return static_cast<int>(std::min<long>(lead, 65535));  // sbatch's largest @secs
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789_-+=./:,@%") == std::string::npos)
    return s;
  std::string out(1, '\'');
  for (char c : s) {
    if (c == '\'')
      out.append("'\\''");  // close, an escaped quote, reopen
    else
      out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

namespace {
void check_job(const SlurmJob& j) {
  if (j.nodes < 1) SPARTA_USAGE_ERROR("--nodes {} must be at least 1", j.nodes);
  if (j.tasks_per_node < 1)
    SPARTA_USAGE_ERROR("--tasks-per-node {} must be at least 1", j.tasks_per_node);
  if (j.gpus_per_node < 0) SPARTA_USAGE_ERROR("--gpus-per-node {} must be >= 0", j.gpus_per_node);
  if (j.launcher != "srun" && j.launcher != "mpirun")
    SPARTA_USAGE_ERROR("--launcher '{}': expected srun or mpirun", j.launcher);
  if (j.max_restarts < 0) SPARTA_USAGE_ERROR("--max-restarts {} must be >= 0", j.max_restarts);
  if (j.run_dir.empty() || j.run_dir[0] != '/')
    SPARTA_USAGE_ERROR("--run-dir '{}' must be an absolute path (it is pinned across requeues)",
                       j.run_dir);
  for (const auto& a : j.train_args)
    if (a == "--run-dir" || a.rfind("--run-dir=", 0) == 0 || a == "--resume" ||
        a.rfind("--resume=", 0) == 0 || a == "--stop-at-step")
      SPARTA_USAGE_ERROR(
          "'{}' after --: the script sets --run-dir (from sparta-launch's --run-dir) and "
          "--resume auto itself",
          a);
  auto plain = [](const std::string& v) {
    return v.find_first_not_of(
               "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-") ==
           std::string::npos;
  };
  if (!plain(j.job_name) || !plain(j.partition))
    SPARTA_USAGE_ERROR("--job-name '{}' / --partition '{}': letters, digits and _.+- only",
                       j.job_name, j.partition);
}
}  // namespace

std::string sbatch_script(const SlurmJob& j) {
  check_job(j);
  (void)parse_slurm_time(j.time);
  const bool mpirun = j.launcher == "mpirun";
  std::string train = shell_quote(j.train_binary);
  for (const auto& a : j.train_args) {
    train.push_back(' ');
    train.append(shell_quote(a));
  }
  train += " --run-dir \"$RUN_DIR\" --resume auto";
  std::string s = "#!/bin/bash\n";
  s += fmt::format("# Written by: {}\n", j.generated_by);
  s += "# Submit: sbatch THIS_FILE. Preemption protocol: README \"Slurm quick start\".\n";
  s += fmt::format("#SBATCH --job-name={}\n", j.job_name.empty() ? "sparta" : j.job_name);
  s += fmt::format("#SBATCH --nodes={}\n#SBATCH --ntasks-per-node={}\n", j.nodes, j.tasks_per_node);
  if (j.gpus_per_node > 0) s += fmt::format("#SBATCH --gpus-per-node={}\n", j.gpus_per_node);
  if (j.cpus_per_task > 0) s += fmt::format("#SBATCH --cpus-per-task={}\n", j.cpus_per_task);
  s += fmt::format("#SBATCH --time={}\n", j.time);
  if (!j.partition.empty()) s += fmt::format("#SBATCH --partition={}\n", j.partition);
  s += "#SBATCH --requeue\n#SBATCH --open-mode=append\n";
  s += fmt::format("#SBATCH --output={}/slurm-%j.out\n", j.run_dir);
  // srun passes the signal to the job steps' tasks; mpirun gets it in the batch shell.
  s += fmt::format("#SBATCH --signal={}USR1@{}\n", mpirun ? "B:" : "", j.signal_seconds);
  s += fmt::format(R"SH(set -uo pipefail
RUN_DIR={}
MAX_RESTARTS={}
restarts=${{SLURM_RESTART_COUNT:-0}}
mkdir -p "$RUN_DIR"
echo "sparta-launch: job $SLURM_JOB_ID start (SLURM_RESTART_COUNT=$restarts) on $SLURM_JOB_NODELIST at $(date -Is)"
)SH",
                   shell_quote(j.run_dir), j.max_restarts);
  if (j.cpus_per_task > 0)  // srun of Slurm 22.05 does not inherit --cpus-per-task
    s += "export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK\n";
  // One launch attempt: the launcher in the background (the traps below must run while it
  // does), waited for until it has exited, since wait returns early on a trapped signal.
  std::string launch;
  if (mpirun) {
    // The batch shell gets the warning (B:USR1) and SIGTERM; both go to mpirun as USR1, which it
    // forwards to every rank (SIGTERM would make it end the job at once).
    launch = "  mpirun -np \"$SLURM_NTASKS\" " + train + " &\n  pid=$!\n";
    s += "trap 'echo \"sparta-launch: signal: passing USR1 to mpirun\"; kill -USR1 $pid' USR1 "
         "TERM\n";
  } else {
    launch = "  srun --mpi=pmix -K1 " + train + " &\n  pid=$!\n";
    // The steps got the signal themselves; the shell only keeps waiting for them.
    s +=
        "trap 'echo \"sparta-launch: the batch shell got a signal; the ranks have it too\"' TERM\n";
  }
  // RUN_DIR/status (written by sparta-train's rank 0): absent = no rank got as far as training
  // (a launch failure, e.g. a node still cleaning up the previous run's step: retried twice,
  // 10 s apart, unless it was a usage error); "running" = it died; "exited CODE STEPS" = the
  // trainer's own exit code, which wins over the launcher's.
  s += "pid=\n";
  s += "for attempt in 1 2 3; do\n  rm -f \"$RUN_DIR/status\"\n" + launch;
  s +=
      R"SH(  while :; do
    wait "$pid"
    rc=$?
    kill -0 "$pid" 2> /dev/null || break
  done
  status=$(cat "$RUN_DIR/status" 2> /dev/null)
  case "$status" in
    exited*)
      read -r _ rc steps <<< "$status"
      echo "sparta-launch: the run exited $rc after step $steps at $(date -Is)"
      break ;;
    running)
      echo "sparta-launch: the run died (launcher exit $rc) at $(date -Is)"
      [ "$rc" -ne 0 ] || rc=1
      break ;;
  esac
  [ "$rc" -ne 0 ] || rc=1
  echo "sparta-launch: the launch failed before training started (launcher exit $rc, attempt $attempt of 3)"
  [ "$rc" -ne 2 ] && [ "$attempt" -lt 3 ] || break
  sleep 10
done
if [ "$rc" -eq 75 ]; then
  if [ "$restarts" -lt "$MAX_RESTARTS" ]; then
    echo "sparta-launch: checkpointed; requeueing job $SLURM_JOB_ID (restart $((restarts + 1)) of $MAX_RESTARTS)"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
  fi
  echo "sparta-launch: checkpointed, but the job was requeued $restarts times already (--max-restarts $MAX_RESTARTS): not requeueing"
fi
exit "$rc"
)SH";
  return s;
}

bool measured_times(const std::string& run_dir, double* checkpoint_s, double* step_s) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  if (!in) return false;
  double ckpt = -1, step_sum = 0;
  int64_t steps = 0;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;
    if (j.contains("checkpoint_seconds") && j["checkpoint_seconds"].is_number())
      ckpt = std::max(ckpt, j["checkpoint_seconds"].get<double>());
    if (j.contains("step_ms") && j["step_ms"].is_number()) {
      step_sum += j["step_ms"].get<double>() / 1e3;
      ++steps;
    }
  }
  if (ckpt < 0 || steps == 0) return false;
  *checkpoint_s = ckpt;
  *step_s = step_sum / static_cast<double>(steps);
  return true;
}

}  // namespace sparta::launch
