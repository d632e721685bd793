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
#include "trainer/config_schema.h"
#include "trainer/default_config.h"  // generated: kDefaultConfigToml

namespace sparta::trainer {

namespace {

using models::PosEncoding;
using schema_detail::Key;
using schema_detail::Kind;
using schema_detail::quote;
using schema_detail::schema;

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

void check_control(const ControlSection& c) {
  if (c.grpc_bind == "none") return;
  const auto colon = c.grpc_bind.rfind(':');
  const std::string port = colon == std::string::npos ? "" : c.grpc_bind.substr(colon + 1);
  const bool digits = !port.empty() && port.size() <= 5 &&
                      port.find_first_not_of("0123456789") == std::string::npos;
  if (colon == 0 || !digits || std::stoi(port) > 65535)
    SPARTA_USAGE_ERROR(
        "control.grpc_bind = '{}' is not host:port (port 0..65535; 0 picks a free one) or "
        "\"none\"",
        c.grpc_bind);
}

void check_cross(const Config& c) {
  check_control(c.control);
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
  if (c.parallel.backend == "nccl" && c.train.device != "cuda")
    SPARTA_USAGE_ERROR("parallel.backend = \"nccl\" needs train.device = \"cuda\"");
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
