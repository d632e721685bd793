// Test data made on the spot: a synthetic English-like text and a prepared data directory
// (tokenizer + shards) built from it. No downloads, a few hundred milliseconds.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "data/prep.h"

namespace sparta::test {

inline std::string temp_dir(const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() /
                 ("sparta_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

// Sentences over a 16-word vocabulary; words drawn from a fixed LCG.
inline std::string write_text(const std::string& dir, int lines) {
  static const char* words[] = {"the",   "king",  "said",  "unto", "them",  "and",
                                "went",  "into",  "house", "of",   "bread", "light",
                                "water", "stone", "river", "came"};
  const std::string path = dir + "/text.txt";
  std::ofstream f(path);
  uint32_t s = 12345;
  for (int l = 0; l < lines; ++l) {
    for (int w = 0; w < 12; ++w) {
      s = s * 1664525u + 1013904223u;
      f << (w ? " " : "") << words[(s >> 16) % 16];
    }
    f << ".\n";
  }
  return path;
}

// A data directory with a 64-token tokenizer; cached per process under `name`.
inline std::string prepared_data(const std::string& name, int lines = 600) {
  const std::string dir = temp_dir(name);
  data::PrepOptions opt;
  opt.out_dir = dir + "/data";
  opt.inputs = {write_text(dir, lines)};
  opt.vocab_size = 64;
  opt.val_fraction = 0.1;
  data::run_prep(opt);
  return opt.out_dir;
}

}  // namespace sparta::test
