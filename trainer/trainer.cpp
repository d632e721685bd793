#include "trainer/trainer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <cblas.h>
#include <fmt/format.h>

#include "data/prep.h"
#include "kernels/ops.h"
#ifdef SPARTA_HAVE_MPI
#include "parallel/mpi_comm.h"
#endif
#ifdef SPARTA_HAVE_NCCL
#include "parallel/nccl_comm.h"
#endif
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
  setup_parallel();
  int threads = static_cast<int>(cfg_.train.threads);
  if (threads == 0 && world_.local_size > 1)  // ranks sharing a node share its cores
    threads =
        std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / world_.local_size);
  if (threads > 0) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
  }

  k::Device device = k::Device::cpu();
  if (cfg_.train.device == "cuda") {
    if (!k::cuda_available())
      SPARTA_USAGE_ERROR("train.device = \"cuda\" but no usable GPU was found{}",
                         k::cuda_device_count() == 0 ? " (or this build has no CUDA)" : "");
    device = k::Device::cuda(world_.local_rank % k::cuda_device_count());
  }
  // Device tensors (gradients, parameters, moments) go through NCCL when training on GPUs;
  // host scalars (loss, norms, evaluation sums) always through MPI.
  grad_comm_ = dp_comm_.get();
  const std::string& backend = cfg_.parallel.backend;
  if (backend == "nccl" && !device.is_cuda())
    SPARTA_USAGE_ERROR("parallel.backend = \"nccl\" needs train.device = \"cuda\"");
  ep_dev_ = ep_comm_.get();
  edp_dev_ = edp_comm_.get();
  tp_dev_ = tp_comm_.get();
  cp_dev_ = cp_comm_.get();
  if (device.is_cuda() && world_.size > 1 && backend != "mpi") {
#ifdef SPARTA_HAVE_NCCL
    auto twin = [&](std::unique_ptr<parallel::Comm>& host, std::unique_ptr<parallel::Comm>& dev,
                    parallel::Comm*& use, const char* name) {
      if (host->size() == 1) return;
      dev = parallel::make_nccl_comm(*host, device.index, name);
      use = dev.get();
    };
    twin(dp_comm_, nccl_dp_, grad_comm_, "dp");
    twin(ep_comm_, nccl_ep_, ep_dev_, "ep");
    twin(edp_comm_, nccl_edp_, edp_dev_, "edp");
    twin(tp_comm_, nccl_tp_, tp_dev_, "tp");
    twin(cp_comm_, nccl_cp_, cp_dev_, "cp");
#else
    if (backend == "nccl")
      SPARTA_USAGE_ERROR("parallel.backend = \"nccl\", but this sparta was built without NCCL");
#endif
  }

  val_bytes_per_token_ = static_cast<double>(meta.val_bytes) / static_cast<double>(meta.val_tokens);

  const int64_t T = cfg_.model.seq_len, B = cfg_.train.batch_size;
  train_data_ = std::make_unique<data::TokenDataset>(cfg_.data.dir, "train", T, meta.vocab_size);
  val_data_ = std::make_unique<data::TokenDataset>(cfg_.data.dir, "val", T, meta.vocab_size);
  const uint64_t seed = static_cast<uint64_t>(cfg_.train.seed);
  // Data-parallel ranks read disjoint windows: (step, rank, b) -> ((step * dp + rank) * B + b),
  // so dp ranks of batch B see exactly the windows of one process with batch dp * B.
  train_loader_ = std::make_unique<data::DataLoader>(*train_data_, B, seed, data_rank_, data_size_);
  val_loader_ = std::make_unique<data::DataLoader>(*val_data_, B, seed);
  models::ModelParallel par;
  par.tp = tp_comm_->size();
  par.tp_rank = tp_comm_->rank();
  par.ep = ep_comm_->size();
  par.ep_rank = ep_comm_->rank();
  par.tp_dev = tp_dev_;
  par.tp_host = tp_comm_.get();
  par.ep_dev = ep_dev_;
  par.ep_host = ep_comm_.get();
  par.cp = cp_comm_->size();
  par.cp_rank = cp_comm_->rank();
  par.cp_dev = cp_dev_;
  model_ =
      std::make_unique<models::Transformer>(cfg_.model, static_cast<int>(B), device, seed, par);
  if (dp_comm_->size() > 1) model_->set_data_parallel(dp_comm_.get());
  const AdamWConfig acfg{cfg_.optim.beta1, cfg_.optim.beta2, cfg_.optim.eps,
                         cfg_.optim.weight_decay};
  if (cfg_.parallel.zero == 1) {
    const int64_t n = model_->flat_params().numel();
    const auto [b, e] = parallel::Comm::block_range(n, dp_comm_->size(), dp_comm_->rank());
    optim_ = std::make_unique<AdamW>(model_->params(), model_->flat_params(), acfg, b, e);
    grad_shard_ =
        k::Arena(device, static_cast<size_t>(std::max<int64_t>(1, e - b)) * 4, "grad_shard");
    grad_shard_.alloc(k::DType::f32, {std::max<int64_t>(1, e - b)});
  } else {
    optim_ = std::make_unique<AdamW>(model_->params(), model_->flat_params(), acfg);
  }
  scalars_.assign(2, 0.0f);
  build_buckets();
  tokens_.resize(static_cast<size_t>(B * T));
  targets_.resize(static_cast<size_t>(B * T));
  local_tokens_.resize(static_cast<size_t>(B * model_->seq_len_local()));
  local_targets_.resize(local_tokens_.size());

  std::string metrics_path = world_.rank == 0 ? opt_.metrics_out : "";
  if (!opt_.run_dir.empty() && world_.rank == 0) {
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

// An exception may leave bucket all-reduces in flight (started in the backward, waited in
// reduce_grads): complete them before the gradient memory goes, or MPI's progress in the
// failure protocol would write into freed memory. The peers started the same collectives, so
// this returns promptly; a dead peer ends the job through the wait's timeout instead.
Trainer::~Trainer() {
  try {
    if (grad_comm_) grad_comm_->wait_all();
    if (edp_dev_) edp_dev_->wait_all();
  } catch (...) {  // already failing: the job ends through the failure protocol
  }
}

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
    set_batch();
    // The last micro-batch's backward starts each block's gradient reduction as it finishes.
    overlap_now_ = micro == accum - 1 && !optim_->sharded() && world_.size > 1 &&
                   cfg_.parallel.overlap_grad_reduce;
    loss += model_->forward_backward(1.0f / static_cast<float>(accum));
  }
  overlap_now_ = false;
  if (fail_at_step_ == step) {
    if (fail_hang_) std::this_thread::sleep_for(std::chrono::hours(1));  // a stuck rank
    throw Error(ErrorKind::internal,
                fmt::format("injected failure at step {} (SPARTA_TEST_FAIL)", step + 1));
  }
  r.loss = loss / accum;
  if (dp_comm_->size() > 1) {  // the reported loss is the mean over every data-parallel rank
    scalars_[0] = static_cast<float>(r.loss);
    dp_comm_->all_reduce(host_scalars(1), parallel::ReduceOp::avg);
    r.loss = scalars_[0];
  }
  r.lr = lr_at(step, cfg_.train.steps, cfg_.optim.lr, cfg_.optim.warmup_steps,
               cfg_.optim.min_lr_ratio);
  // Spec order: reduction, then global-norm clip, then noise, then the optimizer.
  if (!optim_->sharded()) {
    reduce_grads();
    const GradPost g = clip_and_noise_with_norm(model_->params(), model_->flat_grads(),
                                                grad_norm(model_->flat_grads()),
                                                cfg_.optim.clip_norm, noise_, step);
    r.grad_norm = g.norm;
    r.noise_sigma = g.sigma;
    optim_->step(r.lr, g.optimizer_grad_scale, step + 1);
    return r;
  }
  // ZeRO-1: each rank reduces, clips, noises and updates only its block of the flat parameters,
  // then the blocks are all-gathered. The norm is the all-reduced sum of the blocks' squares;
  // the noise is keyed by (parameter, element), so a block gets exactly the elements' noise.
  const k::Tensor gs = grad_shard_.flat_f32().rows(0, optim_->shard_end() - optim_->shard_begin());
  grad_comm_->reduce_scatter(gs, model_->flat_grads(), parallel::ReduceOp::avg);
  scalars_[0] = gs.numel() > 0 ? static_cast<float>(k::sum_squares(gs)) : 0.0f;
  dp_comm_->all_reduce(host_scalars(1), parallel::ReduceOp::sum);
  r.grad_norm = std::sqrt(static_cast<double>(scalars_[0]));
  const double clip = cfg_.optim.clip_norm;
  const double clip_scale = clip > 0 && r.grad_norm > clip ? clip / r.grad_norm : 1.0;
  r.noise_sigma = noise_sigma(noise_, step);
  double opt_scale = clip_scale;
  if (r.noise_sigma > 0) {
    if (clip_scale != 1.0) k::scale(gs, static_cast<float>(clip_scale));
    opt_scale = 1.0;
    optim_->for_each_in_range(
        optim_->shard_begin(), optim_->shard_end(),
        [&](size_t i, int64_t in_param, int64_t n, int64_t flat_at) {
          add_param_noise(
              model_->params()[i], static_cast<uint32_t>(i),
              gs.rows(flat_at - optim_->shard_begin(), flat_at - optim_->shard_begin() + n),
              in_param, static_cast<float>(r.noise_sigma), noise_.seed, step);
        });
  }
  optim_->step(r.lr, opt_scale, step + 1, gs);
  const k::Tensor fp = model_->flat_params();
  grad_comm_->all_gather(fp, fp.rows(optim_->shard_begin(), optim_->shard_end()));
  return r;
}

