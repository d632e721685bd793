#include "data/meta.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "kernels/check.h"

namespace fs = std::filesystem;

namespace sparta::data {

PrepSummary read_meta(const std::string& dir) {
  const std::string path = (fs::path(dir) / "meta.json").string();
  std::ifstream f(path);
  if (!f) SPARTA_DATA_ERROR("no {} (is '{}' a sparta-prep data directory?)", path, dir);
  nlohmann::json j;
  try {
    f >> j;
    PrepSummary s;
    s.vocab_size = j.at("vocab_size").get<int>();
    s.train_tokens = j.at("train_tokens").get<long long>();
    s.val_tokens = j.at("val_tokens").get<long long>();
    s.train_bytes = j.at("train_bytes").get<long long>();
    s.val_bytes = j.at("val_bytes").get<long long>();
    s.train_docs = j.value("train_docs", 0);
    s.val_docs = j.value("val_docs", 0);
    return s;
  } catch (const nlohmann::json::exception& e) {
    SPARTA_DATA_ERROR("{}: malformed: {}", path, e.what());
  }
}

}  // namespace sparta::data
