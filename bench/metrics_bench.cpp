// The cost of live metrics, measured directly (bench/metrics_overhead.sh measures it end to end,
// within this VM's drift): the trainer's per-step update of the LiveMetrics of a model shaped
// like the main one (6 layers, 8 experts each, 2 communicator groups), and the formatting of one
// scrape. Prints microseconds per step update and per scrape.
#include <chrono>
#include <cstdio>
#include <vector>

#include "monitoring/live_metrics.h"
#include "monitoring/prometheus_exporter.h"

int main() {
  namespace mon = sparta::monitoring;
  using Clock = std::chrono::steady_clock;
  mon::RunInfo info;
  info.layers = 6;
  info.peak_flops = 1e11;
  for (int l = 0; l < 6; ++l) info.routed.push_back({l, "moe", 8, 0, 8});
  info.report_routers = true;
  info.comm_groups = {"dp", "ep"};
  info.arena_bytes = {{"parameters", 1e8}, {"activations", 5e8}};
  mon::LiveMetrics live;
  live.configure(info);
  std::vector<int64_t> tokens(8, 512);
  std::vector<double> norms(6, 0.5);
  const int n = 20000;
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    for (size_t b = 0; b < 6; ++b) live.on_routing(b, tokens.data(), 0, 1.9, 1.01, 0.0);
    for (size_t g = 0; g < 2; ++g)
      for (size_t op = 0; op < 8; ++op) live.on_collectives(g, op, 1.0 * i, 1e6 * i);
    mon::StepSample s;
    s.step = i;
    s.seconds = 0.9;
    live.on_step(s);
    live.on_layer_grad_norms(norms);
  }
  const double update_us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / n;
  size_t bytes = 0;
  const int scrapes = 500;
  const auto t1 = Clock::now();
  for (int i = 0; i < scrapes; ++i) bytes += mon::exposition_text(live.snapshot()).size();
  const double scrape_us =
      std::chrono::duration<double, std::micro>(Clock::now() - t1).count() / scrapes;
  std::printf("per-step update: %.2f us; one scrape (snapshot + format, %zu bytes): %.0f us\n",
              update_us, bytes / scrapes, scrape_us);
  std::printf("bench_json: {\"update_us\": %.3f, \"scrape_us\": %.1f, \"scrape_bytes\": %zu}\n",
              update_us, scrape_us, bytes / scrapes);
  return 0;
}
