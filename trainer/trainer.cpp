#include "trainer/trainer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <cblas.h>
#include <fmt/format.h>

#include "data/meta.h"
#include "kernels/ops.h"
#include "trainer/checkpoint/checkpoint.h"

namespace sparta::trainer {

namespace k = sparta::kernels;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

Trainer::Trainer(const Config& cfg, const RunOptions& opt) : cfg_(cfg), opt_(opt) {
  world_ = launch::discover_world();
  // The vocabulary size first: the layout check needs it (vocab-parallel tp must divide it).
  const data::PrepSummary meta = data::read_meta(cfg_.data.dir);
  if (cfg_.model.vocab_size == 0) cfg_.model.vocab_size = meta.vocab_size;
  if (cfg_.model.vocab_size < meta.vocab_size)
    SPARTA_USAGE_ERROR("model.vocab_size = {} is smaller than the tokenizer's {} in {}",
                       cfg_.model.vocab_size, meta.vocab_size, cfg_.data.dir);
  const auto& p = cfg_.parallel;
  const parallel::MeshLayout layout{static_cast<int>(p.tp),
                                    static_cast<int>(p.cp),
                                    static_cast<int>(p.ep),
                                    static_cast<int>(p.dp),
                                    p.order,
                                    static_cast<int>(p.zero),
                                    p.cp_algo == "ring"     ? parallel::CpAlgo::ring
                                    : p.cp_algo == "hybrid" ? parallel::CpAlgo::hybrid
                                                            : parallel::CpAlgo::ulysses,
                                    static_cast<int>(p.cp_ulysses)};
  mesh_ =
      std::make_unique<parallel::ProcessMesh>(layout, world_.size, models::mesh_limits(cfg_.model));
  parallel::validate_model_support(layout, models::mesh_limits(cfg_.model));
  fault_ = FaultInjection::from_env(world_.rank);
  const k::Device device = choose_device();
  groups_ = std::make_unique<parallel::ProcessGroups>(
      *mesh_, parallel::WorldInfo{world_.rank, world_.size, world_.launcher}, device, p.backend,
      p.timeout_s);
  if (world_.size > 1) say(mesh_->table().substr(0, mesh_->table().size() - 1));
  int threads = static_cast<int>(cfg_.train.threads);
  if (threads == 0 && world_.local_size > 1)  // ranks sharing a node share its cores
    threads =
        std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / world_.local_size);
  if (threads > 0) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
  }
  val_bytes_per_token_ = static_cast<double>(meta.val_bytes) / static_cast<double>(meta.val_tokens);
  open_data(meta.vocab_size);

  const int B = static_cast<int>(cfg_.train.batch_size);
  const uint64_t seed = static_cast<uint64_t>(cfg_.train.seed);
  const std::string& rc = cfg_.train.recompute;
  const models::Recompute recompute = rc == "attention" ? models::Recompute::attention
                                      : rc == "block"   ? models::Recompute::block
                                                        : models::Recompute::none;
  model_ =
      std::make_unique<models::Transformer>(cfg_.model, B, device, seed, groups_.get(), recompute);
  GradSyncConfig sc;
  sc.zero = p.zero == 1;
  sc.overlap = p.overlap_grad_reduce;
  sc.clip = cfg_.optim.clip_norm;
  if (cfg_.noise.enabled) {
    sc.noise.eta = cfg_.noise.eta;
    sc.noise.gamma = cfg_.noise.gamma;
    sc.noise.seed = static_cast<uint64_t>(cfg_.noise.seed >= 0 ? cfg_.noise.seed : cfg_.train.seed);
  }
  sync_ = std::make_unique<GradSync>(*model_, *groups_, sc);
  const AdamWConfig acfg{cfg_.optim.beta1, cfg_.optim.beta2, cfg_.optim.eps,
                         cfg_.optim.weight_decay};
  optim_ = sc.zero ? std::make_unique<AdamW>(model_->params(), model_->flat_params(), acfg,
                                             sync_->shard_begin(), sync_->shard_end())
                   : std::make_unique<AdamW>(model_->params(), model_->flat_params(), acfg);
  scalars_.assign(2, 0.0f);
  tokens_.resize(static_cast<size_t>(B * cfg_.model.seq_len));
  targets_.resize(tokens_.size());

  std::string metrics_path = world_.rank == 0 ? opt_.metrics_out : "";
  if (!opt_.run_dir.empty() && world_.rank == 0) {
    fs::create_directories(opt_.run_dir);
    std::ofstream(fs::path(opt_.run_dir) / "config.toml") << to_toml(cfg_);
    std::ofstream(fs::path(opt_.run_dir) / "status") << "running\n";  // see the end of run()
    if (metrics_path.empty()) metrics_path = (fs::path(opt_.run_dir) / "metrics.jsonl").string();
  }
  metrics_ =
      std::make_unique<monitoring::MetricsLog>(metrics_path, /*append=*/!opt_.resume.empty());
  const bool rpc = opt_.control_endpoint && cfg_.control.grpc_bind != "none";
  if (cfg_.monitoring.prometheus || rpc)
    monitor_ = std::make_unique<RunMonitor>(cfg_, world_, *groups_, *mesh_, *model_, device,
                                            opt_.run_dir, cfg_.monitoring.prometheus);
  if (cfg_.monitoring.prometheus)
    say(fmt::format(
        "monitoring: rank 0 metrics at http://{}/metrics{}", monitor_->endpoint(),
        monitor_->targets_file().empty()
            ? ""
            : ", every rank's in " + monitor_->targets_file() + " (Prometheus file_sd)"));
  // control.address and the trigger file: the run directory, or the V-cycle's top one.
  const std::string& control_dir = opt_.control_dir.empty() ? opt_.run_dir : opt_.control_dir;
  plane_ = std::make_unique<ControlPlane>(
      cfg_, world_, control_dir, layout_name(*mesh_, cfg_.parallel.zero),
      monitor_ ? &monitor_->live() : nullptr, opt_.control_endpoint);
  if (plane_->serving()) {
    say(fmt::format("control: sparta.v1.Control at {} (sparta-top {})", plane_->address(),
                    control_dir.empty() ? plane_->address() : control_dir));
  }
  // After MPI and NCCL initialisation, which may install handlers of their own.
  signals_ = std::make_unique<SignalHandlers>(signal_number(cfg_.control.checkpoint_signal),
                                              world_.rank == 0 && !opt_.quiet);
  std::string trigger = cfg_.control.trigger_file;
  if (trigger.empty() && !control_dir.empty())
    trigger = (fs::path(control_dir) / "control.request").string();
  if (trigger == "none") trigger.clear();
  control_ = std::make_unique<Control>(*groups_->world.host, world_.rank, trigger);
  say(
      fmt::format("sparta-train: {} parameters ({:.1f} MB), activations {:.1f} MB{}, device {}, "
                  "{} Post-LN + {} Pre-LN layers",
                  model_->num_params(), static_cast<double>(model_->param_bytes()) / 1e6,
                  static_cast<double>(model_->activation_bytes()) / 1e6,
                  cfg_.train.recompute == "none"
                      ? std::string()
                      : fmt::format(" (recompute {}: {:.1f} MB saved)", cfg_.train.recompute,
                                    static_cast<double>(model_->recompute_saved_bytes()) / 1e6),
                  k::to_string(device), cfg_.model.post_ln_layers(),
                  cfg_.model.n_layers - cfg_.model.post_ln_layers()));
  say(fmt::format(
      "data: {} train windows ({} tokens), {} val windows ({} tokens), {:.2f} bytes/token",
      train_data_->num_windows(), train_data_->num_tokens(), val_data_->num_windows(),
      val_data_->num_tokens(), val_bytes_per_token_));
}

