// Deterministic batches. A dataset is cut into windows of T+1 tokens at stride T (inputs are the
// first T, targets the last T). The training order is a pseudo-random permutation of the windows
// per epoch (a 4-round Feistel network keyed by (seed, epoch), cycle-walked to the window count),
// so sample k of epoch e is a pure function of (seed, e, k): no state to save, no sample repeated
// within an epoch, and any (step, rank) can be produced directly. Nothing is allocated per batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/shard.h"

namespace sparta::data {

class TokenDataset {
 public:
  // All `<dir>/<split>_NNN.bin` shards; tokens validated against vocab_size.
  TokenDataset(const std::string& dir, const std::string& split, int64_t seq_len,
               int64_t vocab_size);
  int64_t num_windows() const { return total_windows_; }
  int64_t num_tokens() const;
  int64_t seq_len() const { return T_; }
  // Copies window w's T inputs and T targets.
  void window(int64_t w, int32_t* inputs, int32_t* targets) const;
  const std::vector<Shard>& shards() const { return shards_; }

 private:
  std::vector<Shard> shards_;
  std::vector<int64_t> first_window_;  // prefix sums of windows per shard
  int64_t T_;
  int64_t total_windows_ = 0;
};

// A bijection of [0, n) keyed by (seed, epoch).
class WindowPermutation {
 public:
  WindowPermutation(int64_t n, uint64_t seed);
  int64_t operator()(int64_t epoch, int64_t index) const;

 private:
  uint64_t feistel(uint64_t epoch, uint64_t x) const;
  int64_t n_;
  uint64_t seed_;
  int half_bits_;
};

class DataLoader {
 public:
  // Micro-batches of B windows. The global sample index of micro-batch `micro` of `step` on
  // `rank` is ((step * accum + micro) * world + rank) * B + b: ranks see disjoint samples.
  DataLoader(const TokenDataset& data, int64_t batch, uint64_t seed, int rank = 0, int world = 1);
  void train_batch(int64_t step, int micro, int accum, int32_t* tokens, int32_t* targets) const;
  // Evaluation batches read windows in order; past the end, targets are -1 (ignored).
  int64_t eval_batches() const;
  void eval_batch(int64_t index, int32_t* tokens, int32_t* targets) const;
  int64_t epoch_of(int64_t step, int accum) const;

 private:
  const TokenDataset& data_;
  int64_t B_;
  int rank_, world_;
  WindowPermutation perm_;
};

}  // namespace sparta::data
