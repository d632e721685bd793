#include "trainer/checkpoint/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include "kernels/check.h"

namespace sparta::checkpoint {

namespace {
std::atomic<int64_t> g_fail_budget{-1};
}

void inject_write_failure_after(int64_t bytes) { g_fail_budget = bytes; }

FileDigest write_file_synced(const std::string& path, const std::vector<std::string_view>& chunks) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) SPARTA_DATA_ERROR("cannot create {}: {}", path, std::strerror(errno));
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  FileDigest d;
  auto fail = [&](const std::string& why) {
    XXH3_freeState(st);
    ::close(fd);
    SPARTA_DATA_ERROR("writing {} failed after {} bytes: {}", path, d.bytes, why);
  };
  for (std::string_view c : chunks) {
    XXH3_64bits_update(st, c.data(), c.size());
    size_t done = 0;
    while (done < c.size()) {
      size_t n = std::min<size_t>(c.size() - done, size_t{1} << 26);
      const int64_t budget = g_fail_budget.load();
      if (budget >= 0) {
        if (static_cast<int64_t>(n) > budget) {
          if (budget > 0 && ::write(fd, c.data() + done, static_cast<size_t>(budget)) > 0)
            d.bytes += static_cast<uint64_t>(budget);
          g_fail_budget = -1;
          fail("injected failure (simulated full disk)");
        }
        g_fail_budget -= static_cast<int64_t>(n);
      }
      const ssize_t w = ::write(fd, c.data() + done, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail(std::strerror(errno));
      }
      done += static_cast<size_t>(w);
      d.bytes += static_cast<uint64_t>(w);
    }
  }
  if (::fsync(fd) != 0) fail(std::string("fsync: ") + std::strerror(errno));
  ::close(fd);
  d.xxh3 = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return d;
}

FileDigest digest_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) SPARTA_DATA_ERROR("cannot read {}", path);
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  std::vector<char> buf(size_t{1} << 22);
  FileDigest d;
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<size_t>(f.gcount());
    XXH3_64bits_update(st, buf.data(), n);
    d.bytes += n;
  }
  d.xxh3 = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return d;
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) SPARTA_DATA_ERROR("cannot open directory {}: {}", dir, std::strerror(errno));
  ::fsync(fd);
  ::close(fd);
}

FileDigest write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                             const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes}}};
    offset += t.bytes;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  const uint64_t n = h.size();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  std::vector<std::string_view> chunks = {std::string_view(len, 8), h};
  for (const auto& t : tensors) chunks.emplace_back(static_cast<const char*>(t.data), t.bytes);
  return write_file_synced(path, chunks);
}

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) SPARTA_DATA_ERROR("cannot read {}", path);
  const auto size = static_cast<uint64_t>(f.tellg());
  f.seekg(0);
  unsigned char len[8] = {};
  if (size < 8 || !f.read(reinterpret_cast<char*>(len), 8))
    SPARTA_DATA_ERROR("{}: truncated safetensors file ({} bytes)", path, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  if (n > size - 8) SPARTA_DATA_ERROR("{}: header length {} exceeds the file size {}", path, n, size);
  std::string h(n, '\0');
  f.read(h.data(), static_cast<std::streamsize>(n));
  data_.resize(size - 8 - n);
  f.read(data_.data(), static_cast<std::streamsize>(data_.size()));
  if (!f) SPARTA_DATA_ERROR("{}: read failed", path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(h);
    for (const auto& [name, v] : j.items()) {
      if (name == "__metadata__") continue;
      Entry e;
      e.dtype = v.at("dtype").get<std::string>();
      e.shape = v.at("shape").get<std::vector<int64_t>>();
      const auto off = v.at("data_offsets").get<std::vector<uint64_t>>();
      if (off.size() != 2 || off[1] < off[0] || off[1] > data_.size())
        SPARTA_DATA_ERROR("{}: tensor {} has data offsets outside the file", path, name);
      e.offset = off[0];
      e.bytes = off[1] - off[0];
      entries_[name] = e;
    }
  } catch (const nlohmann::json::exception& e) {
    SPARTA_DATA_ERROR("{}: malformed safetensors header: {}", path, e.what());
  }
}

void SafetensorsReader::read(const std::string& name, void* dst, size_t bytes) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) SPARTA_DATA_ERROR("{}: no tensor named {}", path_, name);
  if (it->second.dtype != "F32" || it->second.bytes != bytes)
    SPARTA_DATA_ERROR("{}: tensor {} is {} with {} bytes, expected F32 with {} bytes", path_, name,
                      it->second.dtype, it->second.bytes, bytes);
  std::memcpy(dst, data_.data() + it->second.offset, bytes);
}

}  // namespace sparta::checkpoint
