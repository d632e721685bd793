#include "data/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include "kernels/check.h"

namespace sparta::data {

void write_shard(const std::string& path, std::span<const uint16_t> tokens) {
  int32_t header[kShardHeaderInts] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  SPARTA_CHECK(tokens.size() <= 0x7fffffffu, "shard of {} tokens exceeds the format's int32 count",
               tokens.size());
  header[2] = static_cast<int32_t>(tokens.size());
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) SPARTA_DATA_ERROR("cannot create {}: {}", tmp, std::strerror(errno));
    f.write(reinterpret_cast<const char*>(header), sizeof(header));
    f.write(reinterpret_cast<const char*>(tokens.data()),
            static_cast<std::streamsize>(tokens.size_bytes()));
    f.flush();
    if (!f) SPARTA_DATA_ERROR("write to {} failed: {}", tmp, std::strerror(errno));
  }
  std::filesystem::rename(tmp, path);
}

Shard::Shard(const std::string& path, int64_t vocab_size) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) SPARTA_DATA_ERROR("cannot open token shard {}: {}", path, std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  const size_t bytes = static_cast<size_t>(st.st_size);
  if (bytes < kShardHeaderBytes) {
    ::close(fd);
    SPARTA_DATA_ERROR(
        "{}: truncated token shard: {} bytes, the header alone is {} (at byte offset {})", path,
        bytes, kShardHeaderBytes, bytes);
  }
  map_ = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    SPARTA_DATA_ERROR("cannot map {}: {}", path, std::strerror(errno));
  }
  map_bytes_ = bytes;
  const auto* header = static_cast<const int32_t*>(map_);
  if (header[0] != kShardMagic)
    SPARTA_DATA_ERROR("{}: not a token shard: magic {} at byte offset 0, expected {}", path,
                      header[0], kShardMagic);
  if (header[1] != kShardVersion)
    SPARTA_DATA_ERROR("{}: unsupported shard version {} at byte offset 4, expected {}", path,
                      header[1], kShardVersion);
  count_ = header[2];
  const size_t want = kShardHeaderBytes + static_cast<size_t>(count_) * sizeof(uint16_t);
  if (count_ < 0 || bytes != want)
    SPARTA_DATA_ERROR(
        "{}: truncated or padded token shard: header (byte offset 8) says {} tokens = "
        "{} bytes, file has {} bytes",
        path, count_, want, bytes);
  tokens_ = reinterpret_cast<const uint16_t*>(static_cast<const char*>(map_) + kShardHeaderBytes);
  if (vocab_size > 0) {
    const uint16_t* bad =
        std::find_if(tokens_, tokens_ + count_, [&](uint16_t t) { return t >= vocab_size; });
    if (bad != tokens_ + count_)
      SPARTA_DATA_ERROR("{}: token {} at byte offset {} is >= the vocabulary size {}", path, *bad,
                        kShardHeaderBytes + static_cast<size_t>(bad - tokens_) * sizeof(uint16_t),
                        vocab_size);
  }
}

Shard::~Shard() {
  if (map_) ::munmap(map_, map_bytes_);
}

Shard::Shard(Shard&& o) noexcept
    : path_(std::move(o.path_)),
      map_(std::exchange(o.map_, nullptr)),
      map_bytes_(o.map_bytes_),
      tokens_(o.tokens_),
      count_(o.count_) {}

std::vector<std::string> list_shards(const std::string& dir, const std::string& split) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(split + "_", 0) == 0 && e.path().extension() == ".bin")
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace sparta::data
