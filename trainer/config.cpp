#include "trainer/config.h"

#include <charconv>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <variant>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "kernels/check.h"
#include "trainer/default_config.h"  // generated: kDefaultConfigToml

namespace sparta::trainer {

namespace {

using models::FfnType;
using models::NormPlacement;
using models::NormType;
using models::PosEncoding;

enum class Kind { integer, real, boolean, string, choice };

// One configurable key. `set` receives a value already checked against kind, range and choices.
struct Key {
  std::string section, name;
  Kind kind;
  std::string doc;
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  std::vector<std::string> choices;
  std::function<void(Config&, const std::string&)> set;  // value in canonical text form
  std::function<std::string(const Config&)> get;         // canonical text form (TOML literal)
  std::string full() const { return section + "." + name; }
};

std::string quote(const std::string& s) {
  return "\"" + s + "\"";
}

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
#undef REF
  return keys;
}

const std::vector<Key>& schema() {
  static const std::vector<Key> keys = build_schema();
  return keys;
}

std::string kind_name(const Key& k) {
  switch (k.kind) {
    case Kind::integer:
      return "integer";
    case Kind::real:
      return "float";
    case Kind::boolean:
      return "bool";
    case Kind::string:
      return "string";
    case Kind::choice:
      return "string";
  }
  return "?";
}

std::string allowed(const Key& k) {
  switch (k.kind) {
    case Kind::integer:
    case Kind::real:
      return fmt::format("{} in [{}, {}]", k.kind == Kind::integer ? "an integer" : "a number",
                         k.min, k.max);
    case Kind::boolean:
      return "true or false";
    case Kind::string:
      return "a string";
    case Kind::choice: {
      std::string s = "one of";
      for (size_t i = 0; i < k.choices.size(); ++i) s += (i ? ", \"" : " \"") + k.choices[i] + "\"";
      return s;
    }
  }
  return "";
}

const Key& find_key(const std::string& section, const std::string& name,
                    const std::string& origin) {
  std::string known;
  bool section_known = false;
  for (const Key& k : schema()) {
    if (k.section != section) continue;
    section_known = true;
    if (k.name == name) return k;
    known += (known.empty() ? "" : ", ") + k.name;
  }
  if (!section_known) {
    std::string sections;
    for (const Key& k : schema())
      if (sections.find("[" + k.section + "]") == std::string::npos)
        sections += (sections.empty() ? "[" : ", [") + k.section + "]";
    SPARTA_USAGE_ERROR("{}: unknown config section [{}] (key '{}.{}'); sections are {}", origin,
                       section, section, name, sections);
  }
  SPARTA_USAGE_ERROR("{}: unknown config key '{}.{}'; keys in [{}] are: {}", origin, section, name,
                     section, known);
}

[[noreturn]] void bad_value(const Key& k, const std::string& origin, const std::string& value) {
  SPARTA_USAGE_ERROR("{}: {} = {} is not allowed: {} must be {}", origin, k.full(), value, k.full(),
                     allowed(k));
}

// Checks the canonical text of a value against its key and stores it.
void assign(Config& c, const Key& k, const std::string& text, const std::string& origin) {
  if (k.kind == Kind::integer || k.kind == Kind::real) {
    const double v = std::stod(text);
    if (!(v >= k.min && v <= k.max)) bad_value(k, origin, text);
  }
  if (k.kind == Kind::choice &&
      std::find(k.choices.begin(), k.choices.end(), text) == k.choices.end())
    bad_value(k, origin, quote(text));
  k.set(c, text);
}

// TOML node -> canonical text, or a type error naming the key.
std::string from_toml(const Key& k, const toml::node& n, const std::string& origin) {
  std::ostringstream shown;
  n.visit([&](auto&& v) { shown << v; });
  switch (k.kind) {
    case Kind::integer:
      if (auto v = n.value_exact<int64_t>()) return std::to_string(*v);
      break;
    case Kind::real:
      if (n.is_integer()) return std::to_string(*n.value<int64_t>());
      if (auto v = n.value_exact<double>()) return fmt::format("{:.17g}", *v);
      break;
    case Kind::boolean:
      if (auto v = n.value_exact<bool>()) return *v ? "true" : "false";
      break;
    case Kind::string:
    case Kind::choice:
      if (auto v = n.value_exact<std::string>()) return *v;
      break;
  }
  SPARTA_USAGE_ERROR("{}: {} = {} has the wrong type: {} must be {}", origin, k.full(), shown.str(),
                     k.full(), allowed(k));
}

// "--set" text -> canonical text.
std::string from_override(const Key& k, std::string v, const std::string& origin) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  switch (k.kind) {
    case Kind::integer: {
      int64_t x = 0;
      const auto r = std::from_chars(v.data(), v.data() + v.size(), x);
      if (r.ec != std::errc() || r.ptr != v.data() + v.size())
        SPARTA_USAGE_ERROR("{}: {}={} is not an integer: {} must be {}", origin, k.full(), v,
                           k.full(), allowed(k));
      return std::to_string(x);
    }
    case Kind::real: {
      char* end = nullptr;
      const double x = std::strtod(v.c_str(), &end);
      if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(x))
        SPARTA_USAGE_ERROR("{}: {}={} is not a number: {} must be {}", origin, k.full(), v,
                           k.full(), allowed(k));
      return fmt::format("{:.17g}", x);
    }
    case Kind::boolean:
      if (v == "true" || v == "1") return "true";
      if (v == "false" || v == "0") return "false";
      SPARTA_USAGE_ERROR("{}: {}={} is not a bool: {} must be true or false", origin, k.full(), v,
                         k.full());
    case Kind::string:
    case Kind::choice:
      return v;
  }
  return v;
}