// The gradient sync waits for its in-flight reductions before the model's memory goes; the
// endpoints stop before the metrics they serve.
Trainer::~Trainer() {
  plane_.reset();  // reads the monitor's numbers
  monitor_.reset();
  sync_.reset();
}

k::Device Trainer::choose_device() const {
  if (cfg_.train.device != "cuda") return k::Device::cpu();
  if (!k::cuda_available())
    SPARTA_USAGE_ERROR("train.device = \"cuda\" but no usable GPU was found{}",
                       k::cuda_device_count() == 0 ? " (or this build has no CUDA)" : "");
  return k::Device::cuda(world_.local_rank % k::cuda_device_count());
}

// Data-parallel readers take disjoint windows: (step, reader, b) -> ((step * readers + reader) *
// B + b), so dp readers of batch B see exactly the windows of one process with batch dp * B.
void Trainer::open_data(int vocab) {
  const int64_t T = cfg_.model.seq_len, B = cfg_.train.batch_size;
  train_data_ = std::make_unique<data::TokenDataset>(cfg_.data.dir, "train", T, vocab);
  val_data_ = std::make_unique<data::TokenDataset>(cfg_.data.dir, "val", T, vocab);
  const uint64_t seed = static_cast<uint64_t>(cfg_.train.seed);
  train_loader_ = std::make_unique<data::DataLoader>(*train_data_, B, seed, groups_->data_rank,
                                                     groups_->data_size);
  val_loader_ = std::make_unique<data::DataLoader>(*val_data_, B, seed);
}

