// Data pipeline: shard format and its validation errors, the per-epoch permutation, loader
// determinism and disjointness, corpus cleaning, and the tokenizer round trip.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>

#include "data/corpus.h"
#include "data/loader.h"
#include "data/prep.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "kernels/check.h"
#include "tests/common/data_util.h"

namespace sparta::test {
namespace {

namespace fs = std::filesystem;
using data::Shard;

// Runs f, expects a sparta::Error of `kind` whose message contains every needle.
template <class F>
void expect_error(F&& f, ErrorKind kind, std::initializer_list<std::string> needles) {
  try {
    f();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    for (const auto& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST(Shard, RoundTripAndLlmcHeader) {
  const std::string dir = temp_dir("shard"), path = dir + "/train_000.bin";
  std::vector<uint16_t> toks = {5, 0, 65535, 42, 7};
  data::write_shard(path, toks);
  EXPECT_EQ(fs::file_size(path), 1024u + 10u);
  std::ifstream f(path, std::ios::binary);
  int32_t header[256];
  f.read(reinterpret_cast<char*>(header), sizeof(header));
  EXPECT_EQ(header[0], 20240520);
  EXPECT_EQ(header[1], 1);
  EXPECT_EQ(header[2], 5);
  Shard s(path, 0);
  ASSERT_EQ(s.size(), 5);
  EXPECT_EQ(std::vector<uint16_t>(s.tokens(), s.tokens() + 5), toks);
}

TEST(Shard, CorruptFilesAreRefusedWithFileAndOffset) {
  const std::string dir = temp_dir("corrupt");
  data::write_shard(dir + "/ok.bin", std::vector<uint16_t>{1, 2, 3, 4});
  // Wrong magic.
  fs::copy_file(dir + "/ok.bin", dir + "/magic.bin");
  {
    std::fstream f(dir + "/magic.bin", std::ios::in | std::ios::out | std::ios::binary);
    const int32_t bad = 12345;
    f.write(reinterpret_cast<const char*>(&bad), 4);
  }
  expect_error([&] { Shard s(dir + "/magic.bin", 0); }, ErrorKind::data,
               {"magic.bin", "magic 12345", "byte offset 0"});
  // Truncated: header says 4 tokens, one byte missing.
  fs::copy_file(dir + "/ok.bin", dir + "/trunc.bin");
  fs::resize_file(dir + "/trunc.bin", 1024 + 7);
  expect_error([&] { Shard s(dir + "/trunc.bin", 0); }, ErrorKind::data,
               {"trunc.bin", "truncated", "4 tokens", "1031 bytes"});
  // Shorter than the header.
  fs::copy_file(dir + "/ok.bin", dir + "/tiny.bin");
  fs::resize_file(dir + "/tiny.bin", 100);
  expect_error([&] { Shard s(dir + "/tiny.bin", 0); }, ErrorKind::data, {"tiny.bin", "truncated"});
  // Token out of vocabulary: token 4 at index 3 -> byte offset 1024 + 6.
  expect_error([&] { Shard s(dir + "/ok.bin", 4); }, ErrorKind::data,
               {"ok.bin", "token 4", "byte offset 1030", "vocabulary size 4"});
  expect_error([&] { Shard s(dir + "/missing.bin", 0); }, ErrorKind::data, {"missing.bin"});
}

TEST(Loader, PermutationIsABijectionPerEpochAndChangesAcrossEpochs) {
  for (int64_t n : {1, 2, 3, 7, 64, 1000, 4097}) {
    data::WindowPermutation p(n, 99);
    for (int64_t epoch : {0, 1}) {
      std::vector<int64_t> seen;
      for (int64_t i = 0; i < n; ++i) seen.push_back(p(epoch, i));
      std::sort(seen.begin(), seen.end());
      std::vector<int64_t> all(static_cast<size_t>(n));
      std::iota(all.begin(), all.end(), 0);
      EXPECT_EQ(seen, all) << "n=" << n << " epoch=" << epoch;
    }
    if (n >= 64) {
      int same = 0;
      for (int64_t i = 0; i < n; ++i) same += p(0, i) == p(1, i);
      EXPECT_LT(same, n / 4) << "epochs should be reshuffled";
    }
  }
}

class LoaderData : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_dir("loader");
    std::vector<uint16_t> a(8 * 10 + 1), b(8 * 5 + 3);  // 10 + 5 windows of T = 8
    std::iota(a.begin(), a.end(), 0);
    std::iota(b.begin(), b.end(), 1000);
    data::write_shard(dir_ + "/train_000.bin", a);
    data::write_shard(dir_ + "/train_001.bin", b);
  }
  std::string dir_;
};

TEST_F(LoaderData, WindowsSpanShardsAndTargetsAreShiftedInputs) {
  data::TokenDataset ds(dir_, "train", 8, 2000);
  EXPECT_EQ(ds.num_windows(), 15);
  std::vector<int32_t> x(8), y(8);
  ds.window(11, x.data(), y.data());  // second shard, window 1
  EXPECT_EQ(x[0], 1008);
  EXPECT_EQ(y[0], 1009);
  EXPECT_EQ(y[7], 1016);
}

TEST_F(LoaderData, BatchesAreDeterministicDisjointAcrossRanksAndCoverTheEpoch) {
  data::TokenDataset ds(dir_, "train", 8, 2000);
  const int64_t B = 2;
  std::vector<int32_t> x(16), y(16), x2(16), y2(16);
  data::DataLoader a(ds, B, 5, 0, 1), again(ds, B, 5, 0, 1), other_seed(ds, B, 6, 0, 1);
  a.train_batch(3, 0, 1, x.data(), y.data());
  again.train_batch(3, 0, 1, x2.data(), y2.data());
  EXPECT_EQ(x, x2);
  EXPECT_EQ(y, y2);
  // Over one epoch of a 3-rank, 1-micro-batch job, every window appears exactly once.
  std::multiset<int32_t> firsts;
  for (int rank = 0; rank < 3; ++rank) {
    data::DataLoader l(ds, 1, 5, rank, 3);
    for (int64_t step = 0; step < 5; ++step) {
      l.train_batch(step, 0, 1, x.data(), y.data());
      firsts.insert(x[0]);
    }
  }
  std::multiset<int32_t> expect;
  for (int64_t w = 0; w < 15; ++w) {
    ds.window(w, x.data(), y.data());
    expect.insert(x[0]);
  }
  EXPECT_EQ(firsts, expect);
  // Eval batches read in order and pad past the end with ignored targets.
  data::DataLoader ev(ds, 4, 5);
  EXPECT_EQ(ev.eval_batches(), 4);
  std::vector<int32_t> ex(32), ey(32);
  ev.eval_batch(3, ex.data(), ey.data());
  EXPECT_EQ(ex[0], 1000 + 8 * 2);  // window 12
  EXPECT_EQ(ey[3 * 8], -1);        // window 15 does not exist
}

TEST(Corpus, UsfmCleaningKeepsProseAndDropsMarkup) {
  const std::string usfm =
      "\\id MRK 41-MRK-web.sfm World English Bible\n\\h Mark\n\\c 1\n\\p\n"
      "\\v 1 The beginning of the \\add Good\\add* News.\n"
      "\\q1 “Behold,\\f + \\fr 1:2 \\ft a note\\f* I send\\x + \\xo 1:2 \\xt Mal 3:1\\x* my "
      "messenger,\n"
      "\\v 2 \\w grace|strong=\"G5485\"\\w* to you.\n";
  std::string code;
  const auto lines = data::clean_usfm(usfm, &code);
  EXPECT_EQ(code, "MRK");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "The beginning of the Good News.");
  EXPECT_EQ(lines[1], "“Behold, I send my messenger,");
  EXPECT_EQ(lines[2], "grace to you.");
}

TEST(Corpus, KjvSplitsIntoBooks) {
  const auto docs = data::split_kjv(
      "Ge1:1 In the beginning God created the heaven and the earth.\n"
      "Ge1:2 And the earth was without form.\n1Cor13:4 Charity suffereth long.\n");
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].source, "kjv:Ge");
  EXPECT_EQ(docs[0].lines.size(), 2u);
  EXPECT_EQ(docs[0].lines[1], "And the earth was without form.");
  EXPECT_EQ(docs[1].source, "kjv:1Cor");
}

