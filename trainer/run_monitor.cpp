#include "trainer/run_monitor.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/profile.h"
#include "monitoring/discovery.h"
#include "trainer/build_info.h"  // generated: kSpartaVersion, kSpartaGitSha

namespace sparta::trainer {

namespace k = sparta::kernels;
namespace mon = sparta::monitoring;

namespace {
std::string hostname() {
  char h[256] = {};
  ::gethostname(h, sizeof h - 1);
  return h;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

constexpr size_t kTargetChars = 256;  // one rank's "address\tlocal_rank\tnode" in the gather
}  // namespace

std::string layout_name(const parallel::ProcessMesh& mesh, int64_t zero) {
  return fmt::format("tp{} cp{} ep{} dp{} zero{}", mesh.size(parallel::Dim::tp),
                     mesh.size(parallel::Dim::cp), mesh.size(parallel::Dim::ep),
                     mesh.size(parallel::Dim::dp), zero);
}

RunMonitor::RunMonitor(const Config& cfg, const launch::World& world,
                       const parallel::ProcessGroups& g, const parallel::ProcessMesh& mesh,
                       const models::Transformer& model, k::Device device,
                       const std::string& run_dir, bool prometheus)
    : g_(g), device_(device) {
  const mon::RunInfo info = run_info(cfg, world, mesh, model, device);
  live_.configure(info);
  for (const auto& r : info.routed) {
    step_tokens_.emplace_back(static_cast<size_t>(r.experts), 0);
    uoe_block_.push_back(r.block != "moe");
    if (r.block != "moe") reduce_uoe_ = g.dp.size() > 1;
  }
  step_dropped_.assign(info.routed.size(), 0);
  size_t uoe_experts = 0;
  for (const auto& r : info.routed)
    if (r.block != "moe") uoe_experts += static_cast<size_t>(r.experts);
  reduce_buf_.assign(std::max<size_t>(1, uoe_experts), 0);
  comms_ = g.comms();
  for (const parallel::Comm* c : comms_) {
    const auto& names = info.comm_groups;
    comm_group_.push_back(
        static_cast<size_t>(std::find(names.begin(), names.end(), c->name()) - names.begin()));
  }
  const double tokens_global = static_cast<double>(cfg.train.batch_size * cfg.model.seq_len *
                                                   cfg.train.grad_accum * g.data_size);
  tokens_per_step_ = tokens_global / world.size;
  flops_per_step_ = tokens_per_step_ * models::train_flops_per_token(cfg.model);

  if (!prometheus) return;  // the numbers only (for the Control service)
  const auto& m = cfg.monitoring;
  const int port = m.port == 0 ? 0 : static_cast<int>(m.port) + world.local_rank;
  exporter_ = std::make_unique<mon::PrometheusExporter>(m.bind, port, live_);
  const std::string host = m.bind == "0.0.0.0" ? hostname() : m.bind;
  endpoint_ = fmt::format("{}:{}", host, exporter_->port());

  // Every rank's endpoint to rank 0, which writes the file_sd list.
  std::vector<int32_t> all(static_cast<size_t>(world.size) * kTargetChars / 4, 0);
  const std::string mine = fmt::format("{}\t{}\t{}", endpoint_, world.local_rank, hostname());
  SPARTA_CHECK(mine.size() < kTargetChars, "endpoint description too long: {}", mine);
  char* slot = reinterpret_cast<char*>(all.data()) + static_cast<size_t>(world.rank) * kTargetChars;
  std::memcpy(slot, mine.data(), mine.size());
  const int64_t per = static_cast<int64_t>(kTargetChars / 4);
  g.world.host->all_gather(
      k::Tensor(all.data(), k::DType::i32, k::Device::cpu(), {world.size * per}),
      k::Tensor(all.data() + world.rank * per, k::DType::i32, k::Device::cpu(), {per}));
  if (world.rank != 0 || run_dir.empty()) return;
  std::vector<mon::Target> targets;
  const char* slurm = std::getenv("SLURM_JOB_ID");
  const std::string job =
      m.job.empty() ? std::filesystem::path(run_dir).filename().string() : m.job;
  for (int r = 0; r < world.size; ++r) {
    const char* s =
        reinterpret_cast<const char*>(all.data()) + static_cast<size_t>(r) * kTargetChars;
    const std::string entry(s, strnlen(s, kTargetChars));
    const size_t a = entry.find('\t'), b = entry.find('\t', a + 1);
    targets.push_back({entry.substr(0, a), r, std::atoi(entry.substr(a + 1, b - a - 1).c_str()),
                       entry.substr(b + 1), job, slurm ? slurm : ""});
  }
  namespace fs = std::filesystem;
  targets_file_ = (fs::path(run_dir) / "prometheus_targets.json").string();
  fs::create_directories(run_dir);
  mon::write_file_sd(targets_file_, targets);
  if (m.targets_dir == "none") return;
  fs::path dir = fs::absolute(run_dir).lexically_normal();
  if (!dir.has_filename()) dir = dir.parent_path();  // "runs/x/" -> "runs/x"
  const fs::path shared =
      m.targets_dir.empty() ? dir.parent_path() / "prometheus_targets" : fs::path(m.targets_dir);
  fs::create_directories(shared);
  shared_targets_file_ = (shared / (job + ".json")).string();
  mon::write_file_sd(shared_targets_file_, targets);
}

RunMonitor::~RunMonitor() = default;

int RunMonitor::port() const {
  return exporter_ ? exporter_->port() : 0;
}

mon::RunInfo RunMonitor::run_info(const Config& cfg, const launch::World& world,
                                  const parallel::ProcessMesh& mesh,
                                  const models::Transformer& model, k::Device device) const {
  mon::RunInfo info;
  info.version = kSpartaVersion;
  info.git_sha = kSpartaGitSha;
  info.host = hostname();
  info.device = k::to_string(device);
  info.rank = world.rank;
  info.local_rank = world.local_rank;
  info.layout = layout_name(mesh, cfg.parallel.zero);
  info.peak_flops = cfg.monitoring.peak_flops;
  if (device.is_cuda()) {
    const auto d = k::cuda::device_info(device.index);
    info.gpu_uuid = d.uuid;
    if (info.peak_flops == 0) info.peak_flops = d.peak_fp32_flops;
  } else if (info.peak_flops == 0) {
    info.peak_flops = k::profile::fma_peak_flops();
  }
  info.target_steps = cfg.train.steps;
  info.restarts = world.restarts;
  info.start_timestamp = unix_now();
  info.layers = cfg.model.n_layers;
  // The rank owning an expert exports its counter: experts split over ep (MoE) or tp (UoE); of
  // the replicas (cp x dp, and tp for MoE), the first.
  const int ep = g_.ep.size(), tp = g_.tp.size();
  const bool first_replica = g_.edp.rank() == 0;
  model.for_each_routed([&](const models::MoeLayerStats& st) {
    mon::RoutedBlock r;
    r.layer = st.layer;
    r.block = st.kind;
    r.experts = static_cast<int>(st.expert_tokens.size());
    const bool moe = st.kind == "moe";
    const int parts = moe ? ep : tp, part = moe ? g_.ep.rank() : g_.tp.rank();
    if (first_replica && (!moe || g_.tp.rank() == 0)) {
      r.own_begin = part * r.experts / parts;
      r.own_end = (part + 1) * r.experts / parts;
    }
    info.routed.push_back(r);
  });
  info.report_routers = world.rank == 0;
  info.expert_series_cap = cfg.monitoring.expert_series;
  const double pb = static_cast<double>(model.param_bytes());
  info.arena_bytes = {{"parameters", pb},
                      {"gradients", pb},
                      {"optimizer", cfg.parallel.zero == 1 ? 2 * pb / g_.dp.size() : 2 * pb},
                      {"activations", static_cast<double>(model.activation_bytes())}};
  for (const parallel::Comm* c : g_.comms())
    if (std::find(info.comm_groups.begin(), info.comm_groups.end(), c->name()) ==
        info.comm_groups.end())
      info.comm_groups.push_back(c->name());
  return info;
}

void RunMonitor::after_micro_batch(const models::Transformer& model) {
  size_t i = 0;
  model.for_each_routed([&](const models::MoeLayerStats& st) {
    auto& acc = step_tokens_[i];
    for (size_t e = 0; e < acc.size(); ++e) acc[e] += st.expert_tokens[e];
    step_dropped_[i] += st.dropped;
    ++i;
  });
}

void RunMonitor::after_step(const models::Transformer& model, int64_t done, double loss, double lr,
                            double grad_norm, double sigma, double seconds,
                            const std::array<double, mon::kPhases>& phases) {
  if (reduce_uoe_) {  // UoE routes per dp rank: the global batch's counts are their sum
    size_t at = 0;
    for (size_t i = 0; i < step_tokens_.size(); ++i)
      if (uoe_block_[i])
        for (int64_t c : step_tokens_[i]) reduce_buf_[at++] = static_cast<int32_t>(c);
    g_.dp.host->all_reduce(k::Tensor(reduce_buf_.data(), k::DType::i32, k::Device::cpu(),
                                     {static_cast<int64_t>(reduce_buf_.size())}),
                           parallel::ReduceOp::sum);
    at = 0;
    for (size_t i = 0; i < step_tokens_.size(); ++i)
      if (uoe_block_[i])
        for (int64_t& c : step_tokens_[i]) c = reduce_buf_[at++];
  }
  size_t i = 0;
  model.for_each_routed([&](const models::MoeLayerStats& st) {
    live_.on_routing(i, step_tokens_[i].data(), step_dropped_[i], st.router_entropy,
                     st.load_balance_loss, st.z_loss);
    std::fill(step_tokens_[i].begin(), step_tokens_[i].end(), 0);
    step_dropped_[i] = 0;
    ++i;
  });
  publish_collectives();
  if (device_.is_cuda())
    live_.on_device_memory(static_cast<double>(k::cuda::device_memory_used(device_.index)));
  mon::StepSample s;
  s.step = done;
  s.loss = loss;
  s.lr = lr;
  s.grad_norm = grad_norm;
  s.noise_sigma = sigma;
  s.seconds = seconds;
  s.tokens = tokens_per_step_;
  s.model_flops = flops_per_step_;
  s.phase_seconds = phases;
  s.timestamp = unix_now();
  live_.on_step(s);
}

static_assert(parallel::kCollKinds == monitoring::kCollectiveOpCount,
              "monitoring::kCollectiveOps lists parallel::CollKind");

void RunMonitor::publish_collectives() {
  const auto& comms = comms_;
  for (size_t c = 0; c < comms.size(); ++c)
    for (size_t op = 0; op < parallel::kCollKinds; ++op) {
      double sec = 0, bytes = 0;
      for (size_t d = 0; d < comms.size(); ++d)  // a group's host and device communicators
        if (comm_group_[d] == comm_group_[c]) {
          const auto& st = comms[d]->stats(static_cast<parallel::CollKind>(op));
          sec += st.seconds;
          bytes += static_cast<double>(st.bytes);
        }
      live_.on_collectives(comm_group_[c], op, sec, bytes);
    }
}

void RunMonitor::after_log(const std::vector<double>& layer_grad_norms) {
  live_.on_layer_grad_norms(layer_grad_norms);
}

void RunMonitor::after_eval(double loss, double bpb, double seconds) {
  live_.on_eval(loss, bpb);
  live_.on_phase(mon::Phase::eval, seconds);
}

void RunMonitor::after_control(const std::array<int, 4>& signals, uint32_t action_bits) {
  std::array<double, 4> sig{};
  for (size_t i = 0; i < sig.size(); ++i) sig[i] = signals[i];
  for (size_t a = 0; a < actions_.size(); ++a)
    if (action_bits & (1u << a)) actions_[a] += 1;
  live_.on_control(sig, actions_);
}

void RunMonitor::after_checkpoint(double seconds, size_t reason) {
  live_.on_checkpoint(seconds, reason, unix_now());
}

}  // namespace sparta::trainer
