// sparta-prep: text -> tokenizer + token shards + meta.json in a data directory.
#pragma once

#include <string>
#include <vector>

#include "data/meta.h"

namespace sparta::data {

struct PrepOptions {
  std::string out_dir;
  std::string corpus_dir;           // the built-in corpus (used when `inputs` is empty)
  std::vector<std::string> inputs;  // user text files
  double val_fraction = 0.02;       // user files: tail of each file held out
  int vocab_size = 4096;
  std::string tokenizer;  // an existing .model to use instead of training one
  bool force = false;     // rebuild even if meta.json exists
  int threads = 2;
};

// Idempotent: returns without work when `<out_dir>/meta.json` exists and !force.
PrepSummary run_prep(const PrepOptions& opt);

}  // namespace sparta::data
