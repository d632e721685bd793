#include "monitoring/discovery.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "kernels/check.h"

namespace sparta::monitoring {

std::string file_sd_json(const std::vector<Target>& targets) {
  nlohmann::json j = nlohmann::json::array();
  for (const Target& t : targets)
    j.push_back({{"targets", {t.address}},
                 {"labels",
                  {{"rank", std::to_string(t.rank)},
                   {"local_rank", std::to_string(t.local_rank)},
                   {"node", t.node},
                   {"job", t.job},
                   {"slurm_job_id", t.slurm_job_id}}}});
  return j.dump(1) + "\n";
}

void write_file_sd(const std::string& path, const std::vector<Target>& targets) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp);
    out << file_sd_json(targets);
    if (!out) SPARTA_DATA_ERROR("cannot write {}", tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) SPARTA_DATA_ERROR("cannot rename {} to {}: {}", tmp, path, ec.message());
}

}  // namespace sparta::monitoring
