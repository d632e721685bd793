// Long-context memory and speed (issue: long sequences). Under `mpirun -np P` (P = cp; P = 1
// alone), for one attention algorithm and recompute mode: the longest sequence whose training
// state fits a per-rank memory budget, found by building the model (its activation arena, plus
// parameters, gradients and AdamW's two moments), then the training step at that length: time,
// and the share spent in collectives. With --vanilla (one rank) the same for the baseline that
// materialises the T x T attention probabilities per layer for its backward (PyTorch eager's
// softmax(QK^T)V): its memory is sparta's without recompute plus L + 1 probability-sized
// matrices (each layer's kept P, and one dP in the backward), and its attention is timed by a
// real materialised implementation (BLAS SGEMMs + row softmax) against sparta's block kernel at
// the same shape. Also a memory-per-rank curve over doubling T, for the plot. Prints a table and
// "bench_json: {...}" lines; asserts nothing.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include <cblas.h>
#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kernels/ops.h"
#include "kernels/rng.h"
#include "parallel/mesh.h"
#include "parallel/mpi_comm.h"
#include "parallel/process_groups.h"
#include "trainer/models/transformer.h"

namespace {

namespace k = sparta::kernels;
namespace models = sparta::models;
namespace parallel = sparta::parallel;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Setup {
  models::ModelConfig cfg;
  models::Recompute recompute = models::Recompute::none;
  const parallel::ProcessGroups* groups = nullptr;
};

// Per-rank bytes of the training state at sequence length T: the activation arena, and
// parameters with their gradients and AdamW moments.
size_t state_bytes(const Setup& s, int64_t T) {
  models::ModelConfig c = s.cfg;
  c.seq_len = static_cast<int>(T);
  const models::Transformer m(c, 1, k::Device::cpu(), 1, s.groups, s.recompute);
  return m.activation_bytes() + 4 * m.param_bytes();
}

// The baseline's extra: each layer keeps its [H, T, T] probabilities, the backward one dP.
size_t vanilla_extra(const models::ModelConfig& c, int64_t T) {
  return static_cast<size_t>(c.n_layers + 1) * static_cast<size_t>(c.n_heads) *
         static_cast<size_t>(T) * static_cast<size_t>(T) * 4;
}

// Materialised causal attention of one [T, D] head, forward and backward (what an eager
// framework runs): S = Q K^T / sqrt(D), P = softmax(causal S), O = P V; dV = P^T dO,
// dP = dO V^T, dS = P (dP - rowsum(dP P)), dQ = dS K / sqrt(D), dK = dS^T Q / sqrt(D).
void vanilla_head(int T, int D, const float* q, const float* kk, const float* v, const float* dout,
                  float* o, float* dq, float* dk, float* dv, std::vector<float>& P,
                  std::vector<float>& dP) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, scale, q, D, kk, D, 0.0f, P.data(),
              T);
  for (int i = 0; i < T; ++i) {
    float* row = P.data() + static_cast<size_t>(i) * T;
    float mx = -std::numeric_limits<float>::infinity(), sum = 0;
    for (int j = 0; j <= i; ++j) mx = std::max(mx, row[j]);
    for (int j = 0; j <= i; ++j) sum += row[j] = std::exp(row[j] - mx);
    for (int j = 0; j <= i; ++j) row[j] /= sum;
    for (int j = i + 1; j < T; ++j) row[j] = 0;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, 1.0f, P.data(), T, v, D, 0.0f, o,
              D);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, 1.0f, P.data(), T, dout, D, 0.0f,
              dv, D);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, 1.0f, dout, D, v, D, 0.0f,
              dP.data(), T);
  for (int i = 0; i < T; ++i) {
    float* p = P.data() + static_cast<size_t>(i) * T;
    float* g = dP.data() + static_cast<size_t>(i) * T;
    float dot = 0;
    for (int j = 0; j <= i; ++j) dot += p[j] * g[j];
    for (int j = 0; j < T; ++j) g[j] = j <= i ? p[j] * (g[j] - dot) : 0.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, scale, dP.data(), T, kk, D, 0.0f,
              dq, D);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, scale, dP.data(), T, q, D, 0.0f, dk,
              D);
}

