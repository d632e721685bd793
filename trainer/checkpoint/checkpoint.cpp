#include "trainer/checkpoint/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kernels/arena.h"
#include "trainer/checkpoint/safetensors.h"

namespace sparta::checkpoint {

namespace fs = std::filesystem;
namespace k = sparta::kernels;
using nlohmann::json;

namespace {

constexpr int kFormatVersion = 1;

std::string step_name(int64_t step) {
  return fmt::format("step_{:08d}", step);
}

std::vector<int64_t> shape_of(const k::Tensor& t) {
  return std::vector<int64_t>(t.shape.begin(), t.shape.begin() + t.ndim);
}

// Host copies of a list of (device) tensors, kept alive while the file is written.
struct HostStage {
  std::vector<std::vector<float>> bufs;
  std::vector<TensorView> views;
  void add(const std::string& name, const k::Tensor& t) {
    bufs.emplace_back(static_cast<size_t>(t.numel()));
    k::Tensor h = t;
    h.device = k::Device::cpu();
    h.data = bufs.back().data();
    k::copy(h, t);
    views.push_back({name, shape_of(t), bufs.back().data(), t.nbytes()});
  }
  // A parameter's (or moment's) full tensor: gathered from its shard group when sharded.
  void add_full(const models::Transformer& model, const models::Param& p, const std::string& name,
                const k::Tensor& local) {
    if (p.shard.parts == 1) return add(name, local);
    size_t n = 1;
    for (int64_t d : p.full_shape) n *= static_cast<size_t>(d);
    bufs.emplace_back(n);
    model.gather_full(p, local, bufs.back().data());
    views.push_back({name, p.full_shape, bufs.back().data(), n * sizeof(float)});
  }
};

// The optimizer moment of parameter p lives at p's offset in the moment arena.
k::Tensor moment_of(const k::Tensor& flat_moment, const k::Tensor& flat_params,
                    const k::Tensor& p) {
  k::Tensor t = p;
  t.data = static_cast<char*>(flat_moment.data) +
           (static_cast<char*>(p.data) - static_cast<char*>(flat_params.data));
  return t;
}

std::string hex(uint64_t v) {
  return fmt::format("{:016x}", v);
}

void write_text_synced(const std::string& path, const std::string& text) {
  write_file_synced(path, {std::string_view(text)});
}

json read_json(const std::string& path) {
  std::ifstream f(path);
  if (!f) SPARTA_DATA_ERROR("cannot read {}", path);
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    SPARTA_DATA_ERROR("{}: malformed JSON: {}", path, e.what());
  }
}

}  // namespace