void apply_toml(Config& c, const toml::table& root, const std::string& origin) {
  for (const auto& [sec, node] : root) {
    const std::string section(sec.str());
    const toml::table* t = node.as_table();
    if (!t)
      SPARTA_USAGE_ERROR("{}: '{}' must be a [section] table; sections hold the keys", origin,
                         section);
    for (const auto& [key, value] : *t) {
      const std::string name(key.str());
      const std::string where = fmt::format("{} (line {})", origin, value.source().begin.line);
      const Key& k = find_key(section, name, where);
      assign(c, k, from_toml(k, value, where), where);
    }
  }
}

void check_cross(const Config& c) {
  const auto& m = c.model;
  if (m.d_model % m.n_heads != 0)
    SPARTA_USAGE_ERROR("model.n_heads = {} must divide model.d_model = {} (head dim D = C / H)",
                       m.n_heads, m.d_model);
  if (m.pos == PosEncoding::rope && m.head_dim() % 2 != 0)
    SPARTA_USAGE_ERROR("model.pos = \"rope\" needs an even head dim, but d_model / n_heads = {}",
                       m.head_dim());
  if (m.head_dim() > 256)
    SPARTA_USAGE_ERROR("head dim d_model / n_heads = {} exceeds 256, the attention kernels' limit",
                       m.head_dim());
  if (m.moe_experts > 0 && m.moe_top_k > m.moe_experts)
    SPARTA_USAGE_ERROR("moe.top_k = {} exceeds moe.experts = {}", m.moe_top_k, m.moe_experts);
  (void)m.moe_layer_mask();  // validates moe.layers
  if (m.uoe) {
    const int Ea = m.uoe_attn_experts_or_default(), ka = m.uoe_attn_top_k_or_default();
    if (m.moe_experts > 0)
      SPARTA_USAGE_ERROR(
          "uoe.enabled and moe.experts = {} exclude each other: set moe.experts = 0 "
          "or uoe.enabled = false",
          m.moe_experts);
    if (m.n_heads % Ea != 0)
      SPARTA_USAGE_ERROR(
          "uoe.attn_experts = {} must divide model.n_heads = {} (an attention "
          "expert is a group of whole heads)",
          Ea, m.n_heads);
    if (ka > Ea) SPARTA_USAGE_ERROR("uoe.attn_top_k = {} exceeds uoe.attn_experts = {}", ka, Ea);
    if (m.d_ff % m.uoe_mlp_experts != 0)
      SPARTA_USAGE_ERROR(
          "uoe.mlp_experts = {} must divide model.d_ff = {} (an MLP expert is a "
          "d_ff / E_m slice of the FFN)",
          m.uoe_mlp_experts, m.d_ff);
    if (m.uoe_mlp_top_k > m.uoe_mlp_experts)
      SPARTA_USAGE_ERROR("uoe.mlp_top_k = {} exceeds uoe.mlp_experts = {}", m.uoe_mlp_top_k,
                         m.uoe_mlp_experts);
    if (m.uoe_attn_capacity <= 0 || m.uoe_mlp_capacity <= 0)
      SPARTA_USAGE_ERROR("uoe.attn_capacity = {} and uoe.mlp_capacity = {} must be > 0",
                         m.uoe_attn_capacity, m.uoe_mlp_capacity);
  }
  if (m.mixln_post_layers > m.n_layers)
    SPARTA_USAGE_ERROR("model.mixln_post_layers = {} exceeds model.n_layers = {}",
                       m.mixln_post_layers, m.n_layers);
  if (c.optim.lr <= 0)
    SPARTA_USAGE_ERROR("optim.lr = {} is not allowed: optim.lr must be > 0", c.optim.lr);
}

}  // namespace