// Averages the gradients over the ranks that hold the same parameters. Dense parameters (the
// none and tp groups, one contiguous range) over the dense data-parallel group. Experts over
// the expert-data-parallel group, as a sum divided by the dense group's size: an expert's
// gradient already sums the contributions of every ep rank's tokens (each scaled by its rank's
// 1/tokens), so this is the one-process mean over the global batch.
void Trainer::reduce_grads() {
  for (size_t i = 0; i < buckets_.size(); ++i)
    if (!started_[i]) start_buckets(i);
  grad_comm_->wait_all();
  edp_dev_->wait_all();
  std::fill(started_.begin(), started_.end(), 0);
  const auto [eb, ee] = model_->group_range(models::ShardGroup::ep);
  if (ee > eb)
    k::scale(model_->flat_grads().rows(eb, ee), 1.0f / static_cast<float>(dp_comm_->size()));
}

void Trainer::start_buckets(size_t i) {
  for (const GradBucket& b : buckets_[i])
    if (b.comm)
      b.comm->start_all_reduce(b.t, b.expert ? parallel::ReduceOp::sum : parallel::ReduceOp::avg);
  started_[i] = 1;
  grad_comm_->progress();  // advance the blocks above while this one's reduction starts
  edp_dev_->progress();
}

void Trainer::build_buckets() {
  const int64_t L = cfg_.model.n_layers;
  buckets_.assign(static_cast<size_t>(L + 1), {});
  started_.assign(static_cast<size_t>(L + 1), 0);
  const k::Tensor flat = model_->flat_grads();
  const auto [eb, ee] = model_->group_range(models::ShardGroup::ep);
  struct Range {
    int64_t b, e;
    size_t key;
    bool expert;
  };
  std::vector<Range> rs;
  for (const auto& p : model_->params()) {
    const int64_t b = (static_cast<char*>(p.g.data) - static_cast<char*>(flat.data)) /
                      static_cast<int64_t>(sizeof(float));
    rs.push_back(
        {b, b + p.g.numel(), static_cast<size_t>(p.layer < 0 ? L : p.layer), b >= eb && b < ee});
  }
  std::sort(rs.begin(), rs.end(), [](const Range& x, const Range& y) { return x.b < y.b; });
  std::vector<Range> merged;  // neighbours of one bucket merge across the (zero) padding
  for (const Range& r : rs) {
    if (!merged.empty() && merged.back().key == r.key && merged.back().expert == r.expert)
      merged.back().e = r.e;
    else
      merged.push_back(r);
  }
  for (const Range& r : merged) {
    parallel::Comm* c = r.expert ? edp_dev_ : grad_comm_;
    buckets_[r.key].push_back({c->size() > 1 ? c : nullptr, flat.rows(r.b, r.e), r.expert});
  }
  model_->set_backward_hook([this](int layer) {
    if (overlap_now_) start_buckets(static_cast<size_t>(layer));
  });
}

