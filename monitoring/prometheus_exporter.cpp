#include "monitoring/prometheus_exporter.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <pthread.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <numeric>
#include <sstream>

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "kernels/check.h"

// Debian's civetweb (under prometheus-cpp's Exposer) creates its threads with a fixed 100 KB
// stack (compile-time USE_STACK_SIZE). glibc takes a thread's static TLS out of its stack, and
// the libraries sparta loads at start need more than that (cuBLASLt 92 KB + OpenBLAS 60 KB +
// cuBLAS, NCCL, cudart, ...), so pthread_create refuses them and the Exposer cannot start
// ("null context when constructing CivetServer"). This definition in the program takes
// precedence over libc's and raises explicit stack sizes below 1 MiB to 1 MiB; every other
// request passes through unchanged.
extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t size) {
  using Fn = int (*)(pthread_attr_t*, size_t);
  static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  constexpr size_t kMin = size_t{1} << 20;
  return real(attr, size < kMin ? kMin : size);
}

namespace sparta::monitoring {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

class Families {
 public:
  MetricFamily& family(const std::string& name, const std::string& help, MetricType type) {
    out.push_back({name, help, type, {}});
    return out.back();
  }
  void value(const std::string& name, const std::string& help, MetricType type, double v,
             Labels labels = {}) {
    add(family(name, help, type), v, std::move(labels));
  }
  static void add(MetricFamily& f, double v, Labels labels) {
    ClientMetric m;
    m.label = std::move(labels);
    if (f.type == MetricType::Counter)
      m.counter.value = v;
    else
      m.gauge.value = v;
    f.metric.push_back(std::move(m));
  }
  static void histogram(MetricFamily& f, const std::vector<double>& bounds,
                        const std::vector<double>& cumulative, double sum, double count) {
    ClientMetric m;
    for (size_t i = 0; i < bounds.size(); ++i)
      m.histogram.bucket.push_back({static_cast<uint64_t>(cumulative[i]), bounds[i]});
    m.histogram.bucket.push_back({static_cast<uint64_t>(count), INFINITY});
    m.histogram.sample_count = static_cast<uint64_t>(count);
    m.histogram.sample_sum = sum;
    f.metric.push_back(std::move(m));
  }
  std::deque<MetricFamily> out;  // a deque: families handed out stay where they are
};

constexpr auto kCounter = MetricType::Counter;
constexpr auto kGauge = MetricType::Gauge;

void add_run(Families& F, const MetricsState& s) {
  const RunInfo& i = s.info;
  F.value("sparta_build_info", "sparta's version and git commit (value 1)", kGauge, 1,
          {{"version", i.version}, {"git_sha", i.git_sha}});
  F.value("sparta_rank_info", "where this rank runs (value 1)", kGauge, 1,
          {{"host", i.host},
           {"rank", std::to_string(i.rank)},
           {"local_rank", std::to_string(i.local_rank)},
           {"device", i.device},
           {"gpu_uuid", i.gpu_uuid},
           {"layout", i.layout}});
  F.value("sparta_step", "optimizer steps completed", kGauge, s.step);
  F.value("sparta_target_steps", "train.steps: the step the run ends at", kGauge,
          static_cast<double>(i.target_steps));
  F.value("sparta_steps_total", "optimizer steps this process completed", kCounter, s.steps_total);
  F.value("sparta_tokens_total",
          "training tokens: this rank's equal share of the global batch (sum over ranks: all)",
          kCounter, s.tokens_total);
  F.value("sparta_model_flops_total",
          "model FLOPs (forward + backward): this rank's equal share of the global step's",
          kCounter, s.model_flops_total);
  F.value("sparta_peak_flops", "peak FLOP/s of this rank's device (monitoring.peak_flops)", kGauge,
          i.peak_flops);
  F.value("sparta_mfu_ratio", "model FLOP utilisation of the last step", kGauge, s.mfu);
  Families::histogram(
      F.family("sparta_step_duration_seconds", "wall time of each step", MetricType::Histogram),
      step_duration_buckets(), s.step_hist, s.step_sum, s.step_count);
  auto& ph = F.family("sparta_phase_seconds_total",
                      "time by phase; compute phases exclude comm_wait, the time inside "
                      "collectives",
                      kCounter);
  for (size_t p = 0; p < kPhases; ++p)
    Families::add(ph, s.phase_seconds_total[p], {{"phase", to_string(static_cast<Phase>(p))}});
  auto& cs = F.family("sparta_collective_seconds_total", "time inside collectives", kCounter);
  auto& cb = F.family("sparta_collective_bytes_total", "bytes this rank contributed", kCounter);
  for (size_t g = 0; g < i.comm_groups.size(); ++g)
    for (size_t op = 0; op < kCollectiveOpCount; ++op) {
      const Labels l = {{"group", i.comm_groups[g]}, {"op", kCollectiveOps[op]}};
      Families::add(cs, s.coll_seconds[g][op], l);
      Families::add(cb, s.coll_bytes[g][op], l);
    }
}

void add_training(Families& F, const MetricsState& s) {
  F.value("sparta_loss", "training loss of the last step (nats per token)", kGauge, s.loss);
  F.value("sparta_val_loss", "validation loss of the last evaluation (nats per token)", kGauge,
          s.val_loss);
  F.value("sparta_val_bpb", "validation loss of the last evaluation in bits per byte", kGauge,
          s.val_bpb);
  F.value("sparta_grad_norm", "global gradient norm before clipping", kGauge, s.grad_norm);
  F.value("sparta_learning_rate", "learning rate of the last step", kGauge, s.lr);
  F.value("sparta_noise_sigma", "gradient-noise standard deviation of the last step", kGauge,
          s.noise_sigma);
  auto& lg = F.family("sparta_layer_grad_norm",
                      "gradient norm of each block's parameters (Mix-LN's depth picture)", kGauge);
  for (size_t l = 0; l < s.layer_grad_norm.size(); ++l)
    Families::add(lg, s.layer_grad_norm[l], {{"layer", std::to_string(l)}});
  auto& ab = F.family("sparta_arena_bytes", "planned memory by kind", kGauge);
  for (const auto& [kind, bytes] : s.info.arena_bytes) Families::add(ab, bytes, {{"kind", kind}});
  F.value("sparta_device_memory_used_bytes", "GPU memory in use (0 on CPUs)", kGauge,
          s.device_memory_bytes);
  F.value("sparta_last_step_timestamp_seconds", "Unix time of the last completed step", kGauge,
          s.last_step_ts);
  F.value("sparta_start_timestamp_seconds", "Unix time this process started training", kGauge,
          s.info.start_timestamp);
  F.value("sparta_last_checkpoint_timestamp_seconds", "Unix time of the last checkpoint (0: none)",
          kGauge, s.last_ckpt_ts);
  Families::histogram(F.family("sparta_checkpoint_duration_seconds", "time to save a checkpoint",
                               MetricType::Histogram),
                      checkpoint_duration_buckets(), s.ckpt_hist, s.ckpt_sum, s.ckpt_count);
  auto& ck = F.family("sparta_checkpoints_total", "checkpoints saved, by reason", kCounter);
  for (size_t r = 0; r < s.checkpoints_total.size(); ++r)
    Families::add(ck, s.checkpoints_total[r], {{"reason", kCheckpointReasons[r]}});
  F.value("sparta_job_restarts", "times Slurm requeued this job (SLURM_RESTART_COUNT)", kGauge,
          static_cast<double>(s.info.restarts));
  auto& sg = F.family("sparta_signals_received_total", "signals this rank received", kCounter);
  for (size_t i = 0; i < s.signals_total.size(); ++i)
    Families::add(sg, s.signals_total[i], {{"signal", kSignalNames[i]}});
  auto& ca = F.family("sparta_control_actions_total",
                      "control actions the ranks agreed on (signals, trigger file, RPC)", kCounter);
  for (size_t i = 0; i < s.control_total.size(); ++i)
    Families::add(ca, s.control_total[i], {{"action", kControlActions[i]}});
}

// Tokens per expert: the rank owning an expert exports it (L x E series in all); above the cap,
// each block's top and bottom K experts by count only.
void add_experts(Families& F, const MetricsState& s) {
  const RunInfo& i = s.info;
  int64_t own = 0;
  for (const auto& r : i.routed) own += r.own_end - r.own_begin;
  const bool capped = own > i.expert_series_cap;
  F.value("sparta_expert_series_capped",
          "1 when only each layer's top and bottom experts are exported (monitoring.expert_series)",
          kGauge, capped ? 1 : 0);
  auto& et = F.family("sparta_expert_tokens_total",
                      "(token, slot) assignments routed to each expert, before capacity", kCounter);
  const int64_t k = std::max<int64_t>(
      1, i.expert_series_cap / std::max<int64_t>(1, 2 * static_cast<int64_t>(i.routed.size())));
  for (size_t b = 0; b < i.routed.size(); ++b) {
    const RoutedBlock& r = i.routed[b];
    std::vector<int> ids(static_cast<size_t>(r.own_end - r.own_begin));
    std::iota(ids.begin(), ids.end(), r.own_begin);
    const auto& tot = s.expert_tokens_total[b];
    if (capped && static_cast<int64_t>(ids.size()) > 2 * k) {
      std::stable_sort(ids.begin(), ids.end(), [&](int a, int c) {
        return tot[static_cast<size_t>(a)] > tot[static_cast<size_t>(c)];
      });
      ids.erase(ids.begin() + k, ids.end() - k);
    }
    for (int e : ids)
      Families::add(
          et, tot[static_cast<size_t>(e)],
          {{"layer", std::to_string(r.layer)}, {"block", r.block}, {"expert", std::to_string(e)}});
  }
  if (!i.report_routers) return;
  auto& mx = F.family("sparta_expert_load_max_mean_ratio",
                      "last step: the busiest expert's tokens over the mean (1: balanced)", kGauge);
  auto& cv = F.family("sparta_expert_load_cv",
                      "last step: coefficient of variation of the tokens per expert", kGauge);
  auto& dead = F.family("sparta_dead_experts", "last step: experts that got no token", kGauge);
  auto& ent = F.family("sparta_router_entropy_nats", "mean router entropy per token", kGauge);
  auto& aux = F.family("sparta_router_aux_loss", "Switch load-balance loss (1: balanced)", kGauge);
  auto& z = F.family("sparta_router_z_loss", "router z-loss", kGauge);
  auto& dr =
      F.family("sparta_dropped_tokens_total", "assignments dropped by the capacity", kCounter);
  for (size_t b = 0; b < i.routed.size(); ++b) {
    const Labels l = {{"layer", std::to_string(i.routed[b].layer)}, {"block", i.routed[b].block}};
    const auto& st = s.expert_tokens_step[b];
    const double n = static_cast<double>(st.size());
    const double mean = st.empty() ? 0 : std::accumulate(st.begin(), st.end(), 0.0) / n;
    double var = 0, top = 0, zero = 0;
    for (double c : st) {
      var += (c - mean) * (c - mean) / n;
      top = std::max(top, c);
      zero += c == 0 ? 1 : 0;
    }
    Families::add(mx, mean > 0 ? top / mean : 0, l);
    Families::add(cv, mean > 0 ? std::sqrt(var) / mean : 0, l);
    Families::add(dead, s.steps_total > 0 ? zero : 0, l);
    Families::add(ent, s.router_entropy[b], l);
    Families::add(aux, s.aux_loss[b], l);
    Families::add(z, s.z_loss[b], l);
    Families::add(dr, s.dropped_total[b], l);
  }
}

std::vector<MetricFamily> families(const MetricsState& s) {
  Families F;
  add_run(F, s);
  add_training(F, s);
  add_experts(F, s);
  return {std::make_move_iterator(F.out.begin()), std::make_move_iterator(F.out.end())};
}

class Collector final : public prometheus::Collectable {
 public:
  explicit Collector(const LiveMetrics& m) : m_(m) {}
  std::vector<MetricFamily> Collect() const override { return families(m_.snapshot()); }