// Seconds of one attention layer's forward + backward at [1, H, T, D]: (vanilla, sparta's
// block kernel), each the best of `reps`.
std::pair<double, double> attention_times(int H, int T, int D, int reps) {
  const size_t n = static_cast<size_t>(H) * T * D;
  std::vector<float> q(n), kk(n), v(n), dy(n), o(n), dq(n), dk(n), dv(n), lse(size_t(H) * T);
  for (size_t i = 0; i < n; ++i) {
    q[i] = static_cast<float>(k::normal(1, 1, i));
    kk[i] = static_cast<float>(k::normal(1, 2, i));
    v[i] = static_cast<float>(k::normal(1, 3, i));
    dy[i] = static_cast<float>(k::normal(1, 4, i));
  }
  std::vector<float> P(size_t(T) * T), dP(size_t(T) * T);
  double van = 1e30, ours = 1e30;
  auto t4 = [&](std::vector<float>& x) {
    return k::Tensor(x.data(), k::DType::f32, k::Device::cpu(), {1, H, T, D});
  };
  const k::Tensor tl(lse.data(), k::DType::f32, k::Device::cpu(), {1, H, T});
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    for (int h = 0; h < H; ++h) {
      const size_t at = static_cast<size_t>(h) * T * D;
      vanilla_head(T, D, &q[at], &kk[at], &v[at], &dy[at], &o[at], &dq[at], &dk[at], &dv[at], P,
                   dP);
    }
    van = std::min(van, since(t0));
    t0 = Clock::now();
    std::fill(dq.begin(), dq.end(), 0.0f);
    std::fill(dk.begin(), dk.end(), 0.0f);
    std::fill(dv.begin(), dv.end(), 0.0f);
    k::attention_forward(t4(o), tl, t4(q), t4(kk), t4(v), true);
    k::attention_backward(t4(dq), t4(dk), t4(dv), t4(dy), t4(q), t4(kk), t4(v), t4(o), tl, true);
    ours = std::min(ours, since(t0));
  }
  return {van, ours};
}

struct StepTime {
  double step_s = 0, comm_share = 0;
};

// Median forward + backward of `steps` steps (after one warm-up) at T; the slowest rank's.
StepTime time_steps(const Setup& s, int64_t T, int steps, parallel::Comm& world) {
  models::ModelConfig c = s.cfg;
  c.seq_len = static_cast<int>(T);
  models::Transformer m(c, 1, k::Device::cpu(), 1, s.groups, s.recompute);
  std::vector<int32_t> tok(static_cast<size_t>(T)), tgt(static_cast<size_t>(T));
  for (size_t i = 0; i < tok.size(); ++i) {
    tok[i] = static_cast<int32_t>(k::philox(5, 1, i)[0] % static_cast<uint32_t>(c.vocab_size));
    tgt[i] = static_cast<int32_t>(k::philox(5, 1, i)[1] % static_cast<uint32_t>(c.vocab_size));
  }
  m.set_batch(tok.data(), tgt.data());
  m.forward_backward(1.0f);
  std::vector<double> step, comm;
  for (int i = 0; i < steps; ++i) {
    const double c0 = s.groups->collective_seconds();
    const auto t0 = Clock::now();
    m.zero_grads();
    m.forward_backward(1.0f);
    step.push_back(since(t0));
    comm.push_back(s.groups->collective_seconds() - c0);
  }
  std::vector<float> worst = {0, 0};
  const size_t mid = step.size() / 2;
  std::nth_element(step.begin(), step.begin() + static_cast<long>(mid), step.end());
  std::nth_element(comm.begin(), comm.begin() + static_cast<long>(mid), comm.end());
  worst[0] = static_cast<float>(step[mid]);
  worst[1] = static_cast<float>(comm[mid]);
  world.all_reduce(k::Tensor(worst.data(), k::DType::f32, k::Device::cpu(), {2}),
                   parallel::ReduceOp::max);
  return {worst[0], worst[1] / std::max(1e-9f, worst[0])};
}

// The longest multiple of `unit` whose bytes_at(T) is within `budget` (binary search).
template <class F>
int64_t longest(int64_t unit, size_t budget, F bytes_at) {
  int64_t lo = 0, hi = 1;
  while (bytes_at(hi * unit) <= budget) hi *= 2;
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    (bytes_at(mid * unit) <= budget ? lo : hi) = mid;
  }
  return lo * unit;
}

