#include "trainer/multilevel/pairing.h"

#include "kernels/check.h"

namespace sparta::trainer::multilevel {

int64_t Groups::large() const {
  int64_t n = 0;
  for (const auto& s : of) n += static_cast<int64_t>(s.size());
  return n;
}

std::vector<int64_t> Groups::owner() const {
  std::vector<int64_t> o(static_cast<size_t>(large()), -1);
  for (size_t i = 0; i < of.size(); ++i)
    for (int64_t j : of[i]) o[static_cast<size_t>(j)] = static_cast<int64_t>(i);
  return o;
}

Groups pair_units(int64_t n, Pairing p) {
  SPARTA_CHECK(n >= 2 && n % 2 == 0, "pairing {} units: needs an even count", n);
  Groups g;
  for (int64_t i = 0; i < n / 2; ++i)
    g.of.push_back(p == Pairing::halves ? std::vector<int64_t>{i, i + n / 2}
                                        : std::vector<int64_t>{2 * i, 2 * i + 1});
  return g;
}

Pairing parse_pairing(const std::string& name) {
  if (name == "halves") return Pairing::halves;
  if (name == "adjacent") return Pairing::adjacent;
  SPARTA_USAGE_ERROR("pairing '{}': use \"halves\" (i with i + n/2) or \"adjacent\" (2i with 2i+1)",
                     name);
}

Groups expand(const Groups& units, int64_t chunk) {
  Groups g;
  for (const auto& s : units.of)
    for (int64_t c = 0; c < chunk; ++c) {
      std::vector<int64_t> e;
      for (int64_t u : s) e.push_back(u * chunk + c);
      g.of.push_back(std::move(e));
    }
  return g;
}

Groups repeat(const Groups& g, int64_t blocks) {
  Groups r;
  const int64_t L = g.large();
  for (int64_t b = 0; b < blocks; ++b)
    for (const auto& s : g.of) {
      std::vector<int64_t> e;
      for (int64_t u : s) e.push_back(b * L + u);
      r.of.push_back(std::move(e));
    }
  return r;
}

std::vector<float> avg_matrix(const Groups& g) {
  const int64_t S = g.small(), L = g.large();
  std::vector<float> m(static_cast<size_t>(S * L), 0.0f);
  for (int64_t i = 0; i < S; ++i)
    for (int64_t j : g.of[static_cast<size_t>(i)])
      m[static_cast<size_t>(i * L + j)] =
          1.0f / static_cast<float>(g.of[static_cast<size_t>(i)].size());
  return m;
}

std::vector<float> copy_matrix(const Groups& g) {
  const int64_t S = g.small(), L = g.large();
  std::vector<float> m(static_cast<size_t>(L * S), 0.0f);
  for (int64_t i = 0; i < S; ++i)
    for (int64_t j : g.of[static_cast<size_t>(i)]) m[static_cast<size_t>(j * S + i)] = 1.0f;
  return m;
}

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

HostTensor map_axis(const HostTensor& t, int axis, const Groups& g, AxisOp op) {
  SPARTA_CHECK(axis >= 0 && axis < static_cast<int>(t.shape.size()), "axis {} of a {}-d tensor",
               axis, t.shape.size());
  const bool shrink = op == AxisOp::average || op == AxisOp::sum;
  const int64_t from = shrink ? g.large() : g.small(), to = shrink ? g.small() : g.large();
  SPARTA_CHECK(t.shape[static_cast<size_t>(axis)] == from, "axis {} has {} units, the map {}", axis,
               t.shape[static_cast<size_t>(axis)], from);
  int64_t outer = 1, inner = 1;
  for (int a = 0; a < axis; ++a) outer *= t.shape[static_cast<size_t>(a)];
  for (size_t a = static_cast<size_t>(axis) + 1; a < t.shape.size(); ++a) inner *= t.shape[a];
  HostTensor out;
  out.shape = t.shape;
  out.shape[static_cast<size_t>(axis)] = to;
  out.v.assign(static_cast<size_t>(outer * to * inner), 0.0f);
  const auto at = [&](int64_t n, int64_t o, int64_t u, int64_t k) {
    return static_cast<size_t>((o * n + u) * inner + k);
  };
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < g.small(); ++i) {
      const auto& s = g.of[static_cast<size_t>(i)];
      const float w = 1.0f / static_cast<float>(s.size());
      for (int64_t k = 0; k < inner; ++k) {
        if (shrink) {
          float acc = 0;
          for (int64_t j : s) acc += t.v[at(from, o, j, k)];
          out.v[at(to, o, i, k)] = op == AxisOp::average ? acc * w : acc;
        } else {
          const float x = t.v[at(from, o, i, k)];
          for (int64_t j : s) out.v[at(to, o, j, k)] = op == AxisOp::copy ? x : x * w;
        }
      }
    }
  return out;
}

}  // namespace sparta::trainer::multilevel