 private:
  const LiveMetrics& m_;
};

}  // namespace

struct PrometheusExporter::Impl {
  std::unique_ptr<prometheus::Exposer> exposer;
  std::shared_ptr<Collector> collector;
};

PrometheusExporter::PrometheusExporter(const std::string& bind, int port,
                                       const LiveMetrics& metrics)
    : impl_(std::make_unique<Impl>()) {
  in_addr a{};
  if (inet_pton(AF_INET, bind.c_str(), &a) != 1)
    SPARTA_USAGE_ERROR(
        "monitoring.bind = \"{}\" is not an IPv4 address (e.g. \"127.0.0.1\" for this machine "
        "only, \"0.0.0.0\" for every interface)",
        bind);
  const std::string where = bind + ":" + std::to_string(port);
  try {
    impl_->exposer = std::make_unique<prometheus::Exposer>(where, 1);
  } catch (const std::exception& e) {
    SPARTA_USAGE_ERROR(
        "monitoring: cannot listen on {} (monitoring.bind / monitoring.port): the port is in use "
        "or the address is not one of this machine's ({})",
        where, e.what());
  }
  impl_->collector = std::make_shared<Collector>(metrics);
  impl_->exposer->RegisterCollectable(impl_->collector);
  const auto ports = impl_->exposer->GetListeningPorts();
  port_ = ports.empty() ? port : ports.front();
}

PrometheusExporter::~PrometheusExporter() = default;

std::string exposition_text(const MetricsState& s) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families(s));
  return out.str();
}

}  // namespace sparta::monitoring
