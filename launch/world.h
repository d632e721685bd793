// Where this process sits in a job, read from the launcher's environment before any
// communicator exists: Open MPI (mpirun), PMIx (srun --mpi=pmix), Slurm, or none.
#pragma once

#include <string>

namespace sparta::launch {

struct World {
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;             // ranks on this node (they share its cores)
  std::string launcher = "none";  // "mpirun", "pmix", "slurm", "none"
  int restarts = 0;               // SLURM_RESTART_COUNT: how often Slurm requeued this job
  std::string slurm_job_id;       // SLURM_JOB_ID ("" outside Slurm)
};

World discover_world();

}  // namespace sparta::launch