void Trainer::say(const std::string& line) const {
  if (opt_.quiet || world_.rank != 0) return;
  fmt::print("{}\n", line);
  std::fflush(stdout);  // progress must show up line by line in log files and under Slurm
}

StepResult Trainer::step(int64_t step) {
  using mon = monitoring::Phase;
  StepResult r;
  const int accum = static_cast<int>(cfg_.train.grad_accum);
  auto& ph = r.phases;
  // Each phase's wall time; the part spent inside collectives goes to comm_wait instead.
  const auto t_step = Clock::now();
  const double comm_step = groups_->collective_seconds();
  auto timed = [&](monitoring::Phase p, auto&& f) {
    const auto t0 = Clock::now();
    const double c0 = groups_->collective_seconds();
    f();
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    ph[static_cast<size_t>(p)] += wall - (groups_->collective_seconds() - c0);
  };
  model_->zero_grads();
  double loss = 0;
  for (int micro = 0; micro < accum; ++micro) {
    const float scale = 1.0f / static_cast<float>(accum);
    timed(mon::data, [&] {
      train_loader_->train_batch(step + opt_.data_step_offset, micro, accum, tokens_.data(),
                                 targets_.data());
      model_->set_batch(tokens_.data(), targets_.data());
    });
    timed(mon::forward, [&] { loss += model_->forward_train(scale); });
    timed(mon::backward,
          [&] { model_->backward(scale, sync_->backward_hook(micro == accum - 1)); });
    if (monitor_) monitor_->after_micro_batch(*model_);
  }
  fault_.at_step(step);
  timed(mon::optimizer, [&] {
    r.loss = loss / accum;
    if (groups_->dp.size() > 1) {  // the reported loss is the mean over the data-parallel ranks
      scalars_[0] = static_cast<float>(r.loss);
      groups_->dp.host->all_reduce(host_scalars(1), parallel::ReduceOp::avg);
      r.loss = scalars_[0];
    }
    r.lr = lr_at(step, cfg_.train.steps, cfg_.optim.lr, cfg_.optim.warmup_steps,
                 cfg_.optim.min_lr_ratio);
    const GradSync::Reduced g = sync_->reduce(step);
    r.grad_norm = g.post.norm;
    r.noise_sigma = g.post.sigma;
    optim_->step(r.lr, g.post.optimizer_grad_scale, step + 1, g.grad);
    sync_->gather_params();
  });
  ph[static_cast<size_t>(mon::comm_wait)] = groups_->collective_seconds() - comm_step;
  r.seconds = std::chrono::duration<double>(Clock::now() - t_step).count();
  return r;
}

RunSummary Trainer::run() {
  try {
    return run_steps();
  } catch (const std::exception& e) {
    plane_->event(monitoring::EventKind::failure, 0, e.what());
    plane_->finish(0, 1);
    throw;
  }
}

