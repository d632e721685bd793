// The pieces of the batch script sparta-launch writes (launch/sbatch.h): Slurm's time forms, the
// warning's lead, shell quoting, and the script's protocol lines. The script is run for real on
// a private Slurm by tests/slurm/requeue_test.sh.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "kernels/check.h"
#include "launch/sbatch.h"

namespace sparta::launch {
namespace {

int usage_code(const std::function<void()>& f, std::string* what) {
  try {
    f();
  } catch (const Error& e) {
    *what = e.what();
    return e.exit_code();
  }
  return 0;
}

TEST(Sbatch, SlurmTimeForms) {
  EXPECT_EQ(parse_slurm_time("01:00:00"), 3600);
  EXPECT_EQ(parse_slurm_time("30:15"), 1815);
  EXPECT_EQ(parse_slurm_time("2-03:04:05"), ((2 * 24 + 3) * 60 + 4) * 60 + 5);
  EXPECT_EQ(parse_slurm_time("100:00:00"), 360000);  // hours above 24 are Slurm's too
  for (const char* bad : {"1h", "", "01:60:00", "00:00:61", "1:2:3:4", "-1:00:00", "01:00:00x"}) {
    std::string what;
    EXPECT_EQ(usage_code([&] { parse_slurm_time(bad); }, &what), 2) << bad;
    EXPECT_NE(what.find("expected HH:MM:SS"), std::string::npos) << what;
  }
  std::string what;
  EXPECT_EQ(usage_code([&] { parse_slurm_time("00:00"); }, &what), 2);
  EXPECT_NE(what.find("must be longer than 0 s"), std::string::npos) << what;
}

TEST(Sbatch, SignalLeadCoversCheckpointStepAndMargin) {
  EXPECT_EQ(signal_lead_seconds(60, 30, 60, 3600), 150);
  EXPECT_EQ(signal_lead_seconds(0.2, 0.1, 0, 3600), 60);     // Slurm's 60 s resolution
  EXPECT_EQ(signal_lead_seconds(100.1, 10, 60, 3600), 171);  // rounded up
  std::string what;
  EXPECT_EQ(usage_code([&] { signal_lead_seconds(60, 30, 60, 150); }, &what), 2);
  EXPECT_NE(what.find("--time allows only 150 s"), std::string::npos) << what;
}

TEST(Sbatch, ShellQuoteSurvivesTheShell) {
  EXPECT_EQ(shell_quote("train.steps=10"), "train.steps=10");
  EXPECT_EQ(shell_quote("a b"), "'a b'");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("$HOME"), "'$HOME'");
}

SlurmJob job(const std::string& launcher) {
  SlurmJob j;
  j.nodes = 2;
  j.tasks_per_node = 4;
  j.time = "01:00:00";
  j.run_dir = "/runs/x";
  j.launcher = launcher;
  j.signal_seconds = 150;
  j.train_binary = "/bin/sparta-train";
  j.train_args = {"--set", "x=it's"};
  j.generated_by = "test";
  return j;
}

bool has(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

TEST(Sbatch, ScriptCarriesTheProtocol) {
  const std::string s = sbatch_script(job("srun"));
  for (const char* line :
       {"#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --time=01:00:00",
        "#SBATCH --requeue", "#SBATCH --open-mode=append", "#SBATCH --output=/runs/x/slurm-%j.out",
        "#SBATCH --signal=USR1@150", "srun --mpi=pmix -K1 /bin/sparta-train --set 'x=it'\\''s'",
        "--run-dir \"$RUN_DIR\" --resume auto", "scontrol requeue \"$SLURM_JOB_ID\"",
        "if [ \"$rc\" -eq 75 ]", "rm -f \"$RUN_DIR/status\""})
    EXPECT_TRUE(has(s, line)) << line;
  const std::string m = sbatch_script(job("mpirun"));
  EXPECT_TRUE(has(m, "#SBATCH --signal=B:USR1@150"));
  EXPECT_TRUE(has(m, "mpirun -np \"$SLURM_NTASKS\""));
  EXPECT_TRUE(has(m, "kill -USR1 $pid' USR1 TERM"));
  EXPECT_FALSE(has(m, "srun "));
  std::string what;
  EXPECT_EQ(usage_code([&] { sbatch_script(job("torchrun")); }, &what), 2);
  EXPECT_NE(what.find("expected srun or mpirun"), std::string::npos) << what;
}

}  // namespace
}  // namespace sparta::launch
