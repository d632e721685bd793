#include "trainer/trainer.h"

#include <omp.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <cblas.h>
#include <fmt/format.h>

#include "data/prep.h"
#include "kernels/ops.h"
#include "trainer/checkpoint/checkpoint.h"

namespace sparta::trainer {

namespace k = sparta::kernels;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

Trainer::Trainer(const Config& cfg, const RunOptions& opt) : cfg_(cfg), opt_(opt) {
  world_ = launch::discover_world();
  if (world_.size > 1)
    SPARTA_USAGE_ERROR(
        "launched as rank {} of {} by {}, but this sparta trains in one process only "
        "(the MPI/NCCL runtime is not built yet); run without mpirun/srun",
        world_.rank, world_.size, world_.launcher);
  dp_comm_ = std::make_unique<parallel::SelfComm>();
  if (cfg_.train.threads > 0) {
    omp_set_num_threads(static_cast<int>(cfg_.train.threads));
    openblas_set_num_threads(static_cast<int>(cfg_.train.threads));
  }

  k::Device device = k::Device::cpu();
  if (cfg_.train.device == "cuda") {
    if (!k::cuda_available())
      SPARTA_USAGE_ERROR("train.device = \"cuda\" but no usable GPU was found{}",
                         k::cuda_device_count() == 0 ? " (or this build has no CUDA)" : "");
    device = k::Device::cuda(world_.local_rank % k::cuda_device_count());
  }

  const data::PrepSummary meta = data::read_meta(cfg_.data.dir);
  if (cfg_.model.vocab_size == 0) cfg_.model.vocab_size = meta.vocab_size;
  if (cfg_.model.vocab_size < meta.vocab_size)
    SPARTA_USAGE_ERROR("model.vocab_size = {} is smaller than the tokenizer's {} in {}",
                       cfg_.model.vocab_size, meta.vocab_size, cfg_.data.dir);
  val_bytes_per_token_ = static_cast<double>(meta.val_bytes) / static_cast<double>(meta.val_tokens);

  const int64_t T = cfg_.model.seq_len, B = cfg_.train.batch_size;
  train_data_ = std::make_unique<data::TokenDataset>(cfg_.data.dir, "train", T, meta.vocab_size);
  val_data_ = std::make_unique<data::TokenDataset>(cfg_.data.dir, "val", T, meta.vocab_size);
  const uint64_t seed = static_cast<uint64_t>(cfg_.train.seed);
  train_loader_ =
      std::make_unique<data::DataLoader>(*train_data_, B, seed, world_.rank, world_.size);
  val_loader_ = std::make_unique<data::DataLoader>(*val_data_, B, seed);
  model_ = std::make_unique<models::Transformer>(cfg_.model, static_cast<int>(B), device, seed);
  optim_ = std::make_unique<AdamW>(
      model_->params(), model_->flat_params(),
      AdamWConfig{cfg_.optim.beta1, cfg_.optim.beta2, cfg_.optim.eps, cfg_.optim.weight_decay});
  tokens_.resize(static_cast<size_t>(B * T));
  targets_.resize(static_cast<size_t>(B * T));

  std::string metrics_path = opt_.metrics_out;
  if (!opt_.run_dir.empty()) {
    fs::create_directories(opt_.run_dir);
    std::ofstream(fs::path(opt_.run_dir) / "config.toml") << to_toml(cfg_);
    if (metrics_path.empty()) metrics_path = (fs::path(opt_.run_dir) / "metrics.jsonl").string();
  }
  metrics_ =
      std::make_unique<monitoring::MetricsLog>(metrics_path, /*append=*/!opt_.resume.empty());
  if (cfg_.noise.enabled) {
    noise_.eta = cfg_.noise.eta;
    noise_.gamma = cfg_.noise.gamma;
    noise_.seed = static_cast<uint64_t>(cfg_.noise.seed >= 0 ? cfg_.noise.seed : cfg_.train.seed);
  }

  say(
      fmt::format("sparta-train: {} parameters ({:.1f} MB), activations {:.1f} MB, device {}, "
                  "{} Post-LN + {} Pre-LN layers",
                  model_->num_params(), static_cast<double>(model_->param_bytes()) / 1e6,
                  static_cast<double>(model_->activation_bytes()) / 1e6, k::to_string(device),
                  cfg_.model.post_ln_layers(), cfg_.model.n_layers - cfg_.model.post_ln_layers()));
  say(fmt::format(
      "data: {} train windows ({} tokens), {} val windows ({} tokens), {:.2f} bytes/token",
      train_data_->num_windows(), train_data_->num_tokens(), val_data_->num_windows(),
      val_data_->num_tokens(), val_bytes_per_token_));
}

Trainer::~Trainer() = default;

void Trainer::say(const std::string& line) const {
  if (opt_.quiet || world_.rank != 0) return;
  fmt::print("{}\n", line);
  std::fflush(stdout);  // progress must show up line by line in log files and under Slurm
}

StepResult Trainer::step(int64_t step) {
  StepResult r;
  const int accum = static_cast<int>(cfg_.train.grad_accum);
  model_->zero_grads();
  double loss = 0;
  for (int micro = 0; micro < accum; ++micro) {
    train_loader_->train_batch(step, micro, accum, tokens_.data(), targets_.data());
    model_->set_batch(tokens_.data(), targets_.data());
    loss += model_->forward_backward(1.0f / static_cast<float>(accum));
  }
  dp_comm_->all_reduce(model_->flat_grads(), parallel::ReduceOp::avg);
  r.loss = loss / accum;
  // Spec order: reduction, then global-norm clip, then noise, then the optimizer.
  const GradPost g =
      clip_and_noise(model_->params(), model_->flat_grads(), cfg_.optim.clip_norm, noise_, step);
  r.grad_norm = g.norm;
  r.noise_sigma = g.sigma;
  r.lr = lr_at(step, cfg_.train.steps, cfg_.optim.lr, cfg_.optim.warmup_steps,
               cfg_.optim.min_lr_ratio);
  optim_->step(r.lr, g.optimizer_grad_scale, step + 1);
  return r;
}

EvalResult Trainer::evaluate() {
  const int64_t avail = val_loader_->eval_batches();
  const int64_t n = cfg_.train.eval_batches > 0 ? std::min(cfg_.train.eval_batches, avail) : avail;
  double nats = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    val_loader_->eval_batch(i, tokens_.data(), targets_.data());
    int64_t valid = 0;
    for (int32_t t : targets_) valid += t >= 0;
    model_->set_batch(tokens_.data(), targets_.data());
    nats += static_cast<double>(model_->forward_loss()) * static_cast<double>(valid);
    count += valid;
  }
  EvalResult r;
  r.tokens = count;
  r.loss = nats / static_cast<double>(std::max<int64_t>(1, count));
  r.bpb = r.loss / std::log(2.0) / val_bytes_per_token_;
  return r;
}

