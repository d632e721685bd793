// sparta-prep: text -> tokenizer + token shards + meta.json in a data directory.
#pragma once

#include <string>
#include <vector>

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

struct PrepSummary {
  bool rebuilt = false;
  int vocab_size = 0;
  long long train_tokens = 0, val_tokens = 0, train_bytes = 0, val_bytes = 0;
  int train_docs = 0, val_docs = 0;
};

// Idempotent: returns without work when `<out_dir>/meta.json` exists and !force.
PrepSummary run_prep(const PrepOptions& opt);

// Reads `<dir>/meta.json` (written by run_prep).
PrepSummary read_meta(const std::string& dir);

}  // namespace sparta::data
