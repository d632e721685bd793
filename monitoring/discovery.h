// Prometheus file_sd discovery: the list of every rank's metrics endpoint, which a Prometheus
// server reads through `file_sd_configs` (monitoring/prometheus.yml). Rank 0 writes it into the
// run directory; write-then-rename, since Prometheus applies only well-formed files.
#pragma once

#include <string>
#include <vector>

namespace sparta::monitoring {

struct Target {
  std::string address;  // host:port
  int rank = 0, local_rank = 0;
  std::string node, job, slurm_job_id;
};

// [{"targets": ["host:port"], "labels": {"rank", "local_rank", "node", "job", "slurm_job_id"}}].
std::string file_sd_json(const std::vector<Target>& targets);
void write_file_sd(const std::string& path, const std::vector<Target>& targets);

}  // namespace sparta::monitoring
