#include "data/prep.h"

#include <cstdint>
#include <filesystem>
#include <fstream>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "data/corpus.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "kernels/check.h"

namespace sparta::data {

namespace fs = std::filesystem;

namespace {
constexpr int kBosId = 1;                      // starts every document in the token stream
constexpr size_t kMaxShardTokens = 100000000;  // llm.c's shard size

void write_lines(const std::string& path, const std::vector<Document>& docs, bool validation) {
  std::ofstream f(path, std::ios::trunc);
  if (!f) SPARTA_DATA_ERROR("cannot write {}", path);
  for (const auto& d : docs)
    if (d.validation == validation)
      for (const auto& l : d.lines) f << l << '\n';
}
}  // namespace

PrepSummary run_prep(const PrepOptions& opt) {
  const fs::path out(opt.out_dir);
  if (!opt.force && fs::exists(out / "meta.json")) {
    PrepSummary s = read_meta(opt.out_dir);
    fmt::print(
        "sparta-prep: {} is up to date ({} train / {} val tokens, vocab {}); --force rebuilds\n",
        opt.out_dir, s.train_tokens, s.val_tokens, s.vocab_size);
    return s;
  }
  if (opt.vocab_size < 8 || opt.vocab_size > 65535)
    SPARTA_USAGE_ERROR("--vocab-size {} out of range: shards store uint16 ids, use 8..65535",
                       opt.vocab_size);
  if (opt.val_fraction < 0.0 || opt.val_fraction >= 1.0)
    SPARTA_USAGE_ERROR("--val-fraction {} out of range [0, 1)", opt.val_fraction);
  fs::create_directories(out);

  std::vector<Document> docs;
  if (opt.inputs.empty()) {
    docs = load_default_corpus(opt.corpus_dir);
  } else {
    for (const auto& in : opt.inputs) {
      auto d = load_text_file(in, opt.val_fraction);
      docs.insert(docs.end(), std::make_move_iterator(d.begin()), std::make_move_iterator(d.end()));
    }
  }
  PrepSummary s;
  s.rebuilt = true;
  for (const auto& d : docs) (d.validation ? s.val_docs : s.train_docs)++;
  if (s.train_docs == 0 || s.val_docs == 0)
    SPARTA_DATA_ERROR(
        "need both training and validation text (got {} train, {} validation "
        "documents); raise --val-fraction or add input",
        s.train_docs, s.val_docs);
  const std::string train_txt = (out / "train.txt").string();
  write_lines(train_txt, docs, false);
  write_lines((out / "val.txt").string(), docs, true);

  const std::string model = (out / "tokenizer.model").string();
  if (!opt.tokenizer.empty()) {
    fs::copy_file(opt.tokenizer, model, fs::copy_options::overwrite_existing);
  } else {
    fmt::print("sparta-prep: training a {}-token BPE tokenizer on {}\n", opt.vocab_size, train_txt);
    train_tokenizer(train_txt, (out / "tokenizer").string(), opt.vocab_size, opt.threads);
  }
  Tokenizer tok(model);
  s.vocab_size = tok.vocab_size();
  if (s.vocab_size > 65535)
    SPARTA_DATA_ERROR("tokenizer {} has {} ids > 65535", model, s.vocab_size);

  for (bool validation : {false, true}) {
    std::vector<uint16_t> ids;
    long long bytes = 0;
    for (const auto& d : docs) {
      if (d.validation != validation) continue;
      ids.push_back(kBosId);
      for (const auto& line : d.lines) {
        for (int id : tok.encode(line)) ids.push_back(static_cast<uint16_t>(id));
        bytes += static_cast<long long>(line.size()) + 1;  // + the line break
      }
    }
    const char* split = validation ? "val" : "train";
    for (const auto& old : list_shards(opt.out_dir, split)) fs::remove(old);
    for (size_t i = 0, k = 0; i < ids.size(); i += kMaxShardTokens, ++k) {
      const size_t n = std::min(kMaxShardTokens, ids.size() - i);
      write_shard((out / fmt::format("{}_{:03d}.bin", split, k)).string(),
                  std::span<const uint16_t>(ids.data() + i, n));
    }
    (validation ? s.val_tokens : s.train_tokens) = static_cast<long long>(ids.size());
    (validation ? s.val_bytes : s.train_bytes) = bytes;
  }

  nlohmann::json j = {{"format", 1},
                      {"vocab_size", s.vocab_size},
                      {"train_tokens", s.train_tokens},
                      {"val_tokens", s.val_tokens},
                      {"train_bytes", s.train_bytes},
                      {"val_bytes", s.val_bytes},
                      {"train_docs", s.train_docs},
                      {"val_docs", s.val_docs},
                      {"tokenizer", "tokenizer.model"}};
  std::vector<std::string> val_sources;
  for (const auto& d : docs)
    if (d.validation) val_sources.push_back(d.source);
  j["validation_sources"] = val_sources;
  std::ofstream((out / "meta.json").string()) << j.dump(2) << '\n';
  fmt::print(
      "sparta-prep: wrote {}: {} train tokens ({} docs), {} val tokens ({} docs), vocab {}, "
      "{:.2f} bytes/token\n",
      opt.out_dir, s.train_tokens, s.train_docs, s.val_tokens, s.val_docs, s.vocab_size,
      static_cast<double>(s.train_bytes) / static_cast<double>(s.train_tokens));
  return s;
}

}  // namespace sparta::data
