// Config loading: defaults, file, overrides, and one test per kind of bad input checking the
// message names the key and what is allowed.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kernels/check.h"
#include "trainer/config.h"

namespace sparta::test {
namespace {

using trainer::load_config;

std::string write_toml(const std::string& name, const std::string& body) {
  const auto p = std::filesystem::temp_directory_path() / ("sparta_cfg_" + name + ".toml");
  std::ofstream(p) << body;
  return p.string();
}

void expect_usage_error(const std::string& file, const std::vector<std::string>& sets,
                        std::initializer_list<std::string> needles) {
  try {
    load_config(file, sets);
    FAIL() << "expected a usage error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::usage);
    EXPECT_EQ(e.exit_code(), 2);
    for (const auto& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST(Config, EmbeddedDefaultIsMixLN) {
  const auto c = load_config("", {});
  EXPECT_EQ(c.model.norm_placement, models::NormPlacement::mix);
  EXPECT_EQ(c.model.norm, models::NormType::rmsnorm);
  EXPECT_EQ(c.data.dir, "data/default");
  EXPECT_GT(c.model.post_ln_layers(), 0);
  EXPECT_LT(c.model.post_ln_layers(), c.model.n_layers);
}

TEST(Config, FileThenOverridesInOrder) {
  const auto f = write_toml("ok", "[model]\nn_layers = 3\nmixln_alpha = 0.5\n[optim]\nlr = 1\n");
  const auto c = load_config(f, {"model.n_layers=5", "optim.lr=2e-3", "model.norm=\"layernorm\"",
                                 "model.tie_embeddings=true", "train.device=cpu"});
  EXPECT_EQ(c.model.n_layers, 5);
  EXPECT_DOUBLE_EQ(c.model.mixln_alpha, 0.5);
  EXPECT_DOUBLE_EQ(c.optim.lr, 2e-3);
  EXPECT_EQ(c.model.norm, models::NormType::layernorm);
  EXPECT_TRUE(c.model.tie_embeddings);
}

TEST(Config, EffectiveConfigRoundTrips) {
  const auto c = load_config("", {"model.d_model=96", "optim.eps=1e-7", "model.rope_theta=500.5"});
  const std::string text = trainer::to_toml(c);
  const auto again = load_config(write_toml("roundtrip", text), {});
  EXPECT_EQ(trainer::to_toml(again), text);
  EXPECT_NE(text.find("d_model = 96"), std::string::npos);
}

TEST(Config, UnknownKeyNamesKeyAndListsKnownOnes) {
  expect_usage_error(write_toml("unknown", "[model]\nn_layer = 3\n"), {},
                     {"unknown config key 'model.n_layer'", "n_layers", "line 2"});
  expect_usage_error("", {"train.stepz=3"}, {"unknown config key 'train.stepz'", "steps"});
  expect_usage_error(write_toml("section", "[modle]\nn_layers = 3\n"), {},
                     {"unknown config section [modle]", "[model]"});
}

TEST(Config, WrongTypeNamesKeyAndType) {
  expect_usage_error(write_toml("type", "[model]\nn_layers = \"six\"\n"), {},
                     {"model.n_layers", "wrong type", "must be an integer in [1, 1024]"});
  expect_usage_error(write_toml("type2", "[optim]\nlr = true\n"), {},
                     {"optim.lr", "must be a number in"});
  expect_usage_error("", {"train.steps=ten"}, {"train.steps=ten", "not an integer"});
  expect_usage_error("", {"model.tie_embeddings=maybe"}, {"model.tie_embeddings", "true or false"});
  expect_usage_error(write_toml("table", "steps = 3\n"), {}, {"'steps'", "[section]"});
}

TEST(Config, OutOfRangeNamesKeyAndAllowedValues) {
  expect_usage_error("", {"model.n_layers=0"}, {"model.n_layers = 0", "an integer in [1, 1024]"});
  expect_usage_error("", {"optim.beta2=1.5"}, {"optim.beta2", "[0, 0.999999999]"});
  expect_usage_error("", {"model.norm=batchnorm"},
                     {"model.norm = \"batchnorm\"", "one of \"layernorm\", \"rmsnorm\""});
  expect_usage_error("", {"model.norm_placement=sandwich"}, {"\"pre\", \"post\", \"mix\""});
  expect_usage_error("", {"optim.lr=0"}, {"optim.lr", "> 0"});
  expect_usage_error("", {"train.device=tpu"}, {"train.device", "\"cpu\", \"cuda\""});
}

TEST(Config, CrossKeyChecks) {
  expect_usage_error("", {"model.d_model=100", "model.n_heads=3"},
                     {"model.n_heads = 3 must divide model.d_model = 100"});
  expect_usage_error("", {"model.d_model=12", "model.n_heads=4"}, {"rope", "even head dim"});
  expect_usage_error("", {"model.mixln_post_layers=9", "model.n_layers=4"},
                     {"model.mixln_post_layers = 9"});
}

TEST(Config, ControlBindIsHostPortOrNone) {
  for (const char* ok : {"127.0.0.1:0", "localhost:50051", "[::1]:7000", "none", "0.0.0.0:65535"})
    EXPECT_EQ(load_config("", {std::string("control.grpc_bind=") + ok}).control.grpc_bind, ok);
  for (const char* bad : {"localhost", ":5", "127.0.0.1:99999", "127.0.0.1:x", "127.0.0.1:"})
    expect_usage_error("", {std::string("control.grpc_bind=") + bad},
                       {"control.grpc_bind = '", "is not host:port"});
}

TEST(Config, SyntaxErrorAndMissingFile) {
  expect_usage_error(write_toml("syntax", "[model\nn_layers = 3\n"), {},
                     {"TOML syntax error", ":1:"});
  expect_usage_error("/nonexistent/sparta.toml", {}, {"/nonexistent/sparta.toml"});
  expect_usage_error("", {"n_layers=3"}, {"expected section.key=value"});
}

TEST(Config, ReferenceListsEveryKey) {
  const std::string md = trainer::config_reference_markdown();
  for (const char* key : {"model.n_layers", "model.norm_placement", "model.mixln_alpha",
                          "model.pos", "model.tie_embeddings", "train.grad_accum",
                          "train.log_every", "optim.min_lr_ratio", "optim.clip_norm", "data.dir"})
    EXPECT_NE(md.find(std::string("`") + key + "`"), std::string::npos) << key;
}

}  // namespace
}  // namespace sparta::test