RunSummary Trainer::run_steps() {
  RunSummary sum;
  const int64_t steps = cfg_.train.steps;
  const int64_t start = resume_if_asked();
  const int64_t stop_at = opt_.stop_at_step;
  if (stop_at >= 0 && (stop_at <= start || stop_at > steps))
    SPARTA_USAGE_ERROR(
        "--stop-at-step {} must be after the start step {} and at most train.steps = {}", stop_at,
        start, steps);
  const std::string ckpt_dir = checkpoint_dir();
  if (stop_at >= 0 && ckpt_dir.empty())
    SPARTA_USAGE_ERROR("--stop-at-step needs a place to save: give --run-dir or checkpoint.dir");
  sum.start_step = start;
  const double tokens_per_step = static_cast<double>(cfg_.train.batch_size * cfg_.model.seq_len *
                                                     cfg_.train.grad_accum * groups_->data_size);
  sum.tokens_per_step = tokens_per_step;
  const EvalResult uni = unigram_baseline();
  sum.unigram_val_loss = uni.loss;
  sum.unigram_val_bpb = uni.bpb;
  say(fmt::format("unigram baseline: val loss {:.4f} ({:.3f} bits/byte)", uni.loss, uni.bpb));
  say("effective config:\n" + to_toml(cfg_));

  const auto t0 = Clock::now();
  double window_ms = 0;
  int64_t window_steps = 0;
  std::array<double, monitoring::kPhases> window_phases{};
  sum.losses.reserve(static_cast<size_t>(steps - start));
  int64_t s = start;
  // A request that arrived while the run started (data, model, resume) acts before step 1: the
  // state is then the resumed checkpoint's (or the seeded start), so nothing new is saved.
  const bool halted =
      act_on_control(control_->agree(), start, /*saved=*/true, tokens_per_step, sum, false);
  for (; s < steps && !halted; ++s) {
    plane_->set_state("training", s);
    const auto ts = Clock::now();
    const StepResult r = step(s);
    last_step_ = r;
    window_ms += std::chrono::duration<double, std::milli>(Clock::now() - ts).count();
    ++window_steps;
    for (size_t p = 0; p < monitoring::kPhases; ++p) window_phases[p] += r.phases[p];
    if (!std::isfinite(r.loss))
      throw Error(
          ErrorKind::internal,
          fmt::format("training diverged: loss {} at step {} (lower optim.lr?)", r.loss, s + 1));
    sum.losses.push_back(r.loss);
    const int64_t done = s + 1;
    const bool last = done == steps, stop = done == stop_at;
    if (monitor_)
      monitor_->after_step(*model_, done, r.loss, r.lr, r.grad_norm, r.noise_sigma, r.seconds,
                           r.phases);
    if (done % cfg_.train.log_every == 0 || last) {
      for (double& p : window_phases) p /= static_cast<double>(window_steps);
      log_step(done, r, window_ms / static_cast<double>(window_steps), tokens_per_step,
               window_phases);
      window_ms = 0;
      window_steps = 0;
      window_phases = {};
    }
    ControlWord w = control_->agree();  // every rank, every step: all act at the same step
    plane_->on_heartbeats(control_->last_seen());
    bool eval_interrupted = false;
    if ((cfg_.train.eval_every > 0 && done % cfg_.train.eval_every == 0) || last) {
      plane_->set_state("evaluating", done);
      const auto te = Clock::now();
      const EvalResult e = evaluate(&w);
      eval_interrupted = e.interrupted;
      if (e.interrupted) {
        say(fmt::format("eval  step {} | interrupted by a control request", done));
      } else {
        if (monitor_)
          monitor_->after_eval(e.loss, e.bpb,
                               std::chrono::duration<double>(Clock::now() - te).count());
        metrics_->write(monitoring::EvalRecord{done, e.loss, e.bpb});
        say(fmt::format("eval  step {} | val loss {:.4f} | {:.3f} bits/byte | {} tokens", done,
                        e.loss, e.bpb, e.tokens));
        sum.final_val_loss = e.loss;
        sum.final_val_bpb = e.bpb;
        plane_->event(monitoring::EventKind::eval_done, done,
                      fmt::format("val loss {:.4f}, {:.3f} bits/byte", e.loss, e.bpb));
      }
    }
    const bool every = cfg_.checkpoint.every_steps > 0 && done % cfg_.checkpoint.every_steps == 0;
    const bool saved = !ckpt_dir.empty() && (every || last || stop);
    if (saved) save_checkpoint(done, tokens_per_step, sum, stop ? 2 : last ? 1 : 0);
    if (act_on_control(w, done, saved, tokens_per_step, sum, eval_interrupted)) {
      ++s;
      break;
    }
    if (stop) {
      say(fmt::format(
          "stopped after step {} as asked (--stop-at-step); continue with --resume auto", done));
      sum.stopped_early = true;
      ++s;
      break;
    }
  }
  sum.steps = s;
  sum.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  sum.tokens_per_s = tokens_per_step * static_cast<double>(s - start) / sum.seconds;
  sum.final_train_loss = sum.losses.empty() ? 0 : sum.losses.back();
  for (const auto& c : comm_records()) sum.comm_seconds += c.seconds;
  const std::string comm = world_.size > 1
                               ? fmt::format(" | {} ranks, communication {:.1f} % of the run",
                                             world_.size, 100.0 * sum.comm_seconds / sum.seconds)
                               : "";
  say(fmt::format(
      "done: {} steps, {:.0f} tokens in {} ({:.0f} tok/s) | train loss {:.4f} | val loss "
      "{:.4f} ({:.3f} bits/byte) vs unigram {:.4f} ({:.3f} bits/byte){}",
      s, tokens_per_step * static_cast<double>(s), monitoring::format_duration(sum.seconds),
      sum.tokens_per_s, sum.final_train_loss, sum.final_val_loss, sum.final_val_bpb, uni.loss,
      uni.bpb, comm));
  // <run-dir>/status: "running" from the start, "exited CODE STEPS" at a normal end. The batch
  // script of sparta-launch trusts it over the launcher's exit code (srun can exit 0 when its
  // step never launched) and tells a launch that never started from a crash.
  if (!opt_.run_dir.empty() && world_.rank == 0)
    std::ofstream(fs::path(opt_.run_dir) / "status")
        << "exited " << sum.exit_code << ' ' << s << '\n';
  plane_->finish(s, sum.exit_code);
  return sum;
}

