// A data directory's meta.json: what sparta-prep wrote, read back by the trainer. Kept apart
// from prep.h so that reading it does not pull in SentencePiece (see data/README.md).
#pragma once

#include <string>

namespace sparta::data {

struct PrepSummary {
  bool rebuilt = false;
  int vocab_size = 0;
  long long train_tokens = 0, val_tokens = 0, train_bytes = 0, val_bytes = 0;
  int train_docs = 0, val_docs = 0;
};

// Reads `<dir>/meta.json` (written by run_prep).
PrepSummary read_meta(const std::string& dir);

}  // namespace sparta::data