// The norm of the full gradient: replicated parameters once, sharded ones summed over their
// shard group (after reduce_grads every replica holds the same values).
double Trainer::grad_norm(const k::Tensor& flat) {
  double ss = 0;
  for (int g = 0; g < models::kShardGroups; ++g) {
    const auto grp = static_cast<models::ShardGroup>(g);
    const auto [b, e] = model_->group_range(grp);
    double part = e > b ? k::sum_squares(flat.rows(b, e)) : 0.0;
    parallel::Comm* c = model_->shard_comm(grp);
    if (c && c->size() > 1) {
      scalars_[0] = static_cast<float>(part);
      c->all_reduce(host_scalars(1), parallel::ReduceOp::sum);
      part = scalars_[0];
    }
    ss += part;
  }
  return std::sqrt(ss);
}

// Cumulative traffic of the communicators, one record per collective kind used.
std::vector<monitoring::CommRecord> Trainer::comm_records() const {
  std::vector<monitoring::CommRecord> out;
  for (const parallel::Comm* c :
       {dp_comm_.get(), ep_comm_.get(), edp_comm_.get(), tp_comm_.get(), cp_comm_.get(),
        nccl_dp_.get(), nccl_ep_.get(), nccl_edp_.get(), nccl_tp_.get(), nccl_cp_.get()}) {
    if (!c || c->size() == 1) continue;
    for (size_t kind = 0; kind < parallel::kCollKinds; ++kind) {
      const auto k = static_cast<parallel::CollKind>(kind);
      const auto& cs = c->stats(k);
      if (cs.calls > 0)
        out.push_back({c->name(), parallel::to_string(k), cs.calls, cs.bytes, cs.seconds});
    }
  }
  return out;
}

