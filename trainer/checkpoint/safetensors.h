// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of
// JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ..., "__metadata__": {...}},
// then the raw little-endian tensor bytes; offsets are relative to the end of the header. The
// header is padded with spaces to a multiple of 8 so every tensor starts 8-byte aligned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sparta::checkpoint {

struct TensorView {
  std::string name;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // host memory, f32
  size_t bytes = 0;
};

struct FileDigest {
  uint64_t bytes = 0;
  uint64_t xxh3 = 0;  // XXH3-64 of the whole file
};

// Writes atomically-safe content (the caller renames the directory): opens, writes, fsyncs.
FileDigest write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                             const std::map<std::string, std::string>& metadata);

class SafetensorsReader {
 public:
  struct Entry {
    std::string dtype;
    std::vector<int64_t> shape;
    size_t offset = 0, bytes = 0;
  };
  explicit SafetensorsReader(const std::string& path);
  const std::map<std::string, Entry>& entries() const { return entries_; }
  // Copies tensor `name` into dst (exactly entry.bytes bytes); errors name file and tensor.
  void read(const std::string& name, void* dst, size_t bytes) const;

 private:
  std::string path_;
  std::vector<char> data_;  // the tensor bytes (after the header)
  std::map<std::string, Entry> entries_;
};

// Writes bytes to a file and fsyncs it; checks the test-only failure injection budget.
FileDigest write_file_synced(const std::string& path, const std::vector<std::string_view>& chunks);
FileDigest digest_file(const std::string& path);
// Test hook: the next writes fail (like a full disk) after `bytes` more bytes; -1 disables.
void inject_write_failure_after(int64_t bytes);
void fsync_dir(const std::string& dir);

}  // namespace sparta::checkpoint
