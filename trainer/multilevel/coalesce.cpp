#include "trainer/multilevel/coalesce.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kernels/check.h"
#include "trainer/models/transformer.h"

namespace sparta::trainer::multilevel {

namespace {

using models::FfnType;
using models::ModelConfig;

// How one parameter maps in width: its full tensor viewed as `view` (fold[i] consecutive view
// axes make full axis i), the axes that map and on which side.
struct AxisMap {
  int axis;
  Groups g;
  bool output;  // output side: average / copy; input side: sum / split
};
enum class Special { none, embedding, final_norm };
struct Layout {
  std::vector<int64_t> view;
  std::vector<int> fold;
  std::vector<AxisMap> maps;
  Special special = Special::none;
};

// "layers.3.attn.qkv.weight" -> 3 and "attn.qkv.weight"; -1 outside the blocks.
int layer_of(const std::string& name, std::string* rest) {
  if (name.rfind("layers.", 0) != 0) {
    *rest = name;
    return -1;
  }
  const size_t dot = name.find('.', 7);
  *rest = name.substr(dot + 1);
  return std::stoi(name.substr(7, dot - 7));
}

bool has_dense_ffn(const ModelConfig& m) {
  if (m.uoe) return false;
  for (bool moe : m.moe_layer_mask())
    if (!moe) return true;
  return false;
}

struct WidthGroups {
  Groups hidden, heads, ffn, expert_ffn, uoe_heads, uoe_ffn;
};

WidthGroups width_groups(const ModelConfig& m, Pairing p) {
  WidthGroups w;
  const int64_t D = m.head_dim();
  w.heads = expand(pair_units(m.n_heads, p), D);
  w.hidden = w.heads;  // the residual is grouped in whole heads (spec section 2)
  if (m.uoe) {
    const int64_t hpe = m.n_heads / m.uoe_attn_experts_or_default();
    w.uoe_heads = expand(pair_units(hpe, p), D);
    w.uoe_ffn = pair_units(m.d_ff / m.uoe_mlp_experts, p);
  } else {
    if (has_dense_ffn(m)) w.ffn = pair_units(m.d_ff, p);
    if (m.moe_experts > 0) w.expert_ffn = pair_units(m.expert_ffn(), p);
  }
  return w;
}

Layout width_layout(const std::string& name, const ModelConfig& m, const WidthGroups& w,
                    const std::vector<int64_t>& shape) {
  std::string r;
  layer_of(name, &r);
  const int64_t C = m.d_model, nfc = m.ffn == FfnType::swiglu ? 2 : 1;
  const auto in = [&](int a, const Groups& g) { return AxisMap{a, g, false}; };
  const auto out = [&](int a, const Groups& g) { return AxisMap{a, g, true}; };
  const int64_t E0 = shape.empty() ? 0 : shape[0];
  if (name == "wte" || name == "wpe") return {shape, {1, 1}, {in(1, w.hidden)}, Special::embedding};
  if (name == "lm_head.weight") return {shape, {1, 1}, {in(1, w.hidden)}};
  if (name.rfind("norm_final.", 0) == 0)
    return {shape, {1}, {out(0, w.hidden)}, Special::final_norm};
  if (r.rfind("norm_a.", 0) == 0 || r.rfind("norm_f.", 0) == 0)
    return {shape, {1}, {out(0, w.hidden)}};
  if (name.rfind("router.gru.", 0) == 0) return {shape, std::vector<int>(shape.size(), 1), {}};
  // Dense attention and FFN.
  if (r == "attn.qkv.weight") return {{3, C, C}, {2, 1}, {out(1, w.heads), in(2, w.hidden)}};
  if (r == "attn.proj.weight") return {shape, {1, 1}, {out(0, w.hidden), in(1, w.heads)}};
  if (r == "ffn.fc.weight") return {{nfc, m.d_ff, C}, {2, 1}, {out(1, w.ffn), in(2, w.hidden)}};
  if (r == "ffn.proj.weight") return {shape, {1, 1}, {out(0, w.hidden), in(1, w.ffn)}};
  // MoE: the experts keep their count, each expert's FFN is paired inside; routers read the
  // residual (linear: the router matrix; RMoE: the per-layer projector into the GRU, whose width
  // and the router matrix on its state do not change).
  const int64_t Fe = m.moe_experts > 0 ? m.expert_ffn() : 0;
  if (r == "ffn.experts.fc.weight")
    return {{E0, nfc, Fe, C}, {1, 2, 1}, {out(2, w.expert_ffn), in(3, w.hidden)}};
  if (r == "ffn.experts.proj.weight")
    return {shape, {1, 1, 1}, {out(1, w.hidden), in(2, w.expert_ffn)}};
  if (r == "ffn.router.proj.weight") return {shape, {1, 1}, {in(1, w.hidden)}};
  if (r == "ffn.router.weight")
    return m.moe_router == "gru" ? Layout{shape, {1, 1}, {}}
                                 : Layout{shape, {1, 1}, {in(1, w.hidden)}};
  // UoE: experts are slices of one dense block; each keeps its index, its heads (attention) and
  // neurons (MLP) pair inside it. The frozen routers read the residual.
  if (m.uoe) {
    const int64_t Wa = C / m.uoe_attn_experts_or_default(), Fm = m.d_ff / m.uoe_mlp_experts;
    if (r == "attn.experts.qkv.weight")
      return {{E0, 3, Wa, C}, {1, 2, 1}, {out(2, w.uoe_heads), in(3, w.hidden)}};
    if (r == "attn.experts.qkv.bias") return {{E0, 3, Wa}, {1, 2}, {out(2, w.uoe_heads)}};
    if (r == "attn.experts.proj.weight")
      return {shape, {1, 1, 1}, {out(1, w.hidden), in(2, w.uoe_heads)}};
    if (r == "mlp.experts.fc.weight")
      return {{E0, nfc, Fm, C}, {1, 2, 1}, {out(2, w.uoe_ffn), in(3, w.hidden)}};
    if (r == "mlp.experts.fc.bias") return {{E0, nfc, Fm}, {1, 2}, {out(2, w.uoe_ffn)}};
    if (r == "mlp.experts.proj.weight")
      return {shape, {1, 1, 1}, {out(1, w.hidden), in(2, w.uoe_ffn)}};
    if (r == "attn.experts.proj.bias" || r == "mlp.experts.proj.bias")
      return {shape, {1, 1}, {out(1, w.hidden)}};
    if (r == "attn.router.weight" || r == "mlp.router.weight")
      return {shape, {1, 1}, {in(1, w.hidden)}};
    if (r == "attn.router.bias" || r == "mlp.router.bias") return {shape, {1}, {}};
  }
  SPARTA_CHECK(false, "multilevel: no width rule for parameter '{}'", name);
  return {};
}

std::vector<int64_t> fold_shape(const std::vector<int64_t>& view, const std::vector<int>& fold) {
  std::vector<int64_t> full;
  size_t a = 0;
  for (int f : fold) {
    int64_t n = 1;
    for (int i = 0; i < f; ++i) n *= view[a++];
    full.push_back(n);
  }
  return full;
}

// Width map of one tensor: large -> small (down: coalesce) or small -> large.
HostTensor map_width(const std::string& name, const HostTensor& t, const ModelConfig& large,
                     const WidthGroups& w, const MapOptions& o, bool down) {
  Layout lay = width_layout(name, large, w, t.shape);
  // Layouts read off a small tensor's own shape have its mapped axes small: make them large.
  if (!down)
    for (const auto& m : lay.maps)
      if (lay.view[static_cast<size_t>(m.axis)] == m.g.small())
        lay.view[static_cast<size_t>(m.axis)] = m.g.large();
  std::vector<int64_t> view = lay.view;
  if (!down)
    for (const auto& m : lay.maps) view[static_cast<size_t>(m.axis)] = m.g.small();
  HostTensor x{view, t.v};
  SPARTA_CHECK(x.numel() == t.numel(), "multilevel: '{}' has {} elements, its layout {}", name,
               t.numel(), x.numel());
  const bool preserving = o.embeddings == Embeddings::preserving;
  for (const auto& m : lay.maps) {
    AxisOp op;
    if (lay.special == Special::embedding)
      op = down ? (preserving ? AxisOp::average : AxisOp::sum)
                : (preserving ? AxisOp::copy : AxisOp::split);
    else
      op = down ? (m.output ? AxisOp::average : AxisOp::sum)
                : (m.output ? AxisOp::copy : AxisOp::split);
    x = map_axis(x, m.axis, m.g, op);
  }
  if (lay.special == Special::final_norm && large.tie_embeddings && preserving)
    for (float& v : x.v) v = down ? v * 2.0f : v * 0.5f;  // the tied head's ½ (spec section 4)
  x.shape = fold_shape(x.shape, lay.fold);
  return x;
}

// Depth: small layer i is the average of the large layers in group i; D copies it back.
ModelState map_depth(const ModelState& s, const Groups& g, bool down) {
  ModelState out;
  const std::vector<int64_t> owner = g.owner();
  for (const auto& [name, t] : s) {
    std::string rest;
    const int l = layer_of(name, &rest);
    if (l < 0) {
      out[name] = t;
      continue;
    }
    if (down) {
      const auto& grp = g.of[static_cast<size_t>(owner[static_cast<size_t>(l)])];
      if (grp.front() != l) continue;  // the group's first layer makes the small layer
      HostTensor avg = t;
      for (size_t k = 1; k < grp.size(); ++k) {
        const auto& other = s.at(fmt::format("layers.{}.{}", grp[k], rest));
        for (size_t e = 0; e < avg.v.size(); ++e) avg.v[e] += other.v[e];
      }
      const float inv = 1.0f / static_cast<float>(grp.size());
      for (float& v : avg.v) v *= inv;
      out[fmt::format("layers.{}.{}", owner[static_cast<size_t>(l)], rest)] = std::move(avg);
    } else {
      for (int64_t j : g.of[static_cast<size_t>(l)]) out[fmt::format("layers.{}.{}", j, rest)] = t;
    }
  }
  return out;
}

bool halves_width(Mode m) {
  return m != Mode::depth;
}
bool halves_depth(Mode m) {
  return m != Mode::width;
}

}  // namespace

Mode parse_mode(const std::string& name) {
  if (name == "width") return Mode::width;
  if (name == "depth") return Mode::depth;
  if (name == "both") return Mode::both;
  SPARTA_USAGE_ERROR("multilevel.mode = '{}': use \"width\", \"depth\" or \"both\"", name);
}

ModelConfig small_config(const ModelConfig& m, const MapOptions& o) {
  ModelConfig s = m;
  if (halves_width(o.mode)) {
    if (m.n_heads % 2 != 0)
      SPARTA_USAGE_ERROR(
          "multilevel: width coalescing pairs whole heads, but model.n_heads = {} is odd",
          m.n_heads);
    if (m.uoe) {
      const int Ea = m.uoe_attn_experts_or_default();
      if ((m.n_heads / Ea) % 2 != 0)
        SPARTA_USAGE_ERROR(
            "multilevel: width coalescing pairs heads inside each UoE attention expert, but "
            "uoe.attn_experts = {} leaves {} head(s) per expert of model.n_heads = {} (use at "
            "most n_heads / 2 experts)",
            Ea, m.n_heads / Ea, m.n_heads);
      if ((m.d_ff / m.uoe_mlp_experts) % 2 != 0)
        SPARTA_USAGE_ERROR(
            "multilevel: width coalescing pairs FFN neurons inside each UoE MLP expert, but "
            "model.d_ff / uoe.mlp_experts = {} / {} = {} is odd",
            m.d_ff, m.uoe_mlp_experts, m.d_ff / m.uoe_mlp_experts);
      s.uoe_attn_experts = Ea;
    } else if (m.d_ff % 2 != 0 && has_dense_ffn(m)) {
      SPARTA_USAGE_ERROR(
          "multilevel: width coalescing pairs FFN neurons, but model.d_ff = {} is odd", m.d_ff);
    }
    if (m.moe_experts > 0 && m.expert_ffn() % 2 != 0)
      SPARTA_USAGE_ERROR(
          "multilevel: width coalescing pairs each expert's neurons, but the expert width "
          "(moe.expert_ffn, or model.d_ff) = {} is odd",
          m.expert_ffn());
    s.d_model = m.d_model / 2;
    s.n_heads = m.n_heads / 2;
    s.d_ff = m.d_ff % 2 == 0 ? m.d_ff / 2 : m.d_ff;  // odd only when no layer has a dense FFN
    if (m.moe_expert_ffn > 0) s.moe_expert_ffn = m.moe_expert_ffn / 2;
    if (m.moe_experts > 0 && m.moe_expert_ffn == 0) s.moe_expert_ffn = m.d_ff / 2;
  }
  if (halves_depth(o.mode)) {
    if (m.n_layers % 2 != 0)
      SPARTA_USAGE_ERROR(
          "multilevel: depth coalescing pairs layers, but model.n_layers = {} is odd", m.n_layers);
    const Groups g = pair_units(m.n_layers, o.depth_pairing);
    const std::vector<bool> moe = m.moe_layer_mask();
    int post = 0;
    std::string moe_list;
    bool all_moe = true;
    for (size_t i = 0; i < g.of.size(); ++i) {
      const auto& grp = g.of[i];
      const bool p0 = m.layer_is_post_ln(static_cast<int>(grp[0]));
      const bool m0 = moe[static_cast<size_t>(grp[0])];
      for (int64_t l : grp) {
        if (m.layer_is_post_ln(static_cast<int>(l)) != p0)
          SPARTA_USAGE_ERROR(
              "multilevel: depth pairing joins layers {} and {}, one Post-LN and one Pre-LN "
              "(model.mixln_post_layers = {}): use an even count with multilevel.depth_pairing "
              "= \"adjacent\"",
              grp[0], l, m.post_ln_layers());
        if (moe[static_cast<size_t>(l)] != m0)
          SPARTA_USAGE_ERROR(
              "multilevel: depth pairing joins layers {} and {}, one MoE and one dense "
              "(moe.layers = \"{}\")",
              grp[0], l, m.moe_layers);
      }
      post += p0 ? 1 : 0;
      if (m0) {
        if (!moe_list.empty()) moe_list += ',';
        moe_list += std::to_string(i);
      }
      all_moe = all_moe && m0;
    }
    s.n_layers = m.n_layers / 2;
    s.mixln_post_layers = post;  // small layer i is Post-LN when its pair is
    if (m.moe_experts > 0) s.moe_layers = all_moe ? "all" : moe_list;
  }
  return s;
}

ModelState coalesce(const ModelConfig& large, const ModelState& s, const MapOptions& o) {
  (void)small_config(large, o);  // the checks
  ModelState w;
  if (halves_width(o.mode)) {
    const WidthGroups g = width_groups(large, o.width_pairing);
    for (const auto& [name, t] : s) w[name] = map_width(name, t, large, g, o, true);
  } else {
    w = s;
  }
  if (!halves_depth(o.mode)) return w;
  return map_depth(w, pair_units(large.n_layers, o.depth_pairing), true);
}

ModelState decoalesce(const ModelConfig& large, const ModelState& small, const MapOptions& o) {
  (void)small_config(large, o);
  const ModelState d = halves_depth(o.mode)
                           ? map_depth(small, pair_units(large.n_layers, o.depth_pairing), false)
                           : small;
  if (!halves_width(o.mode)) return d;
  const WidthGroups g = width_groups(large, o.width_pairing);
  ModelState out;
  for (const auto& [name, t] : d) out[name] = map_width(name, t, large, g, o, false);
  return out;
}

ModelState interpolate(const ModelState& pre, const ModelState& up, float alpha) {
  ModelState out;
  for (const auto& [name, a] : pre) {
    const auto it = up.find(name);
    SPARTA_CHECK(it != up.end() && it->second.v.size() == a.v.size(),
                 "interpolate: '{}' differs between the two models", name);
    HostTensor t = a;
    for (size_t e = 0; e < t.v.size(); ++e)
      t.v[e] = (1.0f - alpha) * a.v[e] + alpha * it->second.v[e];
    out[name] = std::move(t);
  }
  return out;
}

ModelState model_state(const models::Transformer& m) {
  ModelState s;
  const models::Transformer& cm = m;
  for (const std::vector<models::Param>* list : {&cm.params(), &cm.buffers()})
    for (const models::Param& p : *list) {
      HostTensor t;
      t.shape = p.full_shape;
      t.v.resize(static_cast<size_t>(t.numel()));
      m.gather_full(p, p.w, t.v.data());
      s[p.name] = std::move(t);
    }
  return s;
}

void load_state(models::Transformer& m, const ModelState& s) {
  const models::Transformer& cm = m;
  for (const std::vector<models::Param>* list : {&cm.params(), &cm.buffers()})
    for (const models::Param& p : *list) {
      const auto it = s.find(p.name);
      SPARTA_CHECK(it != s.end(), "load_state: no tensor '{}'", p.name);
      SPARTA_CHECK(it->second.shape == p.full_shape, "load_state: '{}' has shape {}, the model {}",
                   p.name, fmt::join(it->second.shape, "x"), fmt::join(p.full_shape, "x"));
      m.scatter_full(p, it->second.v.data(), p.w);
    }
}

}  // namespace sparta::trainer::multilevel