EvalResult Trainer::unigram_baseline() const {
  const int64_t V = cfg_.model.vocab_size;
  std::vector<double> counts(static_cast<size_t>(V), 1.0);  // add-one smoothing
  double total = static_cast<double>(V);
  for (const auto& s : train_data_->shards())
    for (int64_t i = 0; i < s.size(); ++i) counts[s.tokens()[i]] += 1.0;
  for (const auto& s : train_data_->shards()) total += static_cast<double>(s.size());
  double nats = 0;
  int64_t n = 0;
  for (const auto& s : val_data_->shards())
    for (int64_t i = 1; i < s.size(); ++i, ++n) nats -= std::log(counts[s.tokens()[i]] / total);
  EvalResult r;
  r.tokens = n;
  r.loss = nats / static_cast<double>(std::max<int64_t>(1, n));
  r.bpb = r.loss / std::log(2.0) / val_bytes_per_token_;
  return r;
}

std::string Trainer::checkpoint_dir() const {
  if (!cfg_.checkpoint.dir.empty()) return cfg_.checkpoint.dir;
  return opt_.run_dir.empty() ? "" : (fs::path(opt_.run_dir) / "checkpoints").string();
}

// Loads the checkpoint --resume names; returns the step to continue from.
int64_t Trainer::resume_if_asked() {
  if (opt_.resume.empty()) return 0;
  std::string path = opt_.resume;
  if (path == "auto") {
    const std::string dir = checkpoint_dir();
    if (dir.empty())
      SPARTA_USAGE_ERROR("--resume auto needs a place to look: give --run-dir or checkpoint.dir");
    const auto found = checkpoint::find_resumable(dir);
    if (!found) {
      say(fmt::format("resume: no complete checkpoint in {}; starting fresh", dir));
      return 0;
    }
    path = *found;
  }
  const auto t0 = Clock::now();
  const auto m = checkpoint::load(path, *model_, optim_.get());
  if (m.step > cfg_.train.steps)
    SPARTA_USAGE_ERROR("checkpoint {} is at step {}, beyond train.steps = {}", path, m.step,
                       cfg_.train.steps);
  say(fmt::format("resume: loaded {} (step {}, {} tokens seen) in {:.2f} s", path, m.step,
                  m.tokens_seen, std::chrono::duration<double>(Clock::now() - t0).count()));
  return m.step;
}

