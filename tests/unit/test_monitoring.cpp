// Live metrics without a server: the series set is fixed by configure() and starts at 0, names
// and labels are valid Prometheus names, histograms are cumulative, only owned experts are
// exported and the cap keeps each layer's top and bottom experts, the file_sd list is the
// documented JSON, and the exporter serves /metrics (a real HTTP request on loopback).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "kernels/check.h"
#include "monitoring/discovery.h"
#include "monitoring/live_metrics.h"
#include "monitoring/prometheus_exporter.h"

namespace sparta::test {
namespace {

namespace mon = sparta::monitoring;

mon::RunInfo moe_info(int own_begin, int own_end, int64_t cap = 1024) {
  mon::RunInfo i;
  i.layers = 2;
  i.peak_flops = 1e9;
  i.routed = {{0, "moe", 4, own_begin, own_end}, {1, "moe", 4, own_begin, own_end}};
  i.report_routers = true;
  i.comm_groups = {"dp", "ep"};
  i.expert_series_cap = cap;
  i.arena_bytes = {{"parameters", 100}};
  return i;
}

// A Prometheus metric name: [a-zA-Z_:][a-zA-Z0-9_:]*.
bool valid_name(const std::string& n) {
  if (n.empty() || std::isdigit(static_cast<unsigned char>(n[0]))) return false;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != ':') return false;
  return true;
}

// "name{labels} value" lines of the exposition (comments dropped).
std::vector<std::string> samples(const std::string& text, const std::string& name) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name + "{", 0) == 0 || line.rfind(name + " ", 0) == 0) out.push_back(line);
  return out;
}

TEST(LiveMetrics, KnownSeriesStartAtZeroWithValidNames) {
  mon::LiveMetrics m;
  m.configure(moe_info(0, 4));
  const std::string text = mon::exposition_text(m.snapshot());
  ASSERT_FALSE(text.empty()) << "built without prometheus-cpp";
  EXPECT_EQ(samples(text, "sparta_phase_seconds_total").size(), mon::kPhases);
  EXPECT_EQ(samples(text, "sparta_collective_seconds_total").size(), 2u * mon::kCollectiveOpCount);
  EXPECT_EQ(samples(text, "sparta_expert_tokens_total").size(), 8u);
  EXPECT_EQ(samples(text, "sparta_layer_grad_norm").size(), 2u);
  for (const std::string& line : samples(text, "sparta_steps_total"))
    EXPECT_EQ(line, "sparta_steps_total 0");
  std::istringstream in(text);
  std::set<std::string> families;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# TYPE ", 0) == 0) {
      const std::string fam = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(valid_name(fam)) << fam;
      EXPECT_EQ(fam.rfind("sparta_", 0), 0u) << fam;
      const bool counter = line.find(" counter") != std::string::npos;
      EXPECT_EQ(counter, fam.size() > 6 && fam.substr(fam.size() - 6) == "_total") << line;
      families.insert(fam);
    }
  }
  for (const char* want : {"sparta_build_info",
                           "sparta_rank_info",
                           "sparta_step",
                           "sparta_tokens_total",
                           "sparta_model_flops_total",
                           "sparta_peak_flops",
                           "sparta_mfu_ratio",
                           "sparta_step_duration_seconds",
                           "sparta_loss",
                           "sparta_val_loss",
                           "sparta_val_bpb",
                           "sparta_grad_norm",
                           "sparta_learning_rate",
                           "sparta_noise_sigma",
                           "sparta_arena_bytes",
                           "sparta_device_memory_used_bytes",
                           "sparta_last_step_timestamp_seconds",
                           "sparta_last_checkpoint_timestamp_seconds",
                           "sparta_checkpoint_duration_seconds",
                           "sparta_checkpoints_total",
                           "sparta_expert_load_max_mean_ratio",
                           "sparta_expert_load_cv",
                           "sparta_dead_experts",
                           "sparta_router_entropy_nats",
                           "sparta_router_aux_loss",
                           "sparta_router_z_loss",
                           "sparta_dropped_tokens_total",
                           "sparta_expert_series_capped"})
    EXPECT_TRUE(families.count(want)) << want;
}