// The micro-batch in tokens_/targets_ to the model: whole sequences, or with context
// parallelism this rank's part of each. Returns the targets the model got.
const std::vector<int32_t>& Trainer::set_batch() {
  const int cp = cp_comm_->size();
  if (cp == 1) {
    model_->set_batch(tokens_.data(), targets_.data());
    return targets_;
  }
  const int64_t T = cfg_.model.seq_len, Tl = T / cp, r = cp_comm_->rank();
  for (int64_t b = 0; b < cfg_.train.batch_size; ++b) {
    std::copy_n(tokens_.begin() + b * T + r * Tl, Tl, local_tokens_.begin() + b * Tl);
    std::copy_n(targets_.begin() + b * T + r * Tl, Tl, local_targets_.begin() + b * Tl);
  }
  model_->set_batch(local_tokens_.data(), local_targets_.data());
  return local_targets_;
}

k::Tensor Trainer::host_scalars(int64_t n) {
  return k::Tensor(scalars_.data(), k::DType::f32, k::Device::cpu(), {n});
}

// Builds the communicators from the launcher's world and the [parallel] layout; prints the
// layout table on rank 0. Only data parallelism (with or without ZeRO-1) runs today: tp, cp and
// ep layouts are validated, then refused.
void Trainer::setup_parallel() {
  const auto& p = cfg_.parallel;
  parallel::MeshLayout layout;
  layout.tp = static_cast<int>(p.tp);
  layout.cp = static_cast<int>(p.cp);
  layout.ep = static_cast<int>(p.ep);
  layout.dp = static_cast<int>(p.dp);
  layout.order = p.order;
  parallel::MeshModelLimits lim;
  const auto& m = cfg_.model;
  lim.n_heads = m.n_heads;
  lim.d_ff = m.d_ff;
  lim.vocab_size = m.vocab_size;
  lim.seq_len = m.seq_len;
  lim.moe_experts = m.moe_experts;
  lim.uoe_attn_experts = m.uoe ? m.uoe_attn_experts_or_default() : 0;
  lim.uoe_mlp_experts = m.uoe ? m.uoe_mlp_experts : 0;
  mesh_ = std::make_unique<parallel::ProcessMesh>(layout, world_.size, lim);
  if (p.cp > 1 && m.uoe)
    SPARTA_USAGE_ERROR(
        "parallel.cp = {} with uoe.enabled: UoE assigns slots over whole sequences, which context "
        "parallelism splits; use cp = 1 (tp splits UoE's experts)",
        p.cp);
  if (p.tp > 1 && m.moe_experts > 0)
    SPARTA_USAGE_ERROR(
        "parallel.tp = {} with moe.experts = {}: MoE layers are split by expert parallelism; use "
        "parallel.ep (and tp = 1) for MoE and RMoE models",
        p.tp, m.moe_experts);
  if (p.zero == 1 && (p.tp > 1 || p.ep > 1))
    SPARTA_USAGE_ERROR(
        "parallel.zero = 1 with tp = {} and ep = {}: ZeRO-1 shards the optimizer over data "
        "parallelism only (set parallel.zero = 0, or tp = ep = 1)",
        p.tp, p.ep);
  // Failure injection for the distributed-runtime tests: "RANK:STEP" throws on that rank at that
  // (1-based) step, "RANK:STEP:hang" makes it stop responding instead.
  if (const char* f = std::getenv("SPARTA_TEST_FAIL")) {
    int rank = -1;
    long long s = -1;
    char mode[8] = {};
    const int got = std::sscanf(f, "%d:%lld:%7s", &rank, &s, mode);
    if (got < 2 || s < 1 || (got == 3 && std::string(mode) != "hang"))
      SPARTA_USAGE_ERROR("SPARTA_TEST_FAIL='{}' must be RANK:STEP or RANK:STEP:hang (STEP >= 1)",
                         f);
    if (rank == world_.rank) {
      fail_at_step_ = s - 1;
      fail_hang_ = got == 3;
    }
  }
  // Data: ranks with the same ep and dp coordinates read the same sequences (tp and cp peers).
  data_size_ = mesh_->size(parallel::Dim::ep) * mesh_->size(parallel::Dim::dp);
  data_rank_ = mesh_->coord(world_.rank, parallel::Dim::dp) * mesh_->size(parallel::Dim::ep) +
               mesh_->coord(world_.rank, parallel::Dim::ep);
  if (world_.size == 1) {
    world_comm_ = std::make_unique<parallel::SelfComm>("world");
    dp_comm_ = std::make_unique<parallel::SelfComm>("dp");
    ep_comm_ = std::make_unique<parallel::SelfComm>("ep");
    edp_comm_ = std::make_unique<parallel::SelfComm>("edp");
    tp_comm_ = std::make_unique<parallel::SelfComm>("tp");
    cp_comm_ = std::make_unique<parallel::SelfComm>("cp");
    return;
  }
#ifdef SPARTA_HAVE_MPI
  if (!parallel::MpiRuntime::active())
    SPARTA_USAGE_ERROR(
        "launched as rank {} of {} by {}, but MPI was not initialised by the "
        "program",
        world_.rank, world_.size, world_.launcher);
  parallel::MpiRuntime::set_timeout(p.timeout_s);
  world_comm_ = parallel::MpiRuntime::world();
  using parallel::Dim;
  auto group = [&](std::vector<Dim> dims, const char* name) {
    return world_comm_->split(mesh_->group_color(world_.rank, dims), world_.rank, name);
  };
  // Context-parallel peers hold the same parameters on different tokens: they reduce gradients
  // with the data-parallel ranks.
  dp_comm_ = group({Dim::cp, Dim::ep, Dim::dp}, "dp");
  ep_comm_ = group({Dim::ep}, "ep");
  edp_comm_ = group({Dim::cp, Dim::dp}, "edp");
  tp_comm_ = group({Dim::tp}, "tp");
  cp_comm_ = group({Dim::cp}, "cp");
  say(mesh_->table().substr(0, mesh_->table().size() - 1));
#else
  SPARTA_USAGE_ERROR(
      "launched as rank {} of {} by {}, but this sparta was built without MPI "
      "(configure with -DSPARTA_MPI=ON)",
      world_.rank, world_.size, world_.launcher);
#endif
}