// The baseline at its longest T: its step is sparta's at that T with each layer's attention
// swapped for the materialised one's measured time. Prints its line and JSON.
void vanilla_run(const Setup& s, int64_t unit, size_t budget, int steps, parallel::Comm& world) {
  const models::ModelConfig& c = s.cfg;
  const int64_t Tv =
      longest(unit, budget, [&](int64_t T) { return state_bytes(s, T) + vanilla_extra(c, T); });
  if (Tv == 0) {
    fmt::print("vanilla (materialised T x T): not even T = {} fits the budget\n", unit);
    return;
  }
  const StepTime sv = time_steps(s, Tv, steps, world);
  const auto [van, ours] =
      attention_times(c.n_heads, static_cast<int>(Tv), c.d_model / c.n_heads, 3);
  const double step_v = sv.step_s + c.n_layers * (van - ours);
  fmt::print(
      "vanilla (materialised T x T): longest T {}; attention layer fwd+bwd {:.4f} s vanilla vs "
      "{:.4f} s sparta's block kernel ({:.2f}x); step {:.3f} s\n",
      Tv, van, ours, van / ours, step_v);
  const nlohmann::json v = {{"label", "vanilla attention"},
                            {"ranks", 1},
                            {"T_max", Tv},
                            {"step_s", step_v},
                            {"comm_share", 0.0},
                            {"attn_vanilla_s", van},
                            {"attn_sparta_s", ours},
                            {"budget_mib", static_cast<double>(budget) / 1048576.0}};
  fmt::print("bench_json: {}\n", v.dump());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sparta long-context memory and speed", "long_context_bench"};
  double budget_mib = 64;
  std::string algo = "ring", recompute = "none", label;
  bool vanilla = false;
  int steps = 2, d_model = 64, heads = 4, layers = 2, vocab = 256;
  int64_t curve_max = 1 << 17, time_at = 0;
  app.add_option("--budget-mib", budget_mib, "per-rank memory budget")->capture_default_str();
  app.add_option("--cp-algo", algo, "ring or ulysses (with several ranks)")->capture_default_str();
  app.add_option("--recompute", recompute, "none, attention or block")->capture_default_str();
  app.add_flag("--vanilla", vanilla, "also the materialised-attention baseline (one rank)");
  app.add_option("--steps", steps, "timed steps at the longest T")->capture_default_str();
  app.add_option("--d-model", d_model)->capture_default_str();
  app.add_option("--heads", heads)->capture_default_str();
  app.add_option("--layers", layers)->capture_default_str();
  app.add_option("--vocab", vocab)->capture_default_str();
  app.add_option("--curve-max", curve_max, "largest T of the memory curve")->capture_default_str();
  app.add_option("--label", label, "name of this configuration in the output");
  app.add_option("--time-at", time_at, "also time the step at this T (every configuration alike)");
  CLI11_PARSE(app, argc, argv);
  parallel::MpiRuntime::init(&argc, &argv);
  auto world = parallel::MpiRuntime::world();
  const int P = world->size(), me = world->rank();
  int rc = 0;
  try {
    Setup s;
    s.cfg.n_layers = layers;
    s.cfg.d_model = d_model;
    s.cfg.n_heads = heads;
    s.cfg.d_ff = 2 * d_model;
    s.cfg.vocab_size = vocab;
    s.cfg.mixln_post_layers = 1;
    s.recompute = recompute == "attention" ? models::Recompute::attention
                  : recompute == "block"   ? models::Recompute::block
                                           : models::Recompute::none;
    const int64_t unit = 256 * P;  // T granularity: zigzag chunks of whole 128-token tiles
    parallel::MeshLayout layout;
    layout.cp = P;
    layout.dp = 1;
    layout.cp_algo = algo == "ulysses" ? parallel::CpAlgo::ulysses : parallel::CpAlgo::ring;
    models::ModelConfig lim = s.cfg;
    lim.seq_len = static_cast<int>(unit);
    const parallel::ProcessMesh mesh(layout, P, models::mesh_limits(lim));
    const parallel::ProcessGroups groups(mesh, {me, P, "mpirun"}, k::Device::cpu(), "mpi", 600);
    s.groups = &groups;
    const auto budget = static_cast<size_t>(budget_mib * 1024 * 1024);
    if (label.empty()) label = fmt::format("{} cp{} recompute {}", algo, P, recompute);

    // Memory is affine in T for sparta (no T x T term), so the curve is built, not assumed.
    nlohmann::json curve = nlohmann::json::array();
    for (int64_t T = unit; T <= curve_max; T *= 2) {
      const size_t b = state_bytes(s, T);
      curve.push_back({{"T", T}, {"bytes", b}, {"vanilla_bytes", b + vanilla_extra(s.cfg, T)}});
      if (b > 4 * budget) break;
    }
    // The longest multiple of `unit` within the budget (binary search on built models).
    const int64_t T_max = longest(unit, budget, [&](int64_t T) { return state_bytes(s, T); });
    const StepTime st = T_max > 0 ? time_steps(s, T_max, steps, *world) : StepTime{};
    nlohmann::json out = {{"label", label},
                          {"ranks", P},
                          {"algo", algo},
                          {"recompute", recompute},
                          {"budget_mib", budget_mib},
                          {"T_max", T_max},
                          {"bytes_at_T_max", T_max > 0 ? state_bytes(s, T_max) : 0},
                          {"step_s", st.step_s},
                          {"comm_share", st.comm_share},
                          {"curve", curve}};
    if (time_at > 0) {
      const StepTime at = time_steps(s, time_at, steps, *world);
      out["time_at"] = time_at;
      out["step_at_s"] = at.step_s;
      out["comm_share_at"] = at.comm_share;
    }
    if (me == 0)
      fmt::print(
          "{}: longest T within {:.0f} MiB per rank: {} ({:.1f} MiB); forward+backward "
          "{:.3f} s, collectives {:.1f} % of it\n",
          label, budget_mib, T_max, static_cast<double>(out["bytes_at_T_max"]) / 1048576.0,
          st.step_s, 100 * st.comm_share);
    if (vanilla && P == 1) vanilla_run(s, unit, budget, steps, *world);
    if (me == 0) fmt::print("bench_json: {}\n", out.dump());
  } catch (const std::exception& e) {
    fmt::print(stderr, "long_context_bench: {}\n", e.what());
    rc = 1;
  }
  world.reset();
  parallel::MpiRuntime::finalize();
  return rc;
}
