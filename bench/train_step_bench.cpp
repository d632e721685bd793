// CPU training-step benchmark of a config's model (default: configs/default.toml), with the
// ratios that make the number meaningful, measured in the same run:
//   - the machine's FMA peak (an AVX-512/AVX2 FMA loop on every thread),
//   - raw OpenBLAS SGEMM through the same library and kernel (1024^3 and the model's FFN shape),
//   - the step's GEMM time and FLOPs (counted in the GEMM wrapper) and its total FLOPs.
// Prints a table and one JSON line ("bench_json: {...}") for scripts. Not a test: nothing is
// asserted. Synthetic tokens, so no data directory is needed.
#include <immintrin.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include <cblas.h>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "kernels/blas.h"
#include "kernels/profile.h"
#include "kernels/rng.h"
#include "launch/program.h"
#include "trainer/config.h"
#include "trainer/models/transformer.h"
#include "trainer/optim/adamw.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double sgemm_gflops(int M, int N, int K, int reps) {
  std::vector<float> a(static_cast<size_t>(M) * K, 0.5f), b(static_cast<size_t>(N) * K, 0.25f),
      c(static_cast<size_t>(M) * N);
  auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a.data(), K, b.data(), K,
                0.0f, c.data(), N);
  };
  run();
  const auto t0 = Clock::now();
  for (int i = 0; i < reps; ++i) run();
  return 2.0 * M * N * K * reps / seconds_since(t0) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  sparta::kernels::select_blas_kernel(argv);
  CLI::App app{"sparta CPU training-step benchmark", "train_step_bench"};
  std::string config_file;
  std::vector<std::string> overrides;
  int steps = 5;
  app.add_option("--config", config_file, "TOML config (default: embedded configs/default.toml)");
  app.add_option("--set", overrides, "override section.key=value");
  app.add_option("--steps", steps, "timed steps (after 2 warm-up steps)")->capture_default_str();
  return sparta::launch::run_main("train_step_bench", app, argc, argv, [&] {
    namespace k = sparta::kernels;
    auto cfg = sparta::trainer::load_config(config_file, overrides);
    if (cfg.model.vocab_size == 0) cfg.model.vocab_size = 4096;  // the default tokenizer's size
    const auto& m = cfg.model;
    const int64_t B = cfg.train.batch_size, T = m.seq_len, N = B * T;
    const int64_t FC = m.ffn == sparta::models::FfnType::swiglu ? 2 * m.d_ff : m.d_ff;

    fmt::print("{}\nthreads: OpenMP {}, OpenBLAS {}\n", k::blas_info(), omp_get_max_threads(),
               openblas_get_num_threads());
    const double peak = k::profile::fma_peak_flops() / 1e9;
    const double gemm_sq = sgemm_gflops(1024, 1024, 1024, 10);
    const double gemm_ffn = sgemm_gflops(static_cast<int>(N), static_cast<int>(FC), m.d_model, 10);

    sparta::models::Transformer model(m, static_cast<int>(B), k::Device::cpu(), 1);
    sparta::trainer::AdamW opt(
        model.params(), model.flat_params(),
        {cfg.optim.beta1, cfg.optim.beta2, cfg.optim.eps, cfg.optim.weight_decay});
    std::vector<int32_t> tok(static_cast<size_t>(N)), tgt(static_cast<size_t>(N));
    for (size_t i = 0; i < tok.size(); ++i) {
      tok[i] = static_cast<int32_t>(k::philox(3, 0, i)[0] % static_cast<uint32_t>(m.vocab_size));
      tgt[i] = static_cast<int32_t>(k::philox(3, 0, i)[1] % static_cast<uint32_t>(m.vocab_size));
    }
    model.set_batch(tok.data(), tgt.data());
    auto one_step = [&](int64_t s) {
      model.zero_grads();
      model.forward_backward(1.0f);
      opt.step(1e-4, 1.0, s + 1);
    };
    one_step(0);
    one_step(1);
    k::profile::reset();
    k::profile::enable(true);
    const auto t0 = Clock::now();
    for (int s = 0; s < steps; ++s) one_step(s + 2);
    const double step_s = seconds_since(t0) / steps;
    k::profile::enable(false);
    const auto prof = k::profile::snapshot();

    // Causal attention: forward QK^T and PV over T(T+1)/2 pairs, 2 FLOPs per MAC; the backward
    // does four such products (dV, dP, dQ, dK).
    const double attn_fwd = 2.0 * 2.0 * static_cast<double>(B * m.n_heads * m.head_dim()) *
                            static_cast<double>(T * (T + 1) / 2);
    const double gemm_flops = prof.gemm_flops / steps;
    const double step_flops = gemm_flops + 3.0 * attn_fwd * m.n_layers;
    const double tok_s = static_cast<double>(N) / step_s;
    const double step_gflops = step_flops / step_s / 1e9;
    const double gemm_gflops_in_step = prof.gemm_flops / prof.gemm_seconds / 1e9;
    const double gemm_share = prof.gemm_seconds / steps / step_s;

    fmt::print("model: L={} C={} H={} F={} V={} T={} B={}  params {}\n", m.n_layers, m.d_model,
               m.n_heads, m.d_ff, m.vocab_size, T, B, model.num_params());
    fmt::print("{:<44}{:>12}\n", "measure", "value");
    fmt::print("{:<44}{:>12.1f}\n", "FMA peak, all threads (GFLOP/s)", peak);
    fmt::print("{:<44}{:>12.1f}\n", "raw sgemm 1024^3 (GFLOP/s)", gemm_sq);
    fmt::print("{:<44}{:>12.1f}\n",
               fmt::format("raw sgemm FFN shape {}x{}x{} (GFLOP/s)", N, FC, m.d_model), gemm_ffn);
    fmt::print("{:<44}{:>12.1f}\n", "train step (ms)", step_s * 1e3);
    fmt::print("{:<44}{:>12.0f}\n", "tokens/s", tok_s);
    fmt::print("{:<44}{:>12.1f}\n", "step GFLOP/s (GEMM + attention FLOPs)", step_gflops);
    fmt::print("{:<44}{:>12.1f}\n", "GEMM GFLOP/s inside the step", gemm_gflops_in_step);
    fmt::print("{:<44}{:>12.1f}%\n", "GEMM share of step time", 100 * gemm_share);
    fmt::print("{:<44}{:>12.1f}%\n", "step / FMA peak", 100 * step_gflops / peak);
    fmt::print("{:<44}{:>12.1f}%\n", "step / raw sgemm 1024^3", 100 * step_gflops / gemm_sq);
    fmt::print("{:<44}{:>12.1f}%\n", "in-step GEMM / raw sgemm FFN shape",
               100 * gemm_gflops_in_step / gemm_ffn);
    const nlohmann::json j = {{"tokens_per_s", tok_s},
                              {"step_ms", step_s * 1e3},
                              {"step_gflops", step_gflops},
                              {"gemm_gflops_in_step", gemm_gflops_in_step},
                              {"gemm_share", gemm_share},
                              {"fma_peak_gflops", peak},
                              {"raw_sgemm_1024_gflops", gemm_sq},
                              {"raw_sgemm_ffn_gflops", gemm_ffn},
                              {"params", model.num_params()},
                              {"blas", k::blas_info()}};
    fmt::print("bench_json: {}\n", j.dump());
    return 0;
  });
}