void Trainer::log_step(int64_t done, const StepResult& r, double step_ms, double tokens_per_step,
                       const std::array<double, monitoring::kPhases>& window_phases) {
  monitoring::TrainRecord rec;
  rec.step = done;
  rec.loss = r.loss;
  rec.lr = r.lr;
  rec.grad_norm = r.grad_norm;
  rec.step_ms = step_ms;
  rec.tokens_per_s = tokens_per_step / (rec.step_ms / 1000.0);
  rec.layer_grad_norms = model_->layer_grad_norms();
  if (monitor_) monitor_->after_log(rec.layer_grad_norms);
  for (size_t p = 0; p < monitoring::kPhases; ++p)
    if (p != static_cast<size_t>(monitoring::Phase::checkpoint) &&
        p != static_cast<size_t>(monitoring::Phase::eval))
      rec.phase_seconds.emplace_back(monitoring::to_string(static_cast<monitoring::Phase>(p)),
                                     window_phases[p]);
  rec.noise_sigma = r.noise_sigma;
  rec.angular_distances = model_->angular_distances();
  for (const auto& st : model_->moe_stats())
    rec.moe.push_back({st.layer, st.expert_tokens, st.dropped, st.router_entropy,
                       st.load_balance_loss, st.z_loss, st.kind, st.fillers});
  if (world_.size > 1) rec.comm = comm_records();
  metrics_->write(rec);
  say(monitoring::progress_line(rec, cfg_.train.steps));
}

// Cumulative traffic of the communicators, one record per collective kind used.
std::vector<monitoring::CommRecord> Trainer::comm_records() const {
  std::vector<monitoring::CommRecord> out;
  for (const parallel::Comm* c : groups_->comms())
    for (size_t kind = 0; kind < parallel::kCollKinds; ++kind) {
      const auto ck = static_cast<parallel::CollKind>(kind);
      const auto& cs = c->stats(ck);
      if (cs.calls > 0)
        out.push_back({c->name(), parallel::to_string(ck), cs.calls, cs.bytes, cs.seconds});
    }
  return out;
}

k::Tensor Trainer::host_scalars(int64_t n) {
  return k::Tensor(scalars_.data(), k::DType::f32, k::Device::cpu(), {n});
}

}  // namespace sparta::trainer