TEST(Prep, UserTextToShardsTokenizerRoundTripAndIdempotence) {
  const std::string dir = temp_dir("prep");
  data::PrepOptions opt;
  opt.out_dir = dir + "/out";
  opt.inputs = {write_text(dir, 400)};
  opt.vocab_size = 64;
  opt.val_fraction = 0.1;
  const auto s = data::run_prep(opt);
  EXPECT_TRUE(s.rebuilt);
  EXPECT_EQ(s.vocab_size, 64);
  EXPECT_GT(s.train_tokens, 1000);
  EXPECT_GT(s.val_tokens, 100);
  data::Tokenizer tok(opt.out_dir + "/tokenizer.model");
  const std::string text = "the king went into the house of bread.";
  EXPECT_EQ(tok.decode(tok.encode(text)), text);
  data::TokenDataset ds(opt.out_dir, "val", 16, s.vocab_size);
  EXPECT_GT(ds.num_windows(), 0);
  // Second run reuses the directory.
  EXPECT_FALSE(data::run_prep(opt).rebuilt);
  const auto meta = data::read_meta(opt.out_dir);
  EXPECT_EQ(meta.train_tokens, s.train_tokens);
  opt.vocab_size = 70000;
  opt.force = true;
  expect_error([&] { data::run_prep(opt); }, ErrorKind::usage, {"--vocab-size 70000", "65535"});
}

}  // namespace
}  // namespace sparta::test