const char* embedded_default_config() {
  return kDefaultConfigToml;
}

Config load_config_text(const std::string& toml_text, const std::string& origin) {
  Config c;
  toml::table root;
  try {
    root = toml::parse(std::string_view(toml_text), std::string_view(origin));
  } catch (const toml::parse_error& e) {
    SPARTA_USAGE_ERROR("{}:{}:{}: TOML syntax error: {}", origin, e.source().begin.line,
                       e.source().begin.column, e.description());
  }
  apply_toml(c, root, origin);
  check_cross(c);
  return c;
}

Config load_config(const std::string& file, const std::vector<std::string>& overrides) {
  Config c;
  toml::table root;
  const std::string origin = file.empty() ? "configs/default.toml (embedded)" : file;
  try {
    root = file.empty() ? toml::parse(std::string_view(kDefaultConfigToml),
                                      std::string_view("configs/default.toml"))
                        : toml::parse_file(file);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    if (!file.empty() && src.begin.line == 0)
      SPARTA_USAGE_ERROR("cannot read config file {}: {}", file, e.description());
    SPARTA_USAGE_ERROR("{}:{}:{}: TOML syntax error: {}", origin, src.begin.line, src.begin.column,
                       e.description());
  }
  apply_toml(c, root, origin);
  for (const std::string& o : overrides) {
    const std::string where = "--set " + o;
    const size_t eq = o.find('='), dot = o.find('.');
    if (eq == std::string::npos || dot == std::string::npos || dot > eq)
      SPARTA_USAGE_ERROR("{}: expected section.key=value, e.g. --set train.steps=100", where);
    // Named strings, not temporaries: g++ 13's -Wdangling-reference flags a reference returned
    // from a call that took temporaries (the Key lives in the static schema either way).
    const std::string section = o.substr(0, dot), name = o.substr(dot + 1, eq - dot - 1);
    const Key& k = find_key(section, name, where);
    assign(c, k, from_override(k, o.substr(eq + 1), where), where);
  }
  check_cross(c);
  return c;
}

std::string to_toml(const Config& c) {
  std::string out, section;
  for (const Key& k : schema()) {
    if (k.section != section) {
      out += fmt::format("{}[{}]\n", section.empty() ? "" : "\n", k.section);
      section = k.section;
    }
    out += fmt::format("{} = {}\n", k.name, k.get(c));
  }
  return out;
}

std::string config_reference_markdown() {
  const Config defaults;
  const Config shipped = load_config("", {});
  std::string out =
      "| key | type | built-in default | in default.toml | allowed | meaning |\n"
      "|---|---|---|---|---|---|\n";
  for (const Key& k : schema()) {
    const std::string a = k.get(defaults), b = k.get(shipped);
    out += fmt::format("| `{}` | {} | `{}` | {} | {} | {} |\n", k.full(), kind_name(k), a,
                       a == b ? "" : "`" + b + "`", allowed(k), k.doc);
  }
  return out;
}

}  // namespace sparta::trainer