RunSummary Trainer::run() {
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
                                                     cfg_.train.grad_accum * world_.size);
  const EvalResult uni = unigram_baseline();
  sum.unigram_val_loss = uni.loss;
  sum.unigram_val_bpb = uni.bpb;
  say(fmt::format("unigram baseline: val loss {:.4f} ({:.3f} bits/byte)", uni.loss, uni.bpb));
  say("effective config:\n" + to_toml(cfg_));

  const auto t0 = Clock::now();
  double window_ms = 0;
  int64_t window_steps = 0;
  sum.losses.reserve(static_cast<size_t>(steps - start));
  int64_t s = start;
  for (; s < steps; ++s) {
    const auto ts = Clock::now();
    const StepResult r = step(s);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - ts).count();
    if (!std::isfinite(r.loss))
      throw Error(
          ErrorKind::internal,
          fmt::format("training diverged: loss {} at step {} (lower optim.lr?)", r.loss, s + 1));
    sum.losses.push_back(r.loss);
    window_ms += ms;
    ++window_steps;
    const bool last = s + 1 == steps;
    if ((s + 1) % cfg_.train.log_every == 0 || last) {
      monitoring::TrainRecord rec;
      rec.step = s + 1;
      rec.loss = r.loss;
      rec.lr = r.lr;
      rec.grad_norm = r.grad_norm;
      rec.step_ms = window_ms / static_cast<double>(window_steps);
      rec.tokens_per_s = tokens_per_step / (rec.step_ms / 1000.0);
      rec.layer_grad_norms = model_->layer_grad_norms();
      rec.noise_sigma = r.noise_sigma;
      rec.angular_distances = model_->angular_distances();
      for (const auto& st : model_->moe_stats())
        rec.moe.push_back({st.layer, st.expert_tokens, st.dropped, st.router_entropy,
                           st.load_balance_loss, st.z_loss, st.kind, st.fillers});
      metrics_->write(rec);
      say(monitoring::progress_line(rec, steps));
      window_ms = 0;
      window_steps = 0;
    }
    if ((cfg_.train.eval_every > 0 && (s + 1) % cfg_.train.eval_every == 0) || last) {
      const EvalResult e = evaluate();
      metrics_->write(monitoring::EvalRecord{s + 1, e.loss, e.bpb});
      say(fmt::format("eval  step {} | val loss {:.4f} | {:.3f} bits/byte | {} tokens", s + 1,
                      e.loss, e.bpb, e.tokens));
      sum.final_val_loss = e.loss;
      sum.final_val_bpb = e.bpb;
    }
    const int64_t done = s + 1;
    const bool stop = done == stop_at;
    if (!ckpt_dir.empty() &&
        ((cfg_.checkpoint.every_steps > 0 && done % cfg_.checkpoint.every_steps == 0) || last ||
         stop)) {
      checkpoint::SaveInfo info;
      info.step = done;
      info.tokens_seen = static_cast<int64_t>(tokens_per_step) * done;
      info.seed = static_cast<uint64_t>(cfg_.train.seed);
      info.samples_per_step = cfg_.train.batch_size * cfg_.train.grad_accum * world_.size;
      info.epoch = train_loader_->epoch_of(done, static_cast<int>(cfg_.train.grad_accum));
      info.config_toml = to_toml(cfg_);
      info.tokenizer_path = (fs::path(cfg_.data.dir) / "tokenizer.model").string();
      const auto saved = checkpoint::save(ckpt_dir, info, *model_, *optim_,
                                          static_cast<int>(cfg_.checkpoint.keep_last));
      sum.last_checkpoint = saved.path;
      sum.checkpoint_seconds += saved.seconds;
      sum.checkpoint_bytes = saved.bytes;
      say(fmt::format("checkpoint: saved {} ({:.1f} MB) in {:.2f} s", saved.path,
                      static_cast<double>(saved.bytes) / 1e6, saved.seconds));
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
  say(fmt::format(
      "done: {} steps, {:.0f} tokens in {} ({:.0f} tok/s) | train loss {:.4f} | val loss "
      "{:.4f} ({:.3f} bits/byte) vs unigram {:.4f} ({:.3f} bits/byte)",
      steps, tokens_per_step * static_cast<double>(steps), monitoring::format_duration(sum.seconds),
      sum.tokens_per_s, sum.final_train_loss, sum.final_val_loss, sum.final_val_bpb, uni.loss,
      uni.bpb));
  return sum;
}

}  // namespace sparta::trainer