EvalResult Trainer::evaluate() {
  const int64_t avail = val_loader_->eval_batches();
  const int64_t n = cfg_.train.eval_batches > 0 ? std::min(cfg_.train.eval_batches, avail) : avail;
  double nats = 0;
  int64_t count = 0;
  // Data-parallel ranks split the batches (context-parallel peers share one, each scoring its
  // part of the sequences); the sums are all-reduced. A forward of a split model is collective
  // over its tp, cp and ep groups, so every rank runs the same number of forwards: a rank past
  // the end repeats batch 0 and does not count it.
  const int64_t dps = data_size_, rounds = (n + dps - 1) / dps;
  const bool collective = tp_comm_->size() > 1 || ep_comm_->size() > 1 || cp_comm_->size() > 1;
  for (int64_t round = 0; round < rounds; ++round) {
    const int64_t i = round * dps + data_rank_;
    if (i >= n && !collective) break;
    val_loader_->eval_batch(i < n ? i : 0, tokens_.data(), targets_.data());
    const std::vector<int32_t>& tg = set_batch();
    int64_t valid = 0;
    for (int32_t t : tg) valid += t >= 0;
    const double loss = model_->forward_loss();
    if (i >= n) continue;
    nats += loss * static_cast<double>(valid);
    count += valid;
  }
  if (dp_comm_->size() > 1) {
    scalars_[0] = static_cast<float>(nats);
    scalars_[1] = static_cast<float>(count);
    dp_comm_->all_reduce(host_scalars(2), parallel::ReduceOp::sum);
    nats = scalars_[0];
    count = static_cast<int64_t>(std::llround(scalars_[1]));
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
  optim_->prepare_full_state();  // ZeRO-1: load into full-size moments, then keep the shard
  const auto m = checkpoint::load(path, *model_, optim_.get());
  optim_->scatter_full_state();
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
                                                     cfg_.train.grad_accum * data_size_);
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
      if (world_.size > 1) rec.comm = comm_records();
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
      info.samples_per_step = cfg_.train.batch_size * cfg_.train.grad_accum * data_size_;
      info.epoch = train_loader_->epoch_of(done, static_cast<int>(cfg_.train.grad_accum));
      info.config_toml = to_toml(cfg_);
      info.tokenizer_path = (fs::path(cfg_.data.dir) / "tokenizer.model").string();
      optim_->gather_full_state(*grad_comm_);  // ZeRO-1: every rank's moments, on every rank
      info.layout = {world_.size,
                     mesh_->size(parallel::Dim::dp),
                     mesh_->size(parallel::Dim::tp),
                     mesh_->size(parallel::Dim::cp),
                     mesh_->size(parallel::Dim::ep),
                     cfg_.parallel.zero};
      checkpoint::SaveResult saved;
      // Sharded parameters are gathered (collective), so then every rank takes part.
      if (world_.rank == 0 || tp_comm_->size() > 1 || ep_comm_->size() > 1)
        saved = checkpoint::save(ckpt_dir, info, *model_, *optim_,
                                 static_cast<int>(cfg_.checkpoint.keep_last), world_.rank == 0);
      world_comm_->barrier();  // nobody runs ahead (or resumes) before the save is complete
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
  for (const auto& c : comm_records()) sum.comm_seconds += c.seconds;
  const std::string comm = world_.size > 1
                               ? fmt::format(" | {} ranks, communication {:.1f} % of the run",
                                             world_.size, 100.0 * sum.comm_seconds / sum.seconds)
                               : "";
  say(fmt::format(
      "done: {} steps, {:.0f} tokens in {} ({:.0f} tok/s) | train loss {:.4f} | val loss "
      "{:.4f} ({:.3f} bits/byte) vs unigram {:.4f} ({:.3f} bits/byte){}",
      steps, tokens_per_step * static_cast<double>(steps), monitoring::format_duration(sum.seconds),
      sum.tokens_per_s, sum.final_train_loss, sum.final_val_loss, sum.final_val_bpb, uni.loss,
      uni.bpb, comm));
  return sum;
}

}  // namespace sparta::trainer
