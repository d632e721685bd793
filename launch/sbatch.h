// The Slurm batch script sparta-launch writes (README "Slurm quick start"). The script is the
// whole preemption protocol, readable by the user:
//   - `--signal=USR1@S`: Slurm warns the ranks S seconds before the time limit, S = the measured
//     checkpoint time + one step + a margin; sparta-train checkpoints at the next agreed step
//     and exits 75 ("checkpointed, requeue me", trainer/control.h);
//   - on 75, while SLURM_RESTART_COUNT is below the limit, the script runs `scontrol requeue`:
//     the same job id, the same run directory (pinned in the script), `--resume auto`, and
//     `--open-mode=append` keeps one log across the restarts;
//   - srun variant: `srun --mpi=pmix -K1` (a failed rank ends the step); mpirun variant: mpirun
//     inside the allocation, the signal sent to the batch shell (`B:USR1`), which passes it on
//     (Open MPI's mpirun forwards USR1 to the ranks but ends the job on SIGTERM).
#pragma once

#include <string>
#include <vector>

namespace sparta::launch {

struct SlurmJob {
  int nodes = 1, tasks_per_node = 1, gpus_per_node = 0, cpus_per_task = 0;
  std::string time;                 // HH:MM:SS, D-HH:MM:SS or MM:SS
  std::string partition, job_name;  // "" : the cluster's default / "sparta"
  std::string run_dir;              // absolute; one across requeues
  std::string launcher = "srun";    // srun | mpirun
  int max_restarts = 3;
  int signal_seconds = 0;    // lead time of the warning signal
  std::string train_binary;  // absolute path of sparta-train
  std::vector<std::string> train_args;
  std::string generated_by;  // the command line, for the script's header
};

// Seconds of the time limit (a usage error naming the option when malformed or zero).
long parse_slurm_time(const std::string& t);
// The warning's lead: checkpoint + step + margin seconds, rounded up, at least 60 (Slurm's
// resolution: the signal may come up to 60 s early) and less than the time limit.
int signal_lead_seconds(double checkpoint_s, double step_s, double margin_s, long limit_s);
// Checks the job (usage errors name the option) and returns the script text.
std::string sbatch_script(const SlurmJob& job);
// Shell-quotes one word (single quotes).
std::string shell_quote(const std::string& s);

// The last checkpoint time and mean step time an earlier run in run_dir measured (its
// metrics.jsonl); false when there is none.
bool measured_times(const std::string& run_dir, double* checkpoint_s, double* step_s);

}  // namespace sparta::launch
