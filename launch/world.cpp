#include "launch/world.h"

#include <cstdlib>
#include <string>

#include "kernels/check.h"

namespace sparta::launch {

namespace {
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0)
    SPARTA_USAGE_ERROR("environment variable {}='{}' is not a non-negative integer", name, v);
  return static_cast<int>(x);
}
bool has(const char* name) {
  return std::getenv(name) != nullptr;
}
}  // namespace

World discover_world() {
  World w;
  if (has("OMPI_COMM_WORLD_SIZE")) {
    w.launcher = "mpirun";
    w.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    w.size = env_int("OMPI_COMM_WORLD_SIZE", 1);
    w.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
    w.local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
  } else if (has("PMIX_RANK") && has("SLURM_NTASKS")) {
    w.launcher = "pmix";
    w.rank = env_int("PMIX_RANK", 0);
    w.size = env_int("SLURM_NTASKS", 1);
    w.local_rank = env_int("SLURM_LOCALID", 0);
    w.local_size = env_int("PMIX_LOCAL_SIZE", env_int("SLURM_NTASKS_PER_NODE", 1));
  } else if (has("SLURM_PROCID") && has("SLURM_NTASKS")) {
    w.launcher = "slurm";
    w.rank = env_int("SLURM_PROCID", 0);
    w.size = env_int("SLURM_NTASKS", 1);
    w.local_rank = env_int("SLURM_LOCALID", 0);
    w.local_size = env_int("SLURM_NTASKS_PER_NODE", 1);
  }
  if (w.size < 1 || w.rank >= w.size)
    SPARTA_USAGE_ERROR("launcher {} reports rank {} of world size {}", w.launcher, w.rank, w.size);
  w.restarts = env_int("SLURM_RESTART_COUNT", 0);
  if (const char* id = std::getenv("SLURM_JOB_ID")) w.slurm_job_id = id;
  return w;
}

}  // namespace sparta::launch
