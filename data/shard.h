// Token shards in the llm.c format: a 256 x int32 header (magic 20240520, version 1, token
// count), then the tokens as little-endian uint16. Readers memory-map the file and validate it
// once at open: magic, version, size against the header's count, and every token below the
// vocabulary size. Any violation is a data error naming the file and the byte offset.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace sparta::data {

constexpr int32_t kShardMagic = 20240520;
constexpr int32_t kShardVersion = 1;
constexpr size_t kShardHeaderInts = 256;
constexpr size_t kShardHeaderBytes = kShardHeaderInts * sizeof(int32_t);

// Writes atomically (temporary file + rename), so a crash never leaves a half shard behind.
void write_shard(const std::string& path, std::span<const uint16_t> tokens);

class Shard {
 public:
  // Maps and validates `path`; vocab_size 0 skips the token-range scan.
  Shard(const std::string& path, int64_t vocab_size);
  ~Shard();
  Shard(Shard&& o) noexcept;
  Shard& operator=(Shard&&) = delete;
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  const std::string& path() const { return path_; }
  int64_t size() const { return count_; }
  const uint16_t* tokens() const { return tokens_; }

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const uint16_t* tokens_ = nullptr;
  int64_t count_ = 0;
};

// The shards `<dir>/<split>_NNN.bin` in order (split = "train" or "val"); empty if none.
std::vector<std::string> list_shards(const std::string& dir, const std::string& split);

}  // namespace sparta::data
