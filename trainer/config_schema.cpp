#include <fmt/format.h>

#include "trainer/config_schema.h"

namespace sparta::trainer::schema_detail {

std::string quote(const std::string& s) {
  return "\"" + s + "\"";
}

namespace {

using models::FfnType;
using models::NormPlacement;
using models::NormType;
using models::PosEncoding;

template <class T>
std::string real_text(T v) {
  std::string s = fmt::format("{}", v);  // shortest round-trip form of the stored type
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // keep it a TOML float
  return s;
}

std::vector<Key> build_schema() {
  std::vector<Key> keys;
  auto add_int = [&](std::string sec, std::string name, auto ref, double lo, double hi,
                     std::string doc) {
    Key k{sec, name, Kind::integer, doc, lo, hi, {}, {}, {}};
    k.set = [ref](Config& c, const std::string& v) {
      ref(c) = static_cast<std::remove_reference_t<decltype(ref(c))>>(std::stoll(v));
    };
    k.get = [ref](const Config& c) { return std::to_string(ref(const_cast<Config&>(c))); };
    keys.push_back(std::move(k));
  };
  auto add_real = [&](std::string sec, std::string name, auto ref, double lo, double hi,
                      std::string doc) {
    Key k{sec, name, Kind::real, doc, lo, hi, {}, {}, {}};
    k.set = [ref](Config& c, const std::string& v) {
      ref(c) = static_cast<std::remove_reference_t<decltype(ref(c))>>(std::stod(v));
    };
    k.get = [ref](const Config& c) { return real_text(ref(const_cast<Config&>(c))); };
    keys.push_back(std::move(k));
  };
  auto add_bool = [&](std::string sec, std::string name, auto ref, std::string doc) {
    Key k{sec, name, Kind::boolean, doc, 0, 1, {}, {}, {}};
    k.set = [ref](Config& c, const std::string& v) { ref(c) = v == "true"; };
    k.get = [ref](const Config& c) {
      return std::string(ref(const_cast<Config&>(c)) ? "true" : "false");
    };
    keys.push_back(std::move(k));
  };
  auto add_string = [&](std::string sec, std::string name, auto ref, std::string doc) {
    Key k{sec, name, Kind::string, doc, 0, 0, {}, {}, {}};
    k.set = [ref](Config& c, const std::string& v) { ref(c) = v; };
    k.get = [ref](const Config& c) { return quote(ref(const_cast<Config&>(c))); };
    keys.push_back(std::move(k));
  };
  // An enum stored as E, spelled by to_string(E) for each listed value.
  auto add_choice = [&](std::string sec, std::string name, auto ref, auto values, std::string doc) {
    Key k{sec, name, Kind::choice, doc, 0, 0, {}, {}, {}};
    for (auto v : values) k.choices.push_back(models::to_string(v));
    k.set = [ref, values](Config& c, const std::string& s) {
      for (auto v : values)
        if (s == models::to_string(v)) ref(c) = v;
    };
    k.get = [ref](const Config& c) {
      return quote(models::to_string(ref(const_cast<Config&>(c))));
    };
    keys.push_back(std::move(k));
  };
#define REF(expr)           \
  [](Config & c) -> auto& { \
    return c.expr;          \
  }
  add_int("model", "n_layers", REF(model.n_layers), 1, 1024, "transformer blocks L");
  add_int("model", "d_model", REF(model.d_model), 1, 65536, "model width C");
  add_int("model", "n_heads", REF(model.n_heads), 1, 1024,
          "attention heads H (must divide d_model)");
  add_int("model", "d_ff", REF(model.d_ff), 1, 1 << 20,
          "FFN hidden width F (SwiGLU: of gate and of up)");
  add_int("model", "vocab_size", REF(model.vocab_size), 0, 65535,
          "vocabulary V; 0 takes the tokenizer's size from the data directory");
  add_int("model", "seq_len", REF(model.seq_len), 1, 1 << 20, "context length T");
  add_choice("model", "norm", REF(model.norm), std::vector{NormType::layernorm, NormType::rmsnorm},
             "normalisation");
  add_choice("model", "norm_placement", REF(model.norm_placement),
             std::vector{NormPlacement::pre, NormPlacement::post, NormPlacement::mix},
             "where each layer's two norms sit; mix = Mix-LN: the first floor(mixln_alpha * L) "
             "layers Post-LN, the rest Pre-LN");
  add_real("model", "mixln_alpha", REF(model.mixln_alpha), 0.0, 1.0,
           "Mix-LN fraction of Post-LN layers (norm_placement = \"mix\")");
  add_int("model", "mixln_post_layers", REF(model.mixln_post_layers), -1, 1024,
          "Mix-LN: explicit number K of Post-LN layers; -1 uses mixln_alpha");
  add_choice("model", "pos", REF(model.pos), std::vector{PosEncoding::learned, PosEncoding::rope},
             "position encoding");
  add_choice("model", "ffn", REF(model.ffn), std::vector{FfnType::swiglu, FfnType::gelu},
             "feed-forward activation");
  add_bool("model", "tie_embeddings", REF(model.tie_embeddings),
           "LM head shares the token embedding matrix");
  add_real("model", "rope_theta", REF(model.rope_theta), 1.0, 1e9, "RoPE base");
  add_real("model", "norm_eps", REF(model.norm_eps), 0.0, 1.0, "epsilon inside the norms");
  add_real("model", "init_std", REF(model.init_std), 0.0, 10.0, "std of linear-layer init");
  add_real("model", "embed_init_std", REF(model.embed_init_std), 0.0, 10.0,
           "std of embedding init (the Mix-LN reference code uses 0.632)");

  add_int("train", "steps", REF(train.steps), 1, 1e12, "optimizer steps");
  add_int("train", "batch_size", REF(train.batch_size), 1, 1 << 20, "sequences per micro-batch");
  add_int("train", "grad_accum", REF(train.grad_accum), 1, 1 << 20,
          "micro-batches per optimizer step");
  add_int("train", "seed", REF(train.seed), 0, 9.0e18, "seed of init and data order");
  add_int("train", "eval_every", REF(train.eval_every), 0, 1e12,
          "validation every N steps (0: only at the end)");
  add_int("train", "eval_batches", REF(train.eval_batches), 0, 1e12,
          "validation batches per evaluation (0: the whole validation split)");
  add_int("train", "log_every", REF(train.log_every), 1, 1e12, "progress line every N steps");
  add_string("train", "device", REF(train.device), "where the model trains");
  keys.back().kind = Kind::choice;
  keys.back().choices = {"cpu", "cuda"};
  add_int("train", "threads", REF(train.threads), 0, 4096, "CPU threads (0: all cores)");
  add_string("train", "recompute", REF(train.recompute),
             "activations the backward recomputes instead of keeping (same losses and "
             "gradients): none, attention (each layer's attention) or block (whole blocks from "
             "their inputs)");
  keys.back().kind = Kind::choice;
  keys.back().choices = {"none", "attention", "block"};

  add_real("optim", "lr", REF(optim.lr), 0.0, 10.0, "peak learning rate (> 0)");
  add_real("optim", "min_lr_ratio", REF(optim.min_lr_ratio), 0.0, 1.0,
           "cosine schedule floor as a fraction of lr");
  add_int("optim", "warmup_steps", REF(optim.warmup_steps), 0, 1e12, "linear warmup steps");
  add_real("optim", "weight_decay", REF(optim.weight_decay), 0.0, 10.0,
           "decoupled weight decay (matrices and embeddings; not norms)");
  add_real("optim", "beta1", REF(optim.beta1), 0.0, 0.999999, "AdamW beta1, in [0, 1)");
  add_real("optim", "beta2", REF(optim.beta2), 0.0, 0.999999999, "AdamW beta2, in [0, 1)");
  add_real("optim", "eps", REF(optim.eps), 0.0, 1.0, "AdamW epsilon");
  add_real("optim", "clip_norm", REF(optim.clip_norm), 0.0, 1e9,
           "clip the global gradient norm to this (0: off)");

  add_string("data", "dir", REF(data.dir), "data directory written by sparta-prep");

  add_string("checkpoint", "dir", REF(checkpoint.dir),
             "checkpoint directory (\"\": <run-dir>/checkpoints)");
  add_int("checkpoint", "every_steps", REF(checkpoint.every_steps), 0, 1e12,
          "save every N steps (0: only at the end and at --stop-at-step)");
  add_int("checkpoint", "keep_last", REF(checkpoint.keep_last), 0, 1e6,
          "complete checkpoints kept (0: all)");

  add_int("moe", "experts", REF(model.moe_experts), 0, 1024,
          "experts E per MoE layer (0: dense model)");
  add_int("moe", "top_k", REF(model.moe_top_k), 1, 1024, "experts K per token (<= experts)");
  add_int("moe", "expert_ffn", REF(model.moe_expert_ffn), 0, 1 << 20,
          "hidden width F_e of one expert (0: model.d_ff)");
  add_string("moe", "layers", REF(model.moe_layers),
             "MoE layers: \"all\", \"every-other\" (1, 3, ...) or a list \"0,2,5\"");
  add_real(
      "moe", "capacity_factor", REF(model.moe_capacity_factor), 0.0, 1e6,
      "per-expert capacity ceil(cf * tokens * K / E); overflow tokens skip the FFN (0: dropless)");
  add_real("moe", "aux_loss_coef", REF(model.moe_aux_loss_coef), 0.0, 1e3,
           "Switch load-balance loss weight");
  add_real("moe", "z_loss_coef", REF(model.moe_z_loss_coef), 0.0, 1e3, "router z-loss weight");
  add_string("moe", "router", REF(model.moe_router),
             "linear: per-layer router; gru: RMoE, a GRU over depth shared by the MoE layers");
  keys.back().kind = Kind::choice;
  keys.back().choices = {"linear", "gru"};
  add_int("moe", "gru_dim", REF(model.moe_gru_dim), 1, 65536, "RMoE GRU width p");
  add_string("moe", "router_dtype", REF(moe_router_dtype), "router precision (fp32 only)");
  keys.back().kind = Kind::choice;
  keys.back().choices = {"fp32"};

  add_int("parallel", "tp", REF(parallel.tp), 1, 4096, "tensor-parallel ranks");
  add_int("parallel", "cp", REF(parallel.cp), 1, 4096, "context-parallel ranks");
  add_string("parallel", "cp_algo", REF(parallel.cp_algo),
             "how attention is split over cp: ulysses (all-to-alls swap tokens for heads; cp "
             "divides n_heads / tp) or ring (zigzag sequence chunks, K/V passed round the cp "
             "ring; 2 * cp divides seq_len) or hybrid (Ulysses inside groups of cp_ulysses "
             "ranks, the ring across them)");
  keys.back().kind = Kind::choice;
  keys.back().choices = {"ulysses", "ring", "hybrid"};
  add_int("parallel", "cp_ulysses", REF(parallel.cp_ulysses), 0, 4096,
          "cp_algo = hybrid: the Ulysses degree (divides cp and n_heads / tp); the ring degree "
          "is cp / cp_ulysses");
  add_int("parallel", "ep", REF(parallel.ep), 1, 4096,
          "expert-parallel ranks (carved out of data parallel)");
  add_int("parallel", "dp", REF(parallel.dp), 0, 1 << 20,
          "data-parallel ranks (0: world size / (tp * cp * ep))");
  add_string("parallel", "order", REF(parallel.order),
             "rank placement, innermost dimension first: tp, cp, ep, dp joined by '-'");
  add_int("parallel", "zero", REF(parallel.zero), 0, 1,
          "1: ZeRO-1 (optimizer state sharded over data-parallel ranks)");
  add_real("parallel", "timeout_s", REF(parallel.timeout_s), 1.0, 1e6,
           "seconds a collective may wait before the job is ended with a diagnosis");
  add_string("parallel", "backend", REF(parallel.backend),
             "communicator for device tensors: auto (NCCL when training on GPUs), nccl, mpi "
             "(staged through host memory; one GPU shared by several ranks needs this)");
  keys.back().kind = Kind::choice;
  keys.back().choices = {"auto", "nccl", "mpi"};
  add_bool("parallel", "overlap_grad_reduce", REF(parallel.overlap_grad_reduce),
           "start each block's gradient all-reduce as soon as its backward is done (false: all "
           "blocks' reductions after the backward)");
  add_bool(
      "uoe", "enabled", REF(model.uoe),
      "Union of Experts: selective multi-head attention + union of MLP experts in every layer");
  add_string(
      "uoe", "mode", REF(model.uoe_mode),
      "clean: causal, deterministic, fillers masked; paper: the released code's routing rules");
  keys.back().kind = Kind::choice;
  keys.back().choices = {"clean", "paper"};
  add_int("uoe", "attn_experts", REF(model.uoe_attn_experts), 0, 4096,
          "attention experts E_a, each n_heads / E_a heads (0: n_heads)");
  add_int("uoe", "attn_top_k", REF(model.uoe_attn_top_k), 0, 4096,
          "attention experts per token k_a (0: E_a / 2)");
  add_real("uoe", "attn_capacity", REF(model.uoe_attn_capacity), 0.0, 1e6,
           "clean: slots per (expert, sequence) T = min(L, ceil(c * L * k_a / E_a))");
  add_int("uoe", "mlp_experts", REF(model.uoe_mlp_experts), 1, 4096,
          "MLP experts E_m: slices of the d_ff-wide FFN (must divide model.d_ff)");
  add_int("uoe", "mlp_top_k", REF(model.uoe_mlp_top_k), 1, 4096, "MLP experts per token k_m");
  add_real("uoe", "mlp_capacity", REF(model.uoe_mlp_capacity), 0.0, 1e6,
           "slots per expert: clean ceil(c * L * k_m / E_m) per sequence, paper floor(c * B * k_m "
           "/ E_m) per time step");
  add_bool("noise", "enabled", REF(noise.enabled), "annealed gradient noise after clipping");
  add_real("noise", "eta", REF(noise.eta), 0.0, 1e6, "noise variance at step 0 (sigma_0^2)");
  add_real("noise", "gamma", REF(noise.gamma), 0.0, 10.0,
           "annealing exponent: sigma_t^2 = eta / (1+t)^gamma");
  add_int("noise", "seed", REF(noise.seed), -1, 9.0e18, "noise seed (-1: train.seed)");
  add_bool("monitoring", "prometheus", REF(monitoring.prometheus),
           "serve Prometheus metrics on every rank (/metrics) and write the file_sd target list "
           "<run-dir>/prometheus_targets.json");
  add_string("monitoring", "bind", REF(monitoring.bind),
             "address the metrics endpoints listen on (127.0.0.1: this machine only; 0.0.0.0: "
             "every interface)");
  add_int("monitoring", "port", REF(monitoring.port), 0, 65535,
          "metrics port of local rank 0, the others' port + local rank (0: ephemeral ports)");
  add_string("monitoring", "job", REF(monitoring.job),
             "the targets' job label (\"\": the run directory's name)");
  add_string("monitoring", "targets_dir", REF(monitoring.targets_dir),
             "also write the target list to <targets_dir>/<job>.json, one folder for every run's "
             "(\"\": prometheus_targets/ beside the run directory; \"none\": not)");
  add_real("monitoring", "peak_flops", REF(monitoring.peak_flops), 0.0, 1e18,
           "peak FLOP/s of one rank's device, for MFU (0: measured on CPUs, estimated on GPUs)");
  add_int("monitoring", "expert_series", REF(monitoring.expert_series), 1, 1000000,
          "most per-expert token series one rank exports; above it, each layer's top and bottom "
          "experts only (flagged by sparta_expert_series_capped)");
  add_string("control", "checkpoint_signal", REF(control.checkpoint_signal),
             "signal that means: checkpoint at the next step, then exit 75 (requeue me); "
             "SIGTERM always does; USR1 suits mpirun, which forwards USR1 but ends the job on "
             "SIGTERM");
  keys.back().kind = Kind::choice;
  keys.back().choices = {"USR1", "USR2", "HUP", "none"};
  add_string("control", "trigger_file", REF(control.trigger_file),
             "file whose words (checkpoint, stop, stop_now, dump) rank 0 acts on at the next step "
             "and then removes (\"\": <run-dir>/control.request; \"none\": off)");
  add_string("control", "grpc_bind", REF(control.grpc_bind),
             "host:port of the sparta.v1.Control gRPC service on rank 0 (port 0: a free one, "
             "written to <run-dir>/control.address; \"none\": off); a non-loopback host needs "
             "token_file");
  add_string("control", "token_file", REF(control.token_file),
             "file holding the token every Control call must send as 'authorization: Bearer "
             "<token>' (\"\": none; required off loopback)");
  add_bool("multilevel", "enabled", REF(multilevel.enabled),
           "train in a V-cycle of coarser models (README \"Multi-level training\")");
  add_int("multilevel", "levels", REF(multilevel.levels), 2, 4,
          "models in the cycle, the full one included");
  add_string("multilevel", "mode", REF(multilevel.mode), "what one level halves");
  keys.back().kind = Kind::choice;
  keys.back().choices = {"width", "depth", "both"};
  add_string("multilevel", "width_pairing", REF(multilevel.width_pairing),
             "which heads and neurons merge: i with i + n/2, or 2i with 2i + 1");
  keys.back().kind = Kind::choice;
  keys.back().choices = {"halves", "adjacent"};
  add_string("multilevel", "depth_pairing", REF(multilevel.depth_pairing),
             "which layers merge: 2i with 2i + 1, or i with i + L/2");
  keys.back().kind = Kind::choice;
  keys.back().choices = {"adjacent", "halves"};
  add_string("multilevel", "embeddings", REF(multilevel.embeddings),
             "de-coalescing of the residual stream: function-preserving, or the authors' "
             "halved embeddings");
  keys.back().kind = Kind::choice;
  keys.back().choices = {"preserving", "faithful"};
  add_real("multilevel", "alpha", REF(multilevel.alpha), 0.0, 1.0,
           "interpolation weight of the de-coalesced model (0: the model before coalescing)");
  add_real("multilevel", "down_fraction", REF(multilevel.down_fraction), 0.0, 1.0,
           "fraction of train.steps for each level's first visit, on the way down");
  add_real("multilevel", "coarse_fraction", REF(multilevel.coarse_fraction), 0.0, 1.0,
           "fraction of train.steps for the coarsest level");
  add_real("multilevel", "up_fraction", REF(multilevel.up_fraction), 0.0, 1.0,
           "fraction of train.steps for each intermediate level on the way up (the full model "
           "gets the rest)");
  add_real("multilevel", "lr_scale", REF(multilevel.lr_scale), 0.0, 1e3,
           "level k trains at optim.lr * lr_scale^k");
  add_int("multilevel", "warmup_steps", REF(multilevel.warmup_steps), 0, 1000000000,
          "linear warmup of every phase after the first, from a fresh AdamW (0: none, as the "
          "authors' recipe; the first phase uses optim.warmup_steps)");
#undef REF
  return keys;
}

}  // namespace

const std::vector<Key>& schema() {
  static const std::vector<Key> keys = build_schema();
  return keys;
}

}  // namespace sparta::trainer::schema_detail