SaveResult save(const std::string& dir, const SaveInfo& info, const models::Transformer& model,
                const trainer::AdamW& optim, int keep_last, bool write) {
  const auto t0 = std::chrono::steady_clock::now();
  HostStage params, moments;
  const k::Tensor fp = model.flat_params(), fm = optim.flat_m(), fv = optim.flat_v();
  for (const auto& p : model.params()) {  // collective for sharded parameters
    params.add_full(model, p, p.name, p.w);
    moments.add_full(model, p, "m." + p.name, moment_of(fm, fp, p.w));
    moments.add_full(model, p, "v." + p.name, moment_of(fv, fp, p.w));
  }
  if (!write) return {};
  fs::create_directories(dir);
  const std::string name = step_name(info.step);
  const fs::path final_dir = fs::path(dir) / name;
  const fs::path tmp = fs::path(dir) / fmt::format("{}.tmp-{}", name, ::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);

  json tensors = json::array(), files = json::object();
  for (const auto& b : model.buffers()) params.add(b.name, b.w);  // no optimizer state
  auto describe = [&](const HostStage& s, const char* file) {
    for (const auto& v : s.views) {
      json slice = json::array();
      for (int64_t d : v.shape) slice.push_back({0, d});
      tensors.push_back({{"name", v.name},
                         {"file", file},
                         {"dtype", "F32"},
                         {"shape", v.shape},
                         {"slice", slice}});
    }
  };
  describe(params, "model.safetensors");
  describe(moments, "optim.safetensors");
  const std::map<std::string, std::string> meta = {{"format", "sparta"},
                                                   {"step", std::to_string(info.step)}};
  auto record = [&](const char* file, FileDigest d) {
    files[file] = {{"bytes", d.bytes}, {"xxh3_64", hex(d.xxh3)}};
  };
  record("model.safetensors",
         write_safetensors((tmp / "model.safetensors").string(), params.views, meta));
  record("optim.safetensors",
         write_safetensors((tmp / "optim.safetensors").string(), moments.views, meta));
  if (!info.tokenizer_path.empty()) {
    std::ifstream in(info.tokenizer_path, std::ios::binary);
    if (!in) SPARTA_DATA_ERROR("cannot read tokenizer {}", info.tokenizer_path);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    record("tokenizer.model",
           write_file_synced((tmp / "tokenizer.model").string(), {std::string_view(bytes)}));
  }
  const json manifest = {
      {"format", "sparta-checkpoint"},
      {"version", kFormatVersion},
      {"step", info.step},
      {"tokens_seen", info.tokens_seen},
      {"config", info.config_toml},
      {"layout",
       {{"world", info.layout.world},
        {"dp", info.layout.dp},
        {"tp", info.layout.tp},
        {"cp", info.layout.cp},
        {"ep", info.layout.ep},
        {"zero", info.layout.zero}}},
      {"rng", {{"generator", "philox4x32-10"}, {"seed", info.seed}, {"step", info.step}}},
      {"data_loader",
       {{"seed", info.seed},
        {"next_step", info.step},
        {"samples_consumed", info.step * info.samples_per_step},
        {"epoch", info.epoch}}},
      {"tensors", tensors},
      {"files", files}};
  write_text_synced((tmp / "manifest.json").string(), manifest.dump(1) + "\n");
  fsync_dir(tmp.string());
  if (fs::exists(final_dir)) fs::remove_all(final_dir);  // a re-save of the same step
  fs::rename(tmp, final_dir);
  fsync_dir(dir);
  const fs::path latest_tmp = fs::path(dir) / fmt::format("latest.tmp-{}", ::getpid());
  write_text_synced(latest_tmp.string(), name + "\n");
  fs::rename(latest_tmp, fs::path(dir) / "latest");
  fsync_dir(dir);

  if (keep_last > 0) {
    const auto all = list(dir);
    for (size_t i = static_cast<size_t>(keep_last); i < all.size(); ++i) fs::remove_all(all[i]);
  }
  SaveResult r;
  r.path = final_dir.string();
  for (const auto& [f, d] : files.items()) r.bytes += d["bytes"].get<uint64_t>();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

Manifest verify(const std::string& ckpt_dir) {
  const fs::path d(ckpt_dir);
  if (!fs::is_directory(d)) SPARTA_DATA_ERROR("checkpoint {} does not exist", ckpt_dir);
  const json m = read_json((d / "manifest.json").string());
  try {
    if (m.at("format") != "sparta-checkpoint" || m.at("version").get<int>() != kFormatVersion)
      SPARTA_DATA_ERROR("checkpoint {}: unsupported format {} version {}", ckpt_dir,
                        m.at("format").dump(), m.at("version").dump());
    for (const auto& [file, want] : m.at("files").items()) {
      const fs::path p = d / file;
      if (!fs::exists(p)) SPARTA_DATA_ERROR("checkpoint {}: {} is missing", ckpt_dir, file);
      const FileDigest got = digest_file(p.string());
      if (got.bytes != want.at("bytes").get<uint64_t>())
        SPARTA_DATA_ERROR("checkpoint {}: {} has {} bytes, the manifest says {} (truncated?)",
                          ckpt_dir, file, got.bytes, want.at("bytes").get<uint64_t>());
      if (hex(got.xxh3) != want.at("xxh3_64").get<std::string>())
        SPARTA_DATA_ERROR(
            "checkpoint {}: {} checksum {} does not match the manifest's {} (corrupt)", ckpt_dir,
            file, hex(got.xxh3), want.at("xxh3_64").get<std::string>());
    }
    Manifest r;
    r.path = ckpt_dir;
    r.step = m.at("step").get<int64_t>();
    r.tokens_seen = m.at("tokens_seen").get<int64_t>();
    r.seed = m.at("rng").at("seed").get<uint64_t>();
    r.config_toml = m.at("config").get<std::string>();
    return r;
  } catch (const json::exception& e) {
    SPARTA_DATA_ERROR("checkpoint {}: manifest.json lacks a field: {}", ckpt_dir, e.what());
  }
}

Manifest load(const std::string& ckpt_dir, models::Transformer& model, trainer::AdamW* optim) {
  const Manifest m = verify(ckpt_dir);
  const SafetensorsReader weights((fs::path(ckpt_dir) / "model.safetensors").string());
  std::vector<float> host;
  // Checkpoints hold full tensors; a sharded model takes its part of each (any layout loads).
  auto load_into = [&](const SafetensorsReader& r, const std::string& name, const k::Tensor& dst,
                       const models::Param* p) {
    const auto it = r.entries().find(name);
    if (it == r.entries().end())
      SPARTA_DATA_ERROR("checkpoint {} has no tensor {}: was it saved from a different model?",
                        ckpt_dir, name);
    const std::vector<int64_t> want = p ? p->full_shape : shape_of(dst);
    if (it->second.shape != want)
      SPARTA_DATA_ERROR("checkpoint {}: tensor {} has shape {}, the model's is {}", ckpt_dir, name,
                        json(it->second.shape).dump(), json(want).dump());
    size_t n = 1;
    for (int64_t d : want) n *= static_cast<size_t>(d);
    host.resize(n);
    r.read(name, host.data(), n * sizeof(float));
    if (p) {
      model.scatter_full(*p, host.data(), dst);
      return;
    }
    k::Tensor h = dst;
    h.device = k::Device::cpu();
    h.data = host.data();
    k::copy(dst, h);
  };
  for (const auto& p : model.params()) load_into(weights, p.name, p.w, &p);
  for (const auto& b : model.buffers()) load_into(weights, b.name, b.w, nullptr);
  if (optim) {
    const SafetensorsReader moments((fs::path(ckpt_dir) / "optim.safetensors").string());
    const k::Tensor fp = model.flat_params(), fm = optim->flat_m(), fv = optim->flat_v();
    for (const auto& p : model.params()) {
      load_into(moments, "m." + p.name, moment_of(fm, fp, p.w), &p);
      load_into(moments, "v." + p.name, moment_of(fv, fp, p.w), &p);
    }
  }
  return m;
}

std::vector<std::string> list(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("step_", 0) == 0 && n.find(".tmp") == std::string::npos)
      out.push_back(e.path().string());
  }
  std::sort(out.rbegin(), out.rend());  // zero-padded step numbers: newest first
  return out;
}

std::optional<std::string> find_resumable(const std::string& dir) {
  for (const auto& c : list(dir)) {
    try {
      verify(c);
      return c;
    } catch (const Error& e) {
      fmt::print(stderr, "warning: skipping checkpoint {}: {}\n", c, e.what());
    }
  }
  return std::nullopt;
}

}  // namespace sparta::checkpoint
