// Text generation from a checkpoint: temperature and top-k sampling with counter-based
// randomness, so a fixed seed gives the same text on every run.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace sparta::trainer {

struct SampleOptions {
  std::string checkpoint;  // a step_* directory, or a directory of them (newest good one)
  std::string prompt;
  int64_t tokens = 100;
  double temperature = 0.8;  // 0: greedy
  int64_t top_k = 40;        // 0: the whole vocabulary
  uint64_t seed = 1;
};

// Generates; `on_text` receives the text as it grows (the prompt first). Returns the whole text.
std::string sample(const SampleOptions& opt, const std::function<void(const std::string&)>& on_text);

// The next token from logits[V]: temperature/top-k softmax draw with uniform u in (0, 1).
int32_t pick_token(const float* logits, int64_t V, double temperature, int64_t top_k, double u);

}  // namespace sparta::trainer