TEST(LiveMetrics, StepsAccumulateAndHistogramsAreCumulative) {
  mon::LiveMetrics m;
  m.configure(moe_info(0, 4));
  for (int s = 1; s <= 3; ++s) {
    mon::StepSample x;
    x.step = s;
    x.seconds = s == 3 ? 2.0 : 0.02;
    x.tokens = 100;
    x.model_flops = 1e8;
    x.phase_seconds[static_cast<size_t>(mon::Phase::forward)] = 0.01;
    m.on_step(x);
    const int64_t tok[4] = {0, 10, 20, 70};
    m.on_routing(0, tok, 3, 1.2, 1.1, 0.5);
  }
  const auto s = m.snapshot();
  EXPECT_EQ(s.steps_total, 3);
  EXPECT_EQ(s.tokens_total, 300);
  EXPECT_DOUBLE_EQ(s.mfu, 1e8 / 2.0 / 1e9);  // the last step's
  EXPECT_DOUBLE_EQ(s.phase_seconds_total[static_cast<size_t>(mon::Phase::forward)], 0.03);
  const std::string text = mon::exposition_text(s);
  EXPECT_NE(text.find("sparta_step_duration_seconds_bucket{le=\"0.025\"} 2"), std::string::npos);
  EXPECT_NE(text.find("sparta_step_duration_seconds_bucket{le=\"+Inf\"} 3"), std::string::npos);
  EXPECT_NE(text.find("sparta_expert_tokens_total{layer=\"0\",block=\"moe\",expert=\"3\"} 210"),
            std::string::npos);
  EXPECT_NE(text.find("sparta_dead_experts{layer=\"0\",block=\"moe\"} 1"), std::string::npos);
  EXPECT_NE(text.find("sparta_expert_load_max_mean_ratio{layer=\"0\",block=\"moe\"} 2.8"),
            std::string::npos);
  EXPECT_NE(text.find("sparta_dropped_tokens_total{layer=\"0\",block=\"moe\"} 9"),
            std::string::npos);
}

TEST(LiveMetrics, OnlyOwnedExpertsAndTheCapKeepsTopAndBottom) {
  mon::LiveMetrics half;
  half.configure(moe_info(2, 4));  // ep rank 1 of 2
  std::string text = mon::exposition_text(half.snapshot());
  for (const std::string& l : samples(text, "sparta_expert_tokens_total"))
    EXPECT_TRUE(l.find("expert=\"2\"") != std::string::npos ||
                l.find("expert=\"3\"") != std::string::npos)
        << l;
  mon::LiveMetrics capped;
  capped.configure(moe_info(0, 4, 4));  // 8 owned series, cap 4: K = 1 per block end
  const int64_t tok[4] = {5, 50, 1, 20};
  capped.on_routing(0, tok, 0, 1, 1, 0);
  capped.on_routing(1, tok, 0, 1, 1, 0);
  text = mon::exposition_text(capped.snapshot());
  const auto got = samples(text, "sparta_expert_tokens_total");
  EXPECT_EQ(got.size(), 4u);  // per block: the busiest (1) and the idlest (2)
  EXPECT_NE(text.find("block=\"moe\",expert=\"1\"} 50"), std::string::npos);
  EXPECT_NE(text.find("block=\"moe\",expert=\"2\"} 1"), std::string::npos);
  EXPECT_NE(text.find("sparta_expert_series_capped 1"), std::string::npos);
}

TEST(Discovery, FileSdListsEveryRankWithItsLabels) {
  const auto j = nlohmann::json::parse(mon::file_sd_json(
      {{"127.0.0.1:9464", 0, 0, "n0", "run1", "77"}, {"127.0.0.1:9465", 1, 1, "n0", "run1", ""}}));
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[1]["targets"][0], "127.0.0.1:9465");
  EXPECT_EQ(j[0]["labels"]["slurm_job_id"], "77");
  for (const char* l : {"rank", "local_rank", "node", "job", "slurm_job_id"})
    EXPECT_TRUE(j[1]["labels"].contains(l)) << l;
}

TEST(PrometheusExporter, ServesMetricsAndRefusesBadAddresses) {
  mon::LiveMetrics m;
  m.configure(moe_info(0, 4));
  mon::PrometheusExporter e("127.0.0.1", 0, m);
  ASSERT_GT(e.port(), 0);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(e.port()));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(::write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  std::string body;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) body.append(buf, static_cast<size_t>(n));
  ::close(fd);
  EXPECT_NE(body.find("200 OK"), std::string::npos) << body.substr(0, 200);
  EXPECT_NE(body.find("sparta_steps_total 0"), std::string::npos);
  auto refused = [&](const std::string& bind, int port, const std::string& needle) {
    try {
      mon::PrometheusExporter bad(bind, port, m);
      ADD_FAILURE() << bind << ":" << port << " accepted";
    } catch (const Error& err) {
      EXPECT_EQ(err.exit_code(), 2);
      EXPECT_NE(std::string(err.what()).find(needle), std::string::npos) << err.what();
    }
  };
  refused("127.0.0.1", e.port(), "cannot listen on 127.0.0.1:" + std::to_string(e.port()));
  refused("localhost", 0, "monitoring.bind = \"localhost\" is not an IPv4 address");
}

}  // namespace
}  // namespace sparta::test
