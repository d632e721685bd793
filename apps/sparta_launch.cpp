// sparta-launch: writes (and with --submit, submits) the Slurm batch script of a sparta-train
// job, with the preemption protocol of launch/sbatch.h. See README "Slurm quick start".
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/core.h>

#include "launch/program.h"
#include "launch/sbatch.h"

namespace {
namespace fs = std::filesystem;

std::string self_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

// Runs sbatch on the script; returns the job id it printed.
std::string submit(const std::string& script) {
  const std::string cmd = "sbatch --parsable " + sparta::launch::shell_quote(script) + " 2>&1";
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) SPARTA_DATA_ERROR("cannot run sbatch: {}", std::strerror(errno));
  std::string out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int status = ::pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  if (status != 0)
    SPARTA_DATA_ERROR("sbatch {} failed (status {}): {}", script, status,
                      out.empty() ? "no output (is Slurm installed and SLURM_CONF set?)" : out);
  return out.substr(0, out.find(';'));  // "id;cluster" on federated clusters
}
}  // namespace

int main(int argc, char** argv) {
  sparta::kernels::select_blas_kernel(argv);
  CLI::App app{"sparta-launch: write and submit the batch script of a sparta-train job",
               "sparta-launch"};
  app.require_subcommand(1);
  sparta::launch::SlurmJob job;
  std::string output;
  bool do_submit = false;
  double margin = 60, ckpt_s = -1, step_s = -1;
  auto* slurm = app.add_subcommand("slurm", "an sbatch script with preemption-safe requeue");
  slurm->add_option("--nodes", job.nodes, "nodes")->required();
  slurm->add_option("--tasks-per-node", job.tasks_per_node, "ranks per node")->required();
  slurm->add_option("--gpus-per-node", job.gpus_per_node, "GPUs per node (0: none)");
  slurm->add_option("--cpus-per-task", job.cpus_per_task, "CPU cores per rank (0: Slurm's)");
  slurm->add_option("--time", job.time, "time limit, HH:MM:SS or D-HH:MM:SS")->required();
  slurm->add_option("--partition", job.partition, "partition (default: the cluster's)");
  slurm->add_option("--job-name", job.job_name, "job name (default sparta)");
  slurm->add_option("--run-dir", job.run_dir, "the run directory, kept across requeues")
      ->required();
  slurm->add_option("--launcher", job.launcher,
                    "srun (srun --mpi=pmix -K1) or mpirun (inside the allocation)");
  slurm->add_option("--max-restarts", job.max_restarts, "requeues at most (default 3)");
  slurm->add_option("--checkpoint-seconds", ckpt_s,
                    "time to save a checkpoint (default: measured by an earlier run in "
                    "--run-dir, else 60)");
  slurm->add_option("--step-seconds", step_s,
                    "time of one step (default: measured by an earlier run, else 30)");
  slurm->add_option("--margin-seconds", margin, "added to the warning's lead (default 60)");
  slurm->add_option("--output", output, "script path (default <run-dir>/sparta.sbatch)");
  slurm->add_flag("--submit", do_submit, "submit it with sbatch and print the job id");
  slurm->add_option("train_args", job.train_args, "sparta-train arguments, after --");
  slurm->positionals_at_end();

  return sparta::launch::run_main("sparta-launch", app, argc, argv, [&] {
    if (!job.run_dir.empty() && job.run_dir[0] != '/')
      job.run_dir = fs::absolute(job.run_dir).lexically_normal().string();
    while (job.run_dir.size() > 1 && job.run_dir.back() == '/') job.run_dir.pop_back();
    double m_ckpt = 0, m_step = 0;
    const bool measured = sparta::launch::measured_times(job.run_dir, &m_ckpt, &m_step);
    if (ckpt_s < 0) ckpt_s = measured ? m_ckpt : 60;
    if (step_s < 0) step_s = measured ? m_step : 30;
    if (margin < 0) SPARTA_USAGE_ERROR("--margin-seconds {} must be >= 0", margin);
    job.signal_seconds = sparta::launch::signal_lead_seconds(
        ckpt_s, step_s, margin, sparta::launch::parse_slurm_time(job.time));
    job.train_binary = (fs::path(self_dir()) / "sparta-train").string();
    job.generated_by = "sparta-launch";
    for (int i = 1; i < argc; ++i) job.generated_by += " " + sparta::launch::shell_quote(argv[i]);
    const std::string text = sparta::launch::sbatch_script(job);
    if (output.empty()) output = job.run_dir + "/sparta.sbatch";
    std::error_code ec;
    fs::create_directories(fs::path(output).parent_path(), ec);
    std::ofstream(output) << text;
    if (!std::ifstream(output)) SPARTA_DATA_ERROR("cannot write {}", output);
    fs::permissions(output, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add,
                    ec);
    fmt::print(
        "sparta-launch: wrote {} ({} x {} ranks, --time {}, USR1 {} s before the end{}; "
        "{} requeues at most)\n",
        output, job.nodes, job.tasks_per_node, job.time, job.signal_seconds,
        measured ? fmt::format(": checkpoint {:.1f} s and step {:.2f} s measured in {}", m_ckpt,
                               m_step, job.run_dir)
                 : "",
        job.max_restarts);
    if (do_submit) fmt::print("sparta-launch: submitted job {}\n", submit(output));
    std::fflush(stdout);
    return 0;
  });
}
