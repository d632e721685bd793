#include "data/loader.h"

#include <algorithm>

#include "kernels/check.h"
#include "kernels/rng.h"

namespace sparta::data {

TokenDataset::TokenDataset(const std::string& dir, const std::string& split, int64_t seq_len,
                           int64_t vocab_size)
    : T_(seq_len) {
  const auto paths = list_shards(dir, split);
  if (paths.empty())
    SPARTA_DATA_ERROR("no {} shards ({}_NNN.bin) in data directory '{}': run sparta-prep first",
                      split, split, dir);
  for (const auto& p : paths) {
    shards_.emplace_back(p, vocab_size);
    first_window_.push_back(total_windows_);
    total_windows_ += std::max<int64_t>(0, (shards_.back().size() - 1) / T_);
  }
  if (total_windows_ == 0)
    SPARTA_DATA_ERROR("{} split in '{}' has {} tokens: fewer than one window of seq_len + 1 = {}",
                      split, dir, num_tokens(), T_ + 1);
}

int64_t TokenDataset::num_tokens() const {
  int64_t n = 0;
  for (const auto& s : shards_) n += s.size();
  return n;
}

void TokenDataset::window(int64_t w, int32_t* inputs, int32_t* targets) const {
  SPARTA_CHECK(0 <= w && w < total_windows_, "window {} of {}", w, total_windows_);
  const size_t s = static_cast<size_t>(
      std::upper_bound(first_window_.begin(), first_window_.end(), w) - first_window_.begin() - 1);
  const uint16_t* t = shards_[s].tokens() + (w - first_window_[s]) * T_;
  for (int64_t i = 0; i < T_; ++i) {
    inputs[i] = t[i];
    targets[i] = t[i + 1];
  }
}

WindowPermutation::WindowPermutation(int64_t n, uint64_t seed) : n_(n), seed_(seed) {
  SPARTA_CHECK(n > 0, "permutation of {} elements", n);
  int bits = 2;
  while ((int64_t{1} << bits) < n) bits += 2;
  half_bits_ = bits / 2;
}

uint64_t WindowPermutation::feistel(uint64_t epoch, uint64_t x) const {
  const uint64_t mask = (uint64_t{1} << half_bits_) - 1;
  uint64_t l = x >> half_bits_, r = x & mask;
  const uint64_t stream = kernels::rng_stream(kernels::RngPurpose::data_order, epoch);
  for (uint64_t round = 0; round < 4; ++round) {
    const uint64_t f = kernels::philox(seed_, stream, (round << 40) | r)[0] & mask;
    const uint64_t nl = r;
    r = l ^ f;
    l = nl;
  }
  return (l << half_bits_) | r;
}

int64_t WindowPermutation::operator()(int64_t epoch, int64_t index) const {
  SPARTA_CHECK(0 <= index && index < n_, "index {} of {}", index, n_);
  // Cycle-walking keeps a bijection of [0, 4^h) a bijection when restricted to [0, n).
  uint64_t y = feistel(static_cast<uint64_t>(epoch), static_cast<uint64_t>(index));
  while (y >= static_cast<uint64_t>(n_)) y = feistel(static_cast<uint64_t>(epoch), y);
  return static_cast<int64_t>(y);
}

DataLoader::DataLoader(const TokenDataset& data, int64_t batch, uint64_t seed, int rank, int world)
    : data_(data), B_(batch), rank_(rank), world_(world), perm_(data.num_windows(), seed) {}

void DataLoader::train_batch(int64_t step, int micro, int accum, int32_t* tokens,
                             int32_t* targets) const {
  const int64_t W = data_.num_windows(), T = data_.seq_len();
  const int64_t base = ((step * accum + micro) * world_ + rank_) * B_;
  for (int64_t b = 0; b < B_; ++b) {
    const int64_t g = base + b;
    data_.window(perm_(g / W, g % W), tokens + b * T, targets + b * T);
  }
}

int64_t DataLoader::epoch_of(int64_t step, int accum) const {
  return (step * accum * world_ * B_) / data_.num_windows();
}

int64_t DataLoader::eval_batches() const {
  return (data_.num_windows() + B_ - 1) / B_;
}

void DataLoader::eval_batch(int64_t index, int32_t* tokens, int32_t* targets) const {
  const int64_t T = data_.seq_len();
  for (int64_t b = 0; b < B_; ++b) {
    const int64_t w = index * B_ + b;
    if (w < data_.num_windows()) {
      data_.window(w, tokens + b * T, targets + b * T);
    } else {
      std::fill(tokens + b * T, tokens + (b + 1) * T, 0);
      std::fill(targets + b * T, targets + (b + 1) * T, -1);
    }
  }
}

}  // namespace sparta::data
