// Checkpoints: standard safetensors, atomic saves that survive a failure at any byte, checksum
// verification with fallback, pruning, and bit-exact resume (plain, with gradient accumulation,
// with gradient noise).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/common/data_util.h"
#include "tests/common/trainer_util.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/safetensors.h"
#include "trainer/config.h"
#include "trainer/trainer.h"

namespace sparta::test {
namespace {

namespace fs = std::filesystem;

const std::string& data_dir() {
  static const std::string d = prepared_data("ckpt");
  return d;
}

trainer::Config tiny(std::vector<std::string> extra = {}) {
  extra.insert(extra.begin(), "train.steps=8");
  return tiny_config(data_dir(), extra);
}

trainer::RunOptions opts(const std::string& run_dir, const std::string& resume = "",
                         int64_t stop = -1) {
  return quiet_run(run_dir, resume, stop);
}

std::vector<float> params_of(trainer::Trainer& t) {
  const auto p = t.model().flat_params();
  return {p.f32(), p.f32() + p.numel()};
}

TEST(Safetensors, ReadableByAnIndependentParser) {
  const std::string dir = temp_dir("st");
  std::vector<float> a = {0.0f, 1.5f, -2.25f, 3.0f, 4.0f, 1e-7f}, b = {7.0f};
  checkpoint::write_safetensors(dir + "/x.safetensors",
                                {{"layers.0.w", {2, 3}, a.data(), 24}, {"bias", {1}, b.data(), 4}},
                                {{"format", "sparta"}});
  const std::string cmd = std::string("python3 ") + SPARTA_SOURCE_DIR +
                          "/tests/common/read_safetensors.py " + dir + "/x.safetensors";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  ASSERT_EQ(pclose(p), 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j.at("layers.0.w").at("shape"), nlohmann::json({2, 3}));
  EXPECT_EQ(j.at("layers.0.w").at("dtype"), "F32");
  EXPECT_EQ(j.at("layers.0.w").at("values").get<std::vector<float>>(), a);
  EXPECT_EQ(j.at("bias").at("values").get<std::vector<float>>(), b);
  // And our own reader agrees.
  checkpoint::SafetensorsReader r(dir + "/x.safetensors");
  std::vector<float> back(6);
  r.read("layers.0.w", back.data(), 24);
  EXPECT_EQ(back, a);
}

struct ResumeCase {
  const char* name;
  std::vector<std::string> sets;
};

class Resume : public ::testing::TestWithParam<ResumeCase> {};

// Train 8 steps straight; separately stop at 4 and resume to 8. Per-step losses and the final
// weights must be identical bit for bit.
TEST_P(Resume, StopAndResumeIsBitExact) {
  const auto& c = GetParam();
  const std::string root = temp_dir(std::string("resume_") + c.name);
  trainer::Trainer straight(tiny(c.sets), opts(root + "/a"));
  const auto full = straight.run();
  ASSERT_EQ(full.losses.size(), 8u);

  {
    trainer::Trainer first(tiny(c.sets), opts(root + "/b", "", 4));
    const auto part = first.run();
    EXPECT_TRUE(part.stopped_early);
    EXPECT_EQ(part.steps, 4);
    for (size_t i = 0; i < 4; ++i) EXPECT_EQ(part.losses[i], full.losses[i]) << i;
  }
  trainer::Trainer second(tiny(c.sets), opts(root + "/b", "auto"));
  const auto rest = second.run();
  EXPECT_EQ(rest.start_step, 4);
  ASSERT_EQ(rest.losses.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(rest.losses[i], full.losses[i + 4]) << "step " << i + 5;
  const auto pa = params_of(straight), pb = params_of(second);
  ASSERT_EQ(pa.size(), pb.size());
  EXPECT_EQ(std::memcmp(pa.data(), pb.data(), pa.size() * sizeof(float)), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, Resume,
    ::testing::Values(ResumeCase{"plain", {}},
                      ResumeCase{"grad_accum", {"train.grad_accum=2", "train.batch_size=2"}},
                      ResumeCase{"noise", {"noise.enabled=true", "noise.eta=0.01"}},
                      ResumeCase{"rmoe", {"moe.experts=4", "moe.router=gru", "moe.gru_dim=8"}},
                      ResumeCase{"uoe_paper", {"uoe.enabled=true", "uoe.mode=paper"}}),
    [](const auto& info) { return std::string(info.param.name); });

class Saved : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = temp_dir("saved");
    t_ = std::make_unique<trainer::Trainer>(tiny(), opts(""));
    t_->step(0);
    // A fresh optimizer is enough here: these tests are about the files.
    opt_ = std::make_unique<trainer::AdamW>(t_->model().params(), t_->model().flat_params(),
                                            trainer::AdamWConfig{});
  }
  checkpoint::SaveResult save(int64_t step, int keep = 0) {
    checkpoint::SaveInfo info;
    info.step = step;
    info.seed = 1337;
    info.config_toml = trainer::to_toml(t_->config());
    info.tokenizer_path = data_dir() + "/tokenizer.model";
    return checkpoint::save(root_, info, t_->model(), *opt_, keep);
  }
  std::string root_;
  std::unique_ptr<trainer::Trainer> t_;
  std::unique_ptr<trainer::AdamW> opt_;
};

TEST_F(Saved, ManifestRecordsStateLayoutTensorsAndChecksums) {
  const auto r = save(2);
  EXPECT_EQ(r.path, root_ + "/step_00000002");
  std::ifstream f(r.path + "/manifest.json");
  const auto m = nlohmann::json::parse(f);
  EXPECT_EQ(m.at("version"), 1);
  EXPECT_EQ(m.at("step"), 2);
  for (const char* key :
       {"config", "layout", "rng", "data_loader", "tensors", "files", "tokens_seen"})
    EXPECT_TRUE(m.contains(key)) << key;
  for (const char* file : {"model.safetensors", "optim.safetensors", "tokenizer.model"})
    EXPECT_EQ(m.at("files").at(file).at("xxh3_64").get<std::string>().size(), 16u) << file;
  EXPECT_EQ(m.at("tensors").size(), 3 * t_->model().params().size());
  std::ifstream latest(root_ + "/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "step_00000002");
}

// A failure at any point of a save (simulated full disk after N bytes) leaves the previous
// checkpoint complete, `latest` pointing at it, and resume picking it.
TEST_F(Saved, FailureMidWriteLeavesThePreviousCheckpointLoadable) {
  save(2);
  for (int64_t fail_after :
       {int64_t{0}, int64_t{100}, int64_t{5000}, int64_t{60000}, int64_t{150000}}) {
    checkpoint::inject_write_failure_after(fail_after);
    EXPECT_THROW(save(3), Error) << fail_after;
    checkpoint::inject_write_failure_after(-1);
    std::ifstream latest(root_ + "/latest");
    std::string name;
    latest >> name;
    EXPECT_EQ(name, "step_00000002");
    const auto found = checkpoint::find_resumable(root_);
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(*found, root_ + "/step_00000002");
    EXPECT_NO_THROW(checkpoint::load(*found, t_->model(), nullptr));
  }
}

TEST_F(Saved, CorruptOrTruncatedCheckpointIsRefusedAndAutoFallsBack) {
  save(2);
  save(4);
  {
    std::fstream f(root_ + "/step_00000004/model.safetensors",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x7f');
  }
  try {
    checkpoint::verify(root_ + "/step_00000004");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data);
    EXPECT_NE(std::string(e.what()).find("model.safetensors checksum"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(checkpoint::find_resumable(root_).value(), root_ + "/step_00000002");
  fs::resize_file(root_ + "/step_00000002/optim.safetensors", 100);
  try {
    checkpoint::verify(root_ + "/step_00000002");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(checkpoint::find_resumable(root_).has_value());
}

TEST_F(Saved, KeepLastPrunesOldCheckpoints) {
  for (int64_t s : {1, 2, 3, 4}) save(s, 2);
  const auto all = checkpoint::list(root_);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], root_ + "/step_00000004");
  EXPECT_EQ(all[1], root_ + "/step_00000003");
}

TEST(Resume, BadRequestsAreUsageErrors) {
  const std::string root = temp_dir("badresume");
  auto expect_usage = [](auto&& f, const std::string& needle) {
    try {
      f();
      FAIL();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::usage);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_usage([&] { trainer::Trainer(tiny(), opts("", "", 3)).run(); }, "--stop-at-step needs");
  expect_usage([&] { trainer::Trainer(tiny(), opts(root, "", 9)).run(); },
               "at most train.steps = 8");
  expect_usage([&] { trainer::Trainer(tiny(), opts("", "auto")).run(); }, "--resume auto needs");
  // auto with nothing saved yet starts fresh.
  EXPECT_EQ(trainer::Trainer(tiny({"train.steps=2"}), opts(root, "auto")).run().start_step, 0);
}

}  // namespace
}  // namespace sparta::test
